"""Bad input through the real CLI: a non-zero exit, one paragraph naming the thing, no traceback,
and no version in the registry."""

import os
import subprocess
import sys

import pytest

from conftest import LABEL, TAXI_SMALL


def _run(root, data, label=LABEL, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "prodml.pipelines.cli", "run", "training", "--data", str(data), "--label", label,
         "--model-name", "taxi", "--root", str(root), "--epochs", "1", *extra],
        capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("prodml: error:")]
    assert len(error_lines) == 1, result.stderr[-2000:]
    registry = os.path.join(str(root), "registry", "taxi")
    assert not os.path.exists(registry) or not [v for v in os.listdir(registry) if v.isdigit()]
    return error_lines[0]


def test_missing_file(tmp_path):
    message = _run(tmp_path / "home", tmp_path / "nope.csv")
    assert str(tmp_path / "nope.csv") in message


def test_label_that_does_not_exist(tmp_path):
    message = _run(tmp_path / "home", TAXI_SMALL, "big_tippr")
    assert "big_tippr" in message and "big_tipper" in message  # names it and lists the columns


def test_label_with_one_class(tmp_path):
    data = tmp_path / "one_class.csv"
    data.write_text("a,b,label\n1,x,1\n2,y,1\n3,z,1\n4,x,1\n")
    message = _run(tmp_path / "home", data, "label")
    assert "label" in message and "one" in message.lower() and str(data) in message


def test_empty_csv(tmp_path):
    data = tmp_path / "empty.csv"
    data.write_text("")
    message = _run(tmp_path / "home", data)
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
    message = _run(tmp_path / "home", data, LABEL, "--drop-columns", "tips")
    assert "fare" in message and "twelve" in message and "2901" in message and str(data) in message


def test_unwritable_root(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    message = _run(blocker / "home", TAXI_SMALL)
    assert str(blocker / "home") in message and "writable" in message
