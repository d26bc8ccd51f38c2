"""Session fixtures: the upstream artifacts each executor test builds on.

Each fixture runs one real executor once per session on ``testdata/taxi_small.csv``, so a
downstream executor is tested alone against real upstream output.

Tests that take more than about 5 s are marked ``slow`` and left out of ``make test-unit``: new
tests carry ``@pytest.mark.slow`` themselves; the older ones are listed in ``SLOW_TESTS`` below.
"""

import pathlib

import pytest

from prodml.components.common.logs import silence_tensorflow

# The test session is an entry point: executors called directly here are quiet like in a component.
silence_tensorflow()

TESTDATA = pathlib.Path(__file__).parent / "testdata"
REPO = pathlib.Path(__file__).parent.parent
TAXI_SMALL = TESTDATA / "taxi_small.csv"
TAXI_FULL = REPO / "data" / "chicago_taxi" / "data.csv"
LABEL = "big_tipper"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def ingested(artifacts):
    """The examples artifact folder of the small taxi file, without ``tips``."""
    from prodml.components.ingest.executor import run_ingest

    out = artifacts / "examples"
    run_ingest(data_uri=str(TAXI_SMALL), output_dir=str(out), label=LABEL,
               drop_columns=["tips"])
    return out


@pytest.fixture(scope="session")
def validated(artifacts, ingested):
    """(statistics folder, schema folder) of the ingested examples."""
    from prodml.components.validate.executor import run_validate

    stats, schema = artifacts / "statistics", artifacts / "schema"
    run_validate(examples_dir=str(ingested), statistics_dir=str(stats), schema_dir=str(schema),
                 anomalies_md_path=str(artifacts / "anomalies.md"),
                 statistics_html_path=str(artifacts / "statistics.html"))
    return stats, schema


@pytest.fixture(scope="session")
def transformed(artifacts, ingested, validated):
    """(transform graph folder, transformed examples folder) with the default preprocessing."""
    from prodml.components.transform.executor import run_transform

    graph, examples = artifacts / "transform_graph", artifacts / "transformed_examples"
    run_transform(examples_dir=str(ingested), schema_dir=str(validated[1]),
                  transform_graph_dir=str(graph), transformed_examples_dir=str(examples))
    return graph, examples


@pytest.fixture(scope="session")
def trained(artifacts, transformed):
    """The model folder (SavedModel + prodml_model.json) of the default model."""
    from prodml.components.train.executor import run_train

    model = artifacts / "model"
    run_train(transform_graph_dir=str(transformed[0]), transformed_examples_dir=str(transformed[1]),
              model_dir=str(model), epochs=3)
    return model


# Tests measured over about 5 s (call time, on the 2-core reference machine), by "file::function";
# every parametrisation of a listed function is slow.
SLOW_TESTS = {
    "tests/components/test_train.py::test_multiclass",  # 27 s: trains a 3-class model from raw data
    "tests/components/test_train.py::test_regression",  # 18 s: trains a regression model from raw data
    "tests/components/test_train.py::test_same_seed_gives_the_same_model",  # 9 s: trains twice
    "tests/components/test_train.py::test_user_trainer_module_is_used",  # 8 s
    "tests/components/test_train.py::test_unknown_label_fails_training_loudly",  # 6 s
    "tests/components/test_transform.py::test_user_preprocessing_module_is_used",  # 8 s: a second Beam transform
    "tests/components/test_validate.py::test_drift_against_a_shifted_baseline_is_reported",  # 7 s
    "tests/components/test_evaluate.py::test_untrained_candidate_falls_behind_the_pushed_model",  # 5.5 s
    "tests/test_component_manifests.py::test_a_new_pipeline_from_the_yaml_files_alone_runs_locally",  # 16 s: kfp.local
    "tests/test_cli_errors.py::test_label_with_one_class",  # 6 s: a prodml run subprocess
    "tests/test_cli_errors.py::test_non_numeric_value_past_the_first_rows",  # 6 s: a prodml run subprocess
    "tests/serving/test_serving_cli.py::test_unloadable_version_stops_the_server",  # 6-13 s: a server loading
}
# Fixtures that train a model (about a minute of CPU, once per session): the TFT transform and Keras
# training chain here, and the serving tests' model built by the runtime environment. Every test that
# uses one of them is slow, so test-unit never trains.
SLOW_FIXTURES = {"transformed", "trained", "built_model"}


def pytest_collection_modifyitems(config, items):
    """Marks the listed slow tests, and those using a slow fixture, as ``slow``."""
    root = pathlib.Path(str(config.rootpath))
    for item in items:
        path = pathlib.Path(str(item.path)).relative_to(root).as_posix()
        if f"{path}::{item.originalname}" in SLOW_TESTS or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
