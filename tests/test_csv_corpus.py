"""The awkward-CSV corpus (tests/data/csv/): each file trains, or ends with one paragraph that names it.

"Trains" means ingest and validate pass here (and, for the NA-marker file, transform and a
one-epoch train too); errors are asserted word for word, in-process and, for a few files,
through ``prodml run training`` (exit code 3, no traceback). Public datasets that the runtime
environment ships (scikit-learn's bundled CSVs) are read as they are, without writing them here.
"""

import json
import os
import pathlib
import subprocess

import pytest

from prodml.components.common import defaults, keys, schemas
from prodml.components.common.errors import InputDataError
from prodml.components.ingest.executor import run_ingest
from prodml.components.validate.executor import run_validate

CORPUS = pathlib.Path(__file__).parent / "data" / "csv"
REPO = pathlib.Path(__file__).parent.parent
PRODML = REPO / ".venv" / "runtime" / "bin" / "prodml"

# file -> the paragraph ingest ends with ({path} is the file's path).
ERRORS = {
    "duplicate_headers.csv": "Columns 2 ('amount') and 4 ('amount') of {path} are both named 'amount'. Rename one "
                             "of them in the header.",
    "latin1.csv": "{path} is not UTF-8 text: line 4 has the byte 0xe9 (in '3,Orl\ufffdans,1'). Save the file as "
                  "UTF-8, e.g. 'iconv -f cp1252 -t utf-8 in.csv > out.csv' for a Windows or Latin-1 file.",
    "header_only.csv": "{path} has a header but no rows. Ingest needs at least one row.",
    "truncated.csv.gz": "{path} is not a complete gzip file (Compressed file ended before the end-of-stream "
                        "marker was reached): it is truncated or corrupt, and no row of it was used. Download or "
                        "compress it again; 'gzip -t FILE' checks a .gz file.",
    "out_of_range.csv": "Column 'weight' is numeric, but line 13 of {path} has '1e39', which is not a finite "
                        "float32 number (at most 3.403e+38 in magnitude). Replace it with a finite value, leave "
                        "the cell empty for a missing value, or pass 'weight' in drop_columns.",
    "quoted_newlines_inf.csv": "Column 'amount' is numeric, but line 45 of {path} has 'inf', which is not a finite "
                               "float32 number (at most 3.403e+38 in magnitude). Replace it with a finite value, "
                               "leave the cell empty for a missing value, or pass 'amount' in drop_columns.",
    "question_marks.csv": "Column 'horsepower' holds numbers in 38 of its 40 non-empty cells, but line 10 of {path} "
                          "has '?' (1 more cell is not a number either). If '?' marks a missing value, add it to the "
                          "markers: na_values (--na-values) replaces the list, so give --na-values='"
                          + ",".join(sorted((set(defaults.NA_VALUES) | {"?"}) - {""})) + "'; "
                          "otherwise correct the cell, or pass 'horsepower' in "
                          "drop_columns. A column is read as text only when fewer than 90% of its cells are numbers.",
}

# file -> (ingest keyword arguments, expected columns, expected dropped columns).
TRAINS = {
    "bom_crlf.csv": ({}, {"id": "INT", "size": "FLOAT", "color": "BYTES", "label": "INT"}, []),
    "quoted_newlines.csv": ({}, {"id": "INT", "comment": "BYTES", "amount": "FLOAT", "label": "INT"}, []),
    "empty_column.csv": ({}, {"id": "INT", "x": "INT", "label": "INT"}, ["nothing", "only_na"]),
    "high_cardinality_id.csv": ({}, {"order_id": "BYTES", "amount": "FLOAT", "channel": "BYTES", "label": "INT"},
                                []),
    "long_tail.csv": ({}, {"id": "INT", "product": "BYTES", "amount": "FLOAT", "label": "INT"}, []),
    "question_marks.csv": ({"na_values": defaults.NA_VALUES + ["?"]},
                           {"id": "INT", "horsepower": "INT", "label": "INT"}, []),
}


def _validate(examples: pathlib.Path, out: pathlib.Path):
    return run_validate(examples_dir=str(examples), statistics_dir=str(out / "statistics"),
                        schema_dir=str(out / "schema"), anomalies_md_path=str(out / "anomalies.md"),
                        statistics_html_path=str(out / "statistics.html"))


def _examples(folder: pathlib.Path):
    import tensorflow as tf

    files = sorted(str(f) for f in folder.glob("Split-*/data-*.tfrecord.gz"))
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        yield {name: list(getattr(f, f.WhichOneof("kind")).value) for name, f in features.items()}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_awkward_file_ends_with_one_paragraph(tmp_path, name):
    path = CORPUS / name
    with pytest.raises(InputDataError) as error:
        run_ingest(str(path), str(tmp_path), label="label")
    assert str(error.value) == ERRORS[name].format(path=path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / keys.DATA_VERSION_FILE).exists() and not list(tmp_path.glob("Split-*/*"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAINS))
