"""The checks a training run makes before any work: each names the value and the allowed ones.

Pure functions, called directly (no pipeline runs); the data checks read the tiny files in
``testdata/`` and files written here, through ingest's own reader.
"""

import math

import pandas as pd
import pytest
from conftest import LABEL, TAXI_SMALL

from prodml.components.common import keys, metrics, names
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.pipelines import preflight

ALL_TYPES = (keys.BINARY, keys.MULTICLASS, keys.REGRESSION)
TAXI_COLUMNS = TAXI_SMALL.read_text().splitlines()[0].split(",")


def _csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _where(i):
    return f"line {i + 2} of data.csv"


# --- names and versions -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["taxi", "chicago-taxi", "a", "m2", "x" * 63])
def test_dns1123_model_names_pass(name):
    assert names.check_model_name(name) == name


@pytest.mark.parametrize("name, why", [
    ("Taxi", "InferenceService"), ("taxi_v2", "InferenceService"), ("-taxi", "InferenceService"),
    ("taxi-", "InferenceService"), ("a.b", "InferenceService"), ("", "empty"), ("x" * 64, "64 characters"),
    ("a/b", "path separator"), ("../taxi", "path separator"), ("..", "path separator"),
    ("a\\b", "path separator"), ("/etc", "path separator"),
])
def test_other_model_names_are_refused_naming_the_value_and_the_rule(name, why):
    with pytest.raises(ConfigError) as error:
        names.check_model_name(name, "--model-name")
    message = str(error.value)
    assert message.startswith(f"--model-name '{name}' is not a valid DNS-1123 label")
    assert why in message and "lowercase letters, digits and '-'" in message and "63" in message


@pytest.mark.parametrize("version", [0, -1, True, 1.5, "2"])
def test_a_version_is_a_whole_number_from_one(version):
    with pytest.raises(ConfigError, match=r"--version .* is not a model version: versions are numbered 1, 2, 3"):
        names.check_version(version)


def test_no_version_means_the_latest_and_numbers_pass():
    assert names.check_version(None) is None
    assert names.check_version(7) == 7


# --- single parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, -3, 2.0, True, "5"])
def test_epochs_and_batch_size_are_whole_numbers_from_one(value):
    for parameter, flag in (("epochs", "--epochs"), ("batch_size", "--batch-size")):
        with pytest.raises(ConfigError, match=f"{parameter} \\({flag}\\) must be a whole number ≥ 1, got"):
            preflight.check_positive_int(value, parameter)


@pytest.mark.parametrize("value", [-0.01, math.nan, math.inf, True, "0.1"])
def test_tolerance_is_a_finite_number_not_below_zero(value):
    with pytest.raises(ConfigError, match=r"tolerance \(--tolerance\) must be a number ≥ 0"):
        preflight.check_tolerance(value)
    assert preflight.check_tolerance(0) == 0.0


@pytest.mark.parametrize("seed", [-1, 2 ** 32, 1.0])
def test_seed_fits_numpy(seed):
    with pytest.raises(ConfigError, match="from 0 to 4294967295"):
        preflight.check_seed(seed)


@pytest.mark.parametrize("ratios, words", [
    ({"train": 1.0}, "needs both 'train' and 'eval'"), ({"train": 0.8, "eval": 0}, "ratio > 0"),
    ({"train": 0.8, "eval": -0.2}, "numbers >= 0"), ({"train": 1, "eval": 1, "a b": 1}, "letters, digits"),
    ([0.8, 0.2], "must map split names"),
])
def test_split_ratios_follow_ingests_rule(ratios, words):
    with pytest.raises(ConfigError, match=words):
        preflight.check_split_ratios(ratios)


def test_problem_type_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="'classification' is not one of: auto, binary, multiclass, regression"):
        preflight.check_problem_type("classification")


@pytest.mark.parametrize("thresholds, words", [
    ({"auc": 90}, "from 0 to 1 (a fraction: 0.9 means 90%)"), ({"accuracy": -0.1}, "from 0 to 1"),
    ({"rmse": -1}, "rmse can take, ≥ 0"), ({"r2": 1.5}, "r2 can take, ≤ 1"),
    ({"auc": math.nan}, "finite number"), ({"auc": True}, "finite number"), ({"auc": "0.9"}, "finite number"),
])
def test_a_threshold_must_be_a_value_its_metric_can_take(thresholds, words):
    with pytest.raises(ConfigError) as error:
        preflight.check_threshold_values(thresholds)
    assert words in str(error.value) and next(iter(thresholds)) in str(error.value)


