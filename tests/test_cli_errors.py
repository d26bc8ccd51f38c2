"""Bad input through the real ``prodml`` command: one paragraph naming the thing, no traceback,
no version in the registry, and the exit code of its kind: 2 for a usage error (a bad flag,
parameter or name, found before any work), 3 for a data or pipeline error."""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from conftest import LABEL, TAXI_SMALL

# The installed console script next to this interpreter (.venv/runtime/bin/prodml).
PRODML = str(pathlib.Path(sys.executable).parent / "prodml")
USAGE, DATA = 2, 3


def _prodml(*args, timeout=600):
    result = subprocess.run([PRODML, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    return result


def _run(root, data, label=LABEL, *extra, code=None):
    result = _prodml("run", "training", "--data", data, "--label", label, "--model-name", "taxi", "--root", root,
                     "--epochs", "1", *extra)
    assert result.returncode != 0
    if code is not None:
        assert result.returncode == code, result.stderr[-2000:]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("prodml: error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    registry = os.path.join(str(root), "registry", "taxi")
    assert not os.path.exists(registry) or not [v for v in os.listdir(registry) if v.isdigit()]
    return error_lines[0]


def test_missing_file(tmp_path):
    message = _run(tmp_path / "home", tmp_path / "nope.csv", code=DATA)
    assert str(tmp_path / "nope.csv") in message


def test_label_that_does_not_exist(tmp_path):
    message = _run(tmp_path / "home", TAXI_SMALL, "big_tippr", code=USAGE)
    assert "big_tippr" in message and "big_tipper" in message  # names it and lists the columns


def test_label_with_one_class(tmp_path):
    data = tmp_path / "one_class.csv"
    data.write_text("a,b,label\n1,x,1\n2,y,1\n3,z,1\n4,x,1\n")
    message = _run(tmp_path / "home", data, "label", code=DATA)
    assert "label" in message and "one" in message.lower() and str(data) in message


def test_empty_csv(tmp_path):
    data = tmp_path / "empty.csv"
    data.write_text("")
    message = _run(tmp_path / "home", data, code=DATA)
    assert str(data) in message and "empty" in message.lower()


def test_non_numeric_value_past_the_first_rows(tmp_path):
    lines = TAXI_SMALL.read_text().splitlines()
    header = lines[0].split(",")
    fare = header.index("fare")
    row = lines[2900].split(",")
    row[fare] = "twelve"
    lines[2900] = ",".join(row)
    data = tmp_path / "bad_fare.csv"
    data.write_text("\n".join(lines) + "\n")
    message = _run(tmp_path / "home", data, LABEL, "--drop-columns", "tips", code=DATA)
    assert "fare" in message and "twelve" in message and "2901" in message and str(data) in message


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    message = _run(blocker / "home", TAXI_SMALL, code=USAGE)
    assert str(blocker / "home") in message and "writable" in message


# --- parameters checked before any work: exit 2, and nothing is created -------------------------

@pytest.mark.parametrize("extra, words", [
    (["--threshold", "auc=0.9", "--label", "fare"], "Unknown metric 'auc'"),
    (["--slice-feature", "payment type"], None),  # a raw name is fine: the run gets as far as the root
    (["--slice-feature", "paymnt_type"], "The slice feature 'paymnt_type' (--slice-feature) is not a column"),
    (["--problem", "regression", "--label", "payment_type"], "holds 'Credit Card' on line 2 of"),
])
def test_bad_parameters_stop_before_any_step_runs(tmp_path, extra, words):
    root = tmp_path / "not-a-folder"
    root.write_text("")  # prepare_root fails on it: reaching it means every earlier check passed
    args = ["run", "training", "--data", TAXI_SMALL, "--label", LABEL, "--model-name", "taxi", "--root", root]
    result = _prodml(*args, *extra)
    assert result.returncode == USAGE
    [line] = [line for line in result.stderr.splitlines() if line.startswith("prodml: error:")]
    assert words in line if words else "is not writable" in line
    assert "▶" not in result.stderr  # no step started


@pytest.mark.parametrize("args, words", [
    (["run", "training", "--data", "x.csv", "--label", "y", "--model-name", "Chicago_Taxi"],
     "argument --model-name: Model name 'Chicago_Taxi' is not a valid DNS-1123 label"),
    (["run", "training", "--data", "x.csv", "--label", "y", "--model-name", "taxi", "--epochs", "0"],
     "argument --epochs: epochs (--epochs) must be a whole number ≥ 1, got 0"),
    (["run", "training", "--data", "x.csv", "--label", "y", "--model-name", "taxi", "--tolerance", "-1"],
     "argument --tolerance: tolerance (--tolerance) must be a number ≥ 0"),
    (["lineage", "--model-name", "taxi", "--version", "0"], "argument --version: --version 0 is not a model version"),
    (["lineage", "--model-name", "../taxi"], "Model name '../taxi' is not a valid DNS-1123 label: it contains a path"),
    (["serve", "--model-name", "taxi", "--version", "-1"], "--version -1 is not a model version"),
    (["serve", "--model-name", "a/b"], "'a/b' is not a valid DNS-1123 label: it contains a path separator"),
    (["serve", "--model-name", "taxi", "--http-port", "70000"], "70000 is not a TCP port"),
    (["submit", "--service-account", "Not A Name"], "is not a Kubernetes service account name"),
])
def test_bad_flags_are_usage_errors(tmp_path, args, words):
    result = _prodml(*args, "--root" if args[0] != "submit" else "--run-name", tmp_path / "home")
    assert result.returncode == USAGE, result.stderr
    assert words in result.stderr
    assert not (tmp_path / "home").exists()


def test_lineage_of_a_model_never_pushed_is_a_data_error(tmp_path):
    result = _prodml("lineage", "--model-name", "taxi", "--root", tmp_path)
    assert result.returncode == DATA
    assert "No version of model 'taxi' is pushed" in result.stderr


# --- a failed step keeps its own exit code -------------------------------------------------------

@pytest.mark.parametrize("error, code", [("ConfigError", USAGE), ("InputDataError", DATA), ("RegistryError", DATA)])
def test_a_component_exits_with_its_errors_code_and_records_it(tmp_path, error, code):
    error_file = tmp_path / "errors"
    body = ("from prodml.components.common import errors\n"
            "from prodml.components.common.task import run_component\n"
            f"def fail():\n    raise errors.{error}('the reason, naming the field')\n"
            "run_component('transform', fail)\n")
    result = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PRODML_ERROR_FILE": str(error_file)})
    assert result.returncode == code and "Traceback" not in result.stderr
    [record] = [json.loads(line) for line in error_file.read_text().splitlines()]
    assert record == {"component": "transform", "error": error, "exit_code": code,
                      "message": "transform failed: the reason, naming the field"}

    from prodml.pipelines import local

    failed = local._step_failure(str(error_file), "run.log", RuntimeError("Task transform failed"))
    assert failed.exit_code == code and failed.step == "transform" and failed.error == error
    assert str(failed) == "transform failed: the reason, naming the field (full log: run.log)"


@pytest.mark.slow
def test_a_step_that_fails_on_a_usage_error_exits_2(tmp_path):
    """A user module that parses but does not import passes the checks; transform finds it (exit 2)."""
    module = tmp_path / "preprocessing.py"
    module.write_text("import no_such_package_for_prodml\n\n\ndef preprocessing_fn(inputs):\n    return inputs\n")
    message = _run(tmp_path / "home", TAXI_SMALL, LABEL, "--drop-columns", "tips", "--preprocessing", module,
                   code=USAGE)
    assert "transform failed: User module" in message and "no_such_package_for_prodml" in message