def test_awkward_file_ingests_and_validates(tmp_path, name):
    kwargs, expected_columns, expected_dropped = TRAINS[name]
    version = run_ingest(str(CORPUS / name), str(tmp_path / "examples"), label="label", **kwargs)
    assert version["columns"] == expected_columns
    assert version["dropped_columns"] == expected_dropped
    result = _validate(tmp_path / "examples", tmp_path)
    assert result["anomalies"] == {split: {} for split in version["row_counts"]}


def test_quoted_cells_keep_their_line_breaks_commas_and_quotes(tmp_path):
    version = run_ingest(str(CORPUS / "quoted_newlines.csv"), str(tmp_path), label="label")
    assert sum(version["row_counts"].values()) == 40  # the blank line is no row
    comments = {row["id"][0]: row["comment"][0] for row in _examples(tmp_path)}
    assert comments[6] == b'line one of 6\r\nline two, with a comma\r\nand a "quote"'
    assert comments[7] == b"plain 7"


def test_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    assert (CORPUS / "bom_crlf.csv").read_bytes().count(b"\r\n") == 41  # not normalised by git
    version = run_ingest(str(CORPUS / "bom_crlf.csv"), str(tmp_path), label="label")
    assert list(version["columns"])[0] == "id"
    assert {row["color"][0] for row in _examples(tmp_path)} == {b"red", b"blue"}  # no '\r' left


@pytest.mark.slow
def test_na_markers_train_end_to_end(tmp_path):
    """NA, N/A, null, None, NaN, ... at the top of numeric columns: numbers with missing values, and a model."""
    from prodml.components.train.executor import run_train
    from prodml.components.transform.executor import run_transform

    examples = tmp_path / "examples"
    version = run_ingest(str(CORPUS / "na_markers.csv"), str(examples), label="label")
    assert version["columns"] == {"id": "INT", "age": "INT", "income": "FLOAT", "city": "BYTES", "score": "INT",
                                  "label": "INT"}
    assert version["na_values"] == sorted(defaults.NA_VALUES)
    rows = {row["id"][0]: row for row in _examples(examples)}
    assert all("age" not in rows[i] for i in range(1, 11)) and rows[11]["age"][0] > 0
    assert "income" not in rows[1] and "city" not in rows[11] and "score" not in rows[5]

    result = _validate(examples, tmp_path)
    assert result["anomalies"] == {"train": {}, "eval": {}}
    schema = schemas.load_schema(str(tmp_path / "schema"))
    assert schemas.feature_kinds(schema)["age"] == "INT"

    graph, transformed = tmp_path / "transform_graph", tmp_path / "transformed_examples"
    run_transform(examples_dir=str(examples), schema_dir=str(tmp_path / "schema"),
                  transform_graph_dir=str(graph), transformed_examples_dir=str(transformed))
    run_train(transform_graph_dir=str(graph), transformed_examples_dir=str(transformed),
              model_dir=str(tmp_path / "model"), epochs=1)
    model_info = json.loads((tmp_path / "model" / keys.MODEL_INFO_FILE).read_text())
    assert model_info["raw_features"]["age"] == "INT" and model_info["raw_features"]["city"] == "BYTES"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["duplicate_headers.csv", "latin1.csv", "truncated.csv.gz", "out_of_range.csv"])
def test_prodml_run_training_ends_with_the_paragraph_and_exit_code_3(tmp_path, name):
    if not PRODML.exists():
        pytest.skip(f"{PRODML} is missing: run 'make setup'")
    path = CORPUS / name
    run = subprocess.run([str(PRODML), "run", "training", "--data", str(path), "--label", "label",
                          "--model-name", "corpus", "--root", str(tmp_path / "root"), "--epochs", "1"],
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PRODML_VERBOSE": ""})
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    assert ERRORS[name].format(path=path) in run.stderr


def _sklearn_data(name: str) -> pathlib.Path:
    sklearn = pytest.importorskip("sklearn")
    path = pathlib.Path(sklearn.__file__).parent / "datasets" / "data" / name
    if not path.exists():
        pytest.skip(f"scikit-learn {sklearn.__version__} does not ship {name}")
    return path


@pytest.mark.slow
def test_public_iris_csv_ingests_and_validates(tmp_path):
    """scikit-learn's iris.csv as shipped: its first line ('150,4,setosa,versicolor,virginica') is the header."""
    path = _sklearn_data("iris.csv")
    version = run_ingest(str(path), str(tmp_path / "examples"), label="virginica")
    assert version["label"] == {"name": "virginica", "problem_type": "multiclass", "classes": ["0", "1", "2"]}
    assert sum(version["row_counts"].values()) == 150
    assert set(version["columns"].values()) == {"FLOAT", "INT"}
    assert _validate(tmp_path / "examples", tmp_path)["anomalies"] == {"train": {}, "eval": {}}


def test_public_boston_csv_names_its_second_header_line(tmp_path):
    """scikit-learn's boston_house_prices.csv starts with a count line; the real header then sits on line 2."""
    path = _sklearn_data("boston_house_prices.csv")
    with pytest.raises(InputDataError) as error:
        run_ingest(str(path), str(tmp_path), label="13")
    assert str(error.value).startswith(
        f"Column '506' holds numbers in 506 of its 507 non-empty cells, but line 2 of {path} has 'CRIM'.")