def test_every_metric_evaluate_computes_has_a_known_range():
    computed = {name for names_ in metrics.METRICS.values() for name in names_} | {metrics.EXAMPLE_COUNT}
    assert computed == set(preflight.METRIC_RANGES)


def test_threshold_names_are_the_metrics_of_the_problem_type():
    preflight.check_threshold_names({"auc": 0.9, "example_count": 10}, (keys.BINARY,))
    with pytest.raises(ConfigError) as error:
        preflight.check_threshold_names({"rmse": 3.0}, (keys.BINARY,))
    message = str(error.value)
    assert "Unknown metric 'rmse'" in message and "--threshold" in message
    assert "auc, accuracy, log_loss, precision, recall, example_count" in message


def test_an_unknown_parameter_is_named_with_the_valid_ones():
    with pytest.raises(ConfigError, match="no parameter 'epoch'. Its parameters are: epochs, seed"):
        preflight.check_parameter_names({"epoch": 3}, ["seed", "epochs"])


def test_deploy_namespace_is_a_kubernetes_name():
    assert preflight.check_namespace("") == ""
    with pytest.raises(ConfigError, match="deploy_namespace 'Team_A' is not a Kubernetes namespace name"):
        preflight.check_namespace("Team_A")


def test_serving_protocol_and_deployment_mode_are_checked_before_a_run():
    preflight.check_values({"serving_protocol": "grpc", "deployment_mode": "Knative"})
    with pytest.raises(ConfigError, match="deployment_mode 'raw' is not one of"):
        preflight.check_values({"deployment_mode": "raw"})
    with pytest.raises(ConfigError, match="canary_traffic_percent 20 needs KServe's Serverless"):
        preflight.check_values({"deployment_mode": "RawDeployment", "canary_traffic_percent": 20})


# --- user modules: parsed, never imported -------------------------------------------------------

def test_a_user_module_must_parse_and_define_its_function(tmp_path):
    good = tmp_path / "trainer.py"
    good.write_text("import no_such_package_here\n\ndef run_fn(fn_args):\n    return None\n")
    # It would fail to import, which is the step's to find: the check only parses.
    assert preflight.check_user_module(str(good), "trainer_module", "run_fn") == str(good)

    broken = tmp_path / "broken.py"
    broken.write_text("def run_fn(fn_args)\n    return None\n")
    with pytest.raises(ConfigError, match=r"trainer_module \(--trainer\) .*broken.py is not valid Python: .* line 1"):
        preflight.check_user_module(str(broken), "trainer_module", "run_fn")

    other = tmp_path / "other.py"
    other.write_text("def preprocessing_fn(inputs):\n    return inputs\n")
    with pytest.raises(ConfigError, match="does not define run_fn"):
        preflight.check_user_module(str(other), "trainer_module", "run_fn")
    with pytest.raises(ConfigError, match="nope.py given as preprocessing_module .* does not exist"):
        preflight.check_user_module(str(tmp_path / "nope.py"), "preprocessing_module", "preprocessing_fn")


def test_a_user_function_may_be_bound_by_an_import_or_an_assignment(tmp_path):
    imported = tmp_path / "imported.py"
    imported.write_text("from mylib.models import build as run_fn\n")
    assigned = tmp_path / "assigned.py"
    assigned.write_text("def _impl(a):\n    return a\n\nrun_fn = _impl\n")
    for path in (imported, assigned):
        preflight.check_user_module(str(path), "trainer_module", "run_fn")


# --- columns against the header -----------------------------------------------------------------

def test_columns_resolve_raw_or_sanitised_names():
    names_ = ["trip_miles", "payment_type", "label"]
    assert preflight.check_columns(names_, "label", ["payment type"], "trip miles") == \
        ("label", ["payment_type"], "trip_miles")


@pytest.mark.parametrize("label, drop, slice_feature, words", [
    ("lable", [], "", "The label 'lable' (--label) is not a column of the data. Columns: a, b, label."),
    ("label", ["c"], "", "The column to drop 'c' (--drop-columns) is not a column of the data."),
    ("label", [], "z", "The slice feature 'z' (--slice-feature) is not a column of the data."),
    ("label", ["label"], "", "include the label 'label'"),
    ("label", ["a"], "a", "also a column to drop"),
    ("label", [], "label", "is the label"),
    ("label", ["a", "b"], "", "No feature is left"),
    ("", [], "", "The label (--label) is empty"),
])
def test_columns_that_are_not_there_or_conflict_are_named(label, drop, slice_feature, words):
    with pytest.raises(ConfigError) as error:
        preflight.check_columns(["a", "b", "label"], label, drop, slice_feature)
    assert words in str(error.value)


# --- the problem type against the label's first values ------------------------------------------

def _types(values, problem_type=keys.AUTO):
    return preflight.label_problem_types(pd.Series(values, dtype=object), problem_type, "y", _where)[0]


def test_regression_needs_a_numeric_label_naming_the_first_text_value_and_its_line():
    with pytest.raises(ConfigError) as error:
        _types(["1.5", "2", "cheap", "3"], keys.REGRESSION)
    assert str(error.value).startswith("The problem type regression (--problem) needs a numeric label, but the "
                                       "label 'y' holds 'cheap' on line 4 of data.csv.")


def test_binary_needs_at_most_two_classes_in_what_was_read():
    assert _types(["0", "1", "1"], keys.BINARY) == (keys.BINARY,)
    with pytest.raises(ConfigError) as error:
        _types(["a", "b", "c", "a"], keys.BINARY)
    assert "has 3 distinct values in its first 4 rows ('a', 'b', 'c'). Use multiclass, or auto." in \
        str(error.value)


def test_auto_on_a_text_label_with_too_many_classes_is_refused():
    with pytest.raises(ConfigError, match="more than the 20 classes the problem type auto accepts"):
        _types([f"class{i}" for i in range(25)])
    assert _types([f"class{i}" for i in range(25)], keys.MULTICLASS) == (keys.MULTICLASS,)


@pytest.mark.parametrize("values, expected", [
    (["0", "1", "0"], (keys.BINARY, keys.MULTICLASS)),  # more rows may bring more classes
    (["0", "1", "2"], (keys.MULTICLASS, keys.REGRESSION)),
    (["1.5", "2", "3"], (keys.REGRESSION,)),
    ([str(i) for i in range(30)], (keys.REGRESSION,)),  # more integers than auto makes classes of
    (["yes", "no"], (keys.BINARY, keys.MULTICLASS)),
    (["a", "b", "c"], (keys.MULTICLASS,)),
    ([math.nan, math.nan], ALL_TYPES),                  # nothing read: nothing decided
])
def test_auto_allows_what_the_first_values_allow(values, expected):
    assert _types(values) == expected


def test_missing_label_cells_are_not_classes():
    assert _types(["0", math.nan, "1"], keys.BINARY) == (keys.BINARY,)
    assert _types(["2.5", math.nan], keys.REGRESSION) == (keys.REGRESSION,)


# --- the whole run: parameters first, then the header -------------------------------------------

def test_a_good_run_passes_and_the_slice_feature_is_named_as_the_data_names_it(tmp_path):
    data = _csv(tmp_path, "trip miles,pay,big tip\n1.5,cash,0\n2.0,card,1\n3.0,card,1\n")
    params = preflight.check_training(data, "big tip", "taxi", {"slice_feature": "trip miles", "epochs": 2,
                                                                "thresholds": {"auc": 0.6}})
    assert params == {"slice_feature": "trip_miles", "epochs": 2, "thresholds": {"auc": 0.6}}


def test_parameters_are_checked_before_the_data_is_read(tmp_path):
    missing = str(tmp_path / "nope.csv")
    with pytest.raises(ConfigError, match="Model name .* 'Taxi'"):
        preflight.check_training(missing, LABEL, "Taxi", {})
    with pytest.raises(ConfigError, match="epochs"):
        preflight.check_training(missing, LABEL, "taxi", {"epochs": 0})
    with pytest.raises(InputDataError, match="nope.csv' does not exist"):
        preflight.check_training(missing, LABEL, "taxi", {})


def test_a_threshold_for_another_problem_type_is_named_with_the_label_it_was_decided_from():
    with pytest.raises(ConfigError) as error:
        preflight.check_training(str(TAXI_SMALL), "fare", "taxi", {"thresholds": {"auc": 0.9}})
    message = str(error.value)
    assert "Unknown metric 'auc'" in message and "label 'fare' holds decimals, so auto means regression" in message
    assert "rmse, mae, r2, example_count" in message


def test_the_taxi_file_checks_its_columns_and_label():
    params = preflight.check_training(str(TAXI_SMALL), LABEL, "taxi", {"drop_columns": ["tips"],
                                                                       "slice_feature": "payment_type"})
    assert params["slice_feature"] == "payment_type"
    with pytest.raises(ConfigError, match="The column to drop 'tip' .*Columns: " + ", ".join(TAXI_COLUMNS[:3])):
        preflight.check_training(str(TAXI_SMALL), LABEL, "taxi", {"drop_columns": ["tip"]})
    with pytest.raises(ConfigError, match="regression .* 'payment_type' holds 'Credit Card' on line 2 of"):
        preflight.check_training(str(TAXI_SMALL), "payment_type", "taxi", {"problem_type": "regression"})


def test_the_read_is_bounded_so_a_late_third_class_is_left_to_ingest(tmp_path):
    rows = ["x,y"] + [f"{i},{i % 2}" for i in range(preflight.SAMPLE_ROWS)] + ["5,2"]
    data = _csv(tmp_path, "\n".join(rows) + "\n")
    preflight.check_training(data, "y", "taxi", {"problem_type": "binary"})
    early = _csv(tmp_path, "\n".join(rows[:3] + ["5,2"] + rows[3:]) + "\n", "early.csv")
    with pytest.raises(ConfigError, match="binary .* 3 distinct values"):
        preflight.check_training(early, "y", "taxi", {"problem_type": "binary"})


def test_na_markers_in_a_numeric_label_are_missing_values(tmp_path):
    data = _csv(tmp_path, "x,y\n1,NA\n2,2.5\n3,null\n4,3.5\n")
    preflight.check_training(data, "y", "taxi", {"problem_type": "regression"})
    with pytest.raises(ConfigError, match="holds 'NA' on line 2"):
        preflight.check_training(data, "y", "taxi", {"problem_type": "regression", "na_values": ["null"]})


def test_a_header_only_file_is_left_to_ingest_to_report(tmp_path):
    data = _csv(tmp_path, "id,fare,label\n")
    assert preflight.read_sample(data) is None
    assert preflight.check_training(data, "label", "taxi", {}) == {}


# --- a model name never reaches the file system as a path ---------------------------------------

@pytest.mark.parametrize("name", ["../taxi", "a/b", "..", "/tmp"])
def test_lineage_and_evaluates_registry_lookup_refuse_path_names(tmp_path, name):
    from prodml.components.evaluate import executor as evaluate
    from prodml.pipelines import lineage_report

    registry = tmp_path / "registry"
    registry.mkdir()
    with pytest.raises(ConfigError, match="path separator or '..'"):
        lineage_report.model_lineage(f"sqlite://{tmp_path / 'md.sqlite'}", str(registry), name)
    with pytest.raises(ConfigError, match="path separator or '..'"):
        evaluate._find_pushed(str(registry), name, None)
    assert list(tmp_path.iterdir()) == [registry] and not list(registry.iterdir())


def test_lineage_refuses_version_zero_instead_of_taking_the_latest(tmp_path):
    from prodml.pipelines import lineage_report

    with pytest.raises(ConfigError, match="--version 0 is not a model version"):
        lineage_report.model_lineage(f"sqlite://{tmp_path / 'md.sqlite'}", str(tmp_path), "taxi", 0)


def test_values_alone_are_checked_without_any_file():
    preflight.check_values({"data_uri": "gs://nowhere/x.csv", "thresholds": {"rmse": 2.0, "auc": 0.8}})
    with pytest.raises(ConfigError, match="Unknown metric 'acc' .* binary or multiclass or regression model"):
        preflight.check_values({"thresholds": {"acc": 0.9}})
    with pytest.raises(ConfigError, match="Unknown metric 'auc' .* a regression model is judged on rmse"):
        preflight.check_values({"problem_type": "regression", "thresholds": {"auc": 0.9}})


def test_a_regression_threshold_on_a_two_valued_label_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="'rmse'"):
        preflight.check_threshold_names({"rmse": 1.0}, _types(["0", "1", "0"]))


def test_a_password_in_the_metadata_connection_is_refused_and_not_echoed():
    with pytest.raises(ConfigError) as error:
        preflight.check_values({"metadata_connection": "mysql://u:s3cr%40t@db:3306/mlmd"})
    message = str(error.value)
    assert "carries a password" in message and "PRODML_METADATA_PASSWORD" in message
    assert "s3cr" not in message
    preflight.check_values({"metadata_connection": "mysql://u@db:3306/mlmd"})
