"""Ingest on small golden CSVs: kinds, missing values, splits, fingerprints, labels and bad input."""

import hashlib
import json
import pathlib
import random
import shutil

import pytest

from prodml.components.common import keys
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.ingest.executor import run_ingest


def _keeping_defaults(marker):
    """The --na-values argument an error suggests: the default markers plus ``marker``."""
    from prodml.components.common import defaults

    return "--na-values='" + ",".join(sorted((set(defaults.NA_VALUES) | {marker}) - {""})) + "'"

DATA = pathlib.Path(__file__).parent.parent / "testdata" / "ingest"
TYPES = DATA / "types.csv"


def read_examples(output_dir, split):
    """``{id: {feature: python values}}`` of one split's tf.Examples."""
    import tensorflow as tf

    files = sorted((pathlib.Path(output_dir) / f"Split-{split}").glob("data-*.tfrecord.gz"))
    rows = {}
    for record in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        values = {name: list(getattr(f, f.WhichOneof("kind")).value) for name, f in features.items()}
        rows[values["id"][0]] = values
    return rows


def all_examples(output_dir):
    return {**read_examples(output_dir, keys.TRAIN), **read_examples(output_dir, keys.EVAL)}


def ids_by_split(output_dir):
    version = json.loads((pathlib.Path(output_dir) / keys.DATA_VERSION_FILE).read_text())
    return {split: set(read_examples(output_dir, split)) for split in version["row_counts"]}


def write_rows_csv(path, n, seed=0):
    """A CSV of ``n`` numbered rows with a numeric, a text and a label column."""
    rng = random.Random(seed)
    lines = ["id,amount,color,label"] + [
        f"{i},{rng.uniform(0, 100):.3f},{rng.choice(['red', 'green', 'blue'])},{i % 2}"
        for i in range(1, n + 1)]
    path.write_text("\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def types_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("types")
    version = run_ingest(str(TYPES), str(out), label="tip_binary")
    return out, version


def test_columns_get_kinds_and_valid_names(types_out):
    out, version = types_out
    assert version["columns"] == {
        "id": "INT", "fare____": "FLOAT", "payment_type": "BYTES", "passengers": "INT",
        "city": "BYTES", "tip_binary": "INT", "tip_class": "INT", "tip_amount": "FLOAT",
        "tip_level": "BYTES", "tipped": "BYTES", "constant": "BYTES", "many": "INT"}
    assert json.loads((out / keys.DATA_VERSION_FILE).read_text()) == version


def test_examples_hold_typed_values_and_leave_missing_cells_out(types_out):
    out, _ = types_out
    rows = all_examples(out)
    assert len(rows) == 60
    first = rows[1]  # 1,21.46,Cash,4,Oak Park,1,2,0.72,mid,yes,same,1
    assert first["fare____"] == [pytest.approx(21.46)]
    assert first["payment_type"] == [b"Cash"] and first["city"] == [b"Oak Park"]
    assert first["passengers"] == [4] and first["tip_binary"] == [1]
    for row_id, feature in [(3, "fare____"), (17, "fare____"), (44, "fare____"),
                            (5, "payment_type"), (30, "payment_type"), (8, "passengers")]:
        assert feature not in rows[row_id]
    assert "fare____" in rows[4] and "payment_type" in rows[4]


def test_data_version_records_source_and_fingerprint(types_out):
    _, version = types_out
    data = TYPES.read_bytes()
    assert version["source_uri"] == str(TYPES)
    assert version["sha256"] == hashlib.sha256(data).hexdigest()
    assert version["size_bytes"] == len(data)
    assert version["split_ratios"] == keys.DEFAULT_SPLIT_RATIOS
    assert sum(version["row_counts"].values()) == 60 and min(version["row_counts"].values()) > 0
    assert version["dropped_columns"] == []


def test_fingerprint_changes_when_one_byte_changes(tmp_path):
    changed = tmp_path / "types.csv"
    changed.write_bytes(TYPES.read_bytes().replace(b"21.46", b"21.47", 1))
    before = run_ingest(str(TYPES), str(tmp_path / "a"), label="tip_binary")
    after = run_ingest(str(changed), str(tmp_path / "b"), label="tip_binary")
    assert before["size_bytes"] == after["size_bytes"]
    assert before["sha256"] != after["sha256"]


def test_split_is_the_same_whatever_the_row_order_and_chunking(tmp_path):
    lines = write_rows_csv(tmp_path / "rows.csv", 400)
    shuffled = lines[1:]
    random.Random(1).shuffle(shuffled)
    (tmp_path / "shuffled.csv").write_text("\n".join([lines[0]] + shuffled) + "\n")

    run_ingest(str(tmp_path / "rows.csv"), str(tmp_path / "a"), label="label")
    run_ingest(str(tmp_path / "shuffled.csv"), str(tmp_path / "b"), label="label", chunk_rows=7)
    assert ids_by_split(tmp_path / "a") == ids_by_split(tmp_path / "b")


def test_split_ratios_are_honoured_approximately(tmp_path):
    write_rows_csv(tmp_path / "rows.csv", 2000)
    version = run_ingest(str(tmp_path / "rows.csv"), str(tmp_path / "out"), label="label",
                         split_ratios={"train": 5, "eval": 3, "test": 2})
    assert version["split_ratios"] == {"train": 0.5, "eval": 0.3, "test": 0.2}
    counts = version["row_counts"]
    assert sum(counts.values()) == 2000
    for split, ratio in version["split_ratios"].items():
        assert abs(counts[split] / 2000 - ratio) < 0.04, counts
    assert len(read_examples(tmp_path / "out", "test")) == counts["test"]


def test_parquet_folder_and_glob_give_the_same_splits_as_csv(tmp_path, types_out):
    import pyarrow.csv
    import pyarrow.parquet as pq

    table = pyarrow.csv.read_csv(str(TYPES))
    pq.write_table(table, str(tmp_path / "types.parquet"))
    from_parquet = run_ingest(str(tmp_path / "types.parquet"), str(tmp_path / "pq"), label="tip_binary")
    csv_out, from_csv = types_out
    assert from_parquet["columns"] == from_csv["columns"]
    assert sum(from_parquet["row_counts"].values()) == 60
    assert all_examples(tmp_path / "pq") == all_examples(csv_out)

    folder = tmp_path / "parts"
    folder.mkdir()
    lines = TYPES.read_text().splitlines()
    (folder / "part-1.csv").write_text("\n".join(lines[:31]) + "\n")
    (folder / "part-2.csv").write_text("\n".join([lines[0]] + lines[31:]) + "\n")
    from_folder = run_ingest(str(folder), str(tmp_path / "folder"), label="tip_binary")
    from_glob = run_ingest(str(folder / "part-*.csv"), str(tmp_path / "glob"), label="tip_binary")
    assert from_folder["row_counts"] == from_glob["row_counts"] == from_csv["row_counts"]
    assert ids_by_split(tmp_path / "folder") == ids_by_split(csv_out)
    both = (folder / "part-1.csv").read_bytes() + (folder / "part-2.csv").read_bytes()
    assert from_folder["sha256"] == hashlib.sha256(both).hexdigest()


def test_gzipped_csv_and_gfile_uri_are_read(tmp_path, types_out):
    import gzip

    import tensorflow as tf

    compressed = gzip.compress(TYPES.read_bytes())
    (tmp_path / "types.csv.gz").write_bytes(compressed)
    from_gzip = run_ingest(str(tmp_path / "types.csv.gz"), str(tmp_path / "gz"), label="tip_binary")
    assert from_gzip["sha256"] == hashlib.sha256(compressed).hexdigest()
    assert ids_by_split(tmp_path / "gz") == ids_by_split(types_out[0])

    tf.io.gfile.makedirs("ram://ingest-test")
    tf.io.gfile.copy(str(TYPES), "ram://ingest-test/types.csv", overwrite=True)
    from_ram = run_ingest("ram://ingest-test/types.csv", "ram://ingest-test/out", label="tip_binary")
    assert from_ram["sha256"] == types_out[1]["sha256"]
    assert from_ram["row_counts"] == types_out[1]["row_counts"]
    assert tf.io.gfile.exists("ram://ingest-test/out/Split-eval/data-00000-of-00001.tfrecord.gz")


def test_large_splits_are_sharded(tmp_path, monkeypatch):
    from prodml.components.ingest import splits

    monkeypatch.setattr(splits, "ROWS_PER_SHARD", 10)
    version = run_ingest(str(TYPES), str(tmp_path), label="tip_binary")
    train = sorted(p.name for p in (tmp_path / "Split-train").iterdir())
    shards = -(-version["row_counts"]["train"] // 10)
    assert train == [f"data-{i:05d}-of-{shards:05d}.tfrecord.gz" for i in range(shards)]
    assert len(read_examples(tmp_path, "train")) == version["row_counts"]["train"]


@pytest.mark.parametrize("ratios", [{"train": 1.0}, {"train": 0.8, "eval": 0}, {"train": 1, "eval": "x"}])
def test_bad_split_ratios_are_a_config_error(tmp_path, ratios):
    with pytest.raises(ConfigError, match="split_ratios"):
        run_ingest(str(TYPES), str(tmp_path), label="tip_binary", split_ratios=ratios)


def test_drop_columns_leaves_them_out(tmp_path):
    version = run_ingest(str(TYPES), str(tmp_path), label="tip_binary",
                         drop_columns=["payment type", "many"])
    assert version["dropped_columns"] == ["payment_type", "many"]
    assert "payment_type" not in version["columns"] and "many" not in version["columns"]
    assert all("payment_type" not in row for row in read_examples(tmp_path, "train").values())


def test_column_without_any_value_is_left_out(tmp_path):
    (tmp_path / "d.csv").write_text("x,nothing,label\n" + "".join(f"{i},,{i % 2}\n" for i in range(20)))
    version = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label")
    assert version["columns"] == {"x": "INT", "label": "INT"}
    assert version["dropped_columns"] == ["nothing"]


@pytest.mark.parametrize("label, problem_type, classes", [
    ("tip_binary", "binary", ["0", "1"]),
    ("tip_class", "multiclass", ["1", "2", "3"]),
    ("tip_amount", "regression", None),
    ("many", "regression", None),  # integers with more than 20 distinct values
    ("tipped", "binary", ["no", "yes"]),
    ("tip_level", "multiclass", ["high", "low", "mid"]),
])
def test_label_problem_type_is_detected(tmp_path, label, problem_type, classes):
    version = run_ingest(str(TYPES), str(tmp_path), label=label)
    assert version["label"] == {"name": label, "problem_type": problem_type, "classes": classes}


def test_numeric_classes_sort_numerically(tmp_path):
    rows = ["x,label"] + [f"{i},{v}" for i, v in enumerate([10, 9, 2, 10, 9, 2] * 5)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    version = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label")
    assert version["label"]["classes"] == ["2", "9", "10"]


def test_explicit_binary_with_three_classes_is_an_error(tmp_path):
    with pytest.raises(InputDataError, match=r"tip_class.*3 classes"):
        run_ingest(str(TYPES), str(tmp_path), label="tip_class", problem_type="binary")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(InputDataError, match="nowhere.csv"):
        run_ingest(str(DATA / "nowhere.csv"), str(tmp_path), label="label")


def test_missing_label_lists_the_columns(tmp_path):
    with pytest.raises(ConfigError, match=r"'tip'.*Columns: id, fare____, payment_type"):
        run_ingest(str(TYPES), str(tmp_path), label="tip")


def test_one_class_label_names_label_file_and_value(tmp_path):
    with pytest.raises(InputDataError, match=r"'constant' in .*types.csv has a single class, 'same'"):
        run_ingest(str(TYPES), str(tmp_path), label="constant")
    assert not (tmp_path / keys.DATA_VERSION_FILE).exists()
    assert not list(tmp_path.glob("Split-*/*"))


def test_empty_label_cell_names_the_line(tmp_path):
    with pytest.raises(InputDataError, match=r"'label' is empty on line 6 of .*missing_label.csv \(an empty "
                                             r"cell, or a missing-value marker listed in na_values\)"):
        run_ingest(str(DATA / "missing_label.csv"), str(tmp_path), label="label")


@pytest.mark.parametrize("name, message", [
    ("empty.csv", r"empty.csv is empty"),
    ("header_only.csv", r"header_only.csv has a header but no rows"),
])
def test_empty_inputs_name_the_file(tmp_path, name, message):
    with pytest.raises(InputDataError, match=message):
        run_ingest(str(DATA / name), str(tmp_path), label="label")


def test_non_numeric_value_after_the_first_chunk_names_column_line_and_value(tmp_path):
    with pytest.raises(InputDataError) as error:
        run_ingest(str(DATA / "late_bad_value.csv"), str(tmp_path), label="label", chunk_rows=10)
    assert str(error.value) == (
        f"Column 'fare' holds numbers in 29 of its 30 non-empty cells, but line 25 of {DATA / 'late_bad_value.csv'} "
        "has 'twelve'. If 'twelve' marks a missing value, add it to the markers: na_values (--na-values) "
        f"replaces the list, so give {_keeping_defaults('twelve')}; otherwise correct "
        "the cell, or pass 'fare' in drop_columns. A column is read as text only when fewer than 90% of its "
        "cells are numbers.")
    assert not (tmp_path / keys.DATA_VERSION_FILE).exists()
    assert not list(tmp_path.glob("Split-*/*"))


@pytest.mark.parametrize("position", [2, 31])
def test_a_decimal_makes_an_integer_column_float_wherever_it_is(tmp_path, position):
    rows = [f"{i},{i % 2}" for i in range(30)]
    rows.insert(position - 1, "2.5,1")
    (tmp_path / "d.csv").write_text("\n".join(["n,label"] + rows) + "\n")
    version = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label", chunk_rows=10)
    assert version["columns"] == {"n": "FLOAT", "label": "INT"}
    values = [v for split in ("train", "eval") for v in _values(tmp_path / "out", split, "n")]
    assert sorted(values) == sorted([float(i) for i in range(30)] + [2.5])
    assert len(list((tmp_path / "out").glob("Split-*/data-*"))) == 2  # the first attempt left nothing


def _values(output_dir, split, feature):
    import tensorflow as tf

    files = sorted((pathlib.Path(output_dir) / f"Split-{split}").glob("data-*.tfrecord.gz"))
    for record in tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP"):
        f = tf.train.Example.FromString(record.numpy()).features.feature[feature]
        yield from getattr(f, f.WhichOneof("kind")).value


def test_kinds_and_examples_do_not_depend_on_row_order_or_chunking(tmp_path):
    """The same cells give the same examples whether 'NA' and the decimals come first or last."""
    cells = [("NA", "7", "a", "1"), ("3", "2.5", "b", "0"), ("", "1", "NA", "1")] + [
        (str(i), str(i), "c", str(i % 2)) for i in range(40)]
    results = []
    for name, rows in {"first": cells, "last": cells[3:] + cells[:3]}.items():
        (tmp_path / f"{name}.csv").write_text("\n".join(["n,x,s,label"] + [",".join(r) for r in rows]) + "\n")
        for chunk_rows in (4, 1000):
            out = tmp_path / f"{name}-{chunk_rows}"
            version = run_ingest(str(tmp_path / f"{name}.csv"), str(out), label="label", chunk_rows=chunk_rows)
            examples = sorted(repr(sorted(row.items())) for row in read_examples_by(out, "n").values())
            results.append((version["columns"], examples))
    assert all(result == results[0] for result in results)
    assert results[0][0] == {"n": "INT", "x": "FLOAT", "s": "BYTES", "label": "INT"}
    assert "('n', [3])" in results[0][1][0] + "".join(results[0][1])


def test_default_missing_markers_are_pandas_markers():
    import pandas as pd

    from prodml.components.common import defaults

    # pandas 2 added "None" to the set that pandas 1.5 (pinned by TFDV) has.
    assert set(defaults.NA_VALUES) == set(pd._libs.parsers.STR_NA_VALUES) | {"None"}


def test_na_values_replace_the_default_markers(tmp_path):
    lines = ["n,s,label"] + [f"{i},x{i % 3},{i % 2}" for i in range(30)] + ["-,NA,1", "NA,-,0"]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputDataError, match=r"^Column 'n' holds numbers in 30 of its 31 non-empty cells, "
                                             r"but line 32 of .*d.csv has '-'\. If '-' marks a missing value, "
                                             r"add it to the markers: na_values \(--na-values\) replaces "
                                             r"the list, so give --na-values='.*,-,.*'"):
        run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "a"), label="label")
    version = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "b"), label="label", na_values=["-", "NA"])
    assert version["columns"] == {"n": "INT", "s": "BYTES", "label": "INT"}
    assert version["na_values"] == ["", "-", "NA"]
    assert sum("n" not in row for row in read_examples_by(tmp_path / "b", "n").values()) == 2
    text = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "c"), label="label", na_values=["-"],
                      drop_columns=["n"])
    assert text["na_values"] == ["", "-"]
    assert [b"NA"] in [row.get("s") for row in read_examples_by(tmp_path / "c", "s").values()]
    only_empty = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "e"), label="label", na_values=[],
                            drop_columns=["n"])
    assert only_empty["na_values"] == [""]
    assert [b"-"] in [row.get("s") for row in read_examples_by(tmp_path / "e", "s").values()]


def read_examples_by(output_dir, key):
    import tensorflow as tf

    rows = {}
    for split in ("train", "eval"):
        files = sorted((pathlib.Path(output_dir) / f"Split-{split}").glob("data-*.tfrecord.gz"))
        for i, record in enumerate(tf.data.TFRecordDataset([str(f) for f in files], compression_type="GZIP")):
            features = tf.train.Example.FromString(record.numpy()).features.feature
            values = {name: list(getattr(f, f.WhichOneof("kind")).value) for name, f in features.items()}
            rows[(split, i)] = values
    return rows


@pytest.mark.parametrize("cell", ["inf", "-inf", "Infinity", "1e39", "-3.5e38", "1e400"])
def test_values_beyond_float32_are_an_error_naming_the_cell(tmp_path, cell):
    lines = ["x,label"] + [f"{i}.5,{i % 2}" for i in range(20)]
    lines.insert(8, f"{cell},1")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputDataError) as error:
        run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label", chunk_rows=5)
    assert str(error.value).startswith(
        f"Column 'x' is numeric, but line 9 of {tmp_path / 'd.csv'} has {cell!r}, which is not a finite "
        "float32 number")
    assert not list((tmp_path / "out").glob("Split-*/*"))


def test_inf_in_a_text_column_is_text(tmp_path):
    lines = ["word,label"] + [f"w{i},{i % 2}" for i in range(20)] + ["inf,1"]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    version = run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label")
    assert version["columns"]["word"] == "BYTES"


def test_line_numbers_count_quoted_line_breaks_crlf_and_blank_lines(tmp_path):
    lines = ["id,note,x,label", '1,"two\r\nlines",1.5,1', "", '2,"three\r\n\r\nlines",2.5,0', "3,plain,oops,1"]
    lines += [f"{i},n,{i}.5,{i % 2}" for i in range(4, 40)]
    (tmp_path / "d.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    with pytest.raises(InputDataError, match=r"line 8 of .*d.csv has 'oops'"):
        run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label", chunk_rows=2)


def test_old_mac_line_ends_are_lines(tmp_path):
    lines = ["id,x,label"] + [f"{i},{i},{i % 2}" for i in range(20)] + ["20,,"]
    (tmp_path / "d.csv").write_bytes(("\r".join(lines) + "\r").encode())
    with pytest.raises(InputDataError, match=r"'label' is empty on line 22 of"):
        run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label")


def test_short_rows_are_padded_and_long_rows_are_an_error(tmp_path):
    (tmp_path / "short.csv").write_text("label,a,b\n" + "".join(f"{i % 2},{i},{i}\n" for i in range(20))
                                        + "1,-7\n0,-8,-8,\n")
    version = run_ingest(str(tmp_path / "short.csv"), str(tmp_path / "s"), label="label")
    assert sum(version["row_counts"].values()) == 22
    rows = {row["a"][0]: row for row in read_examples_by(tmp_path / "s", "a").values()}
    assert "b" not in rows[-7] and rows[-8]["b"] == [-8]
    (tmp_path / "long.csv").write_text("a,label\n1,0\n2,1\n3,4,5\n")
    with pytest.raises(InputDataError, match=r"^Line 4 of .*long.csv has 3 cells but the header has 2 columns"):
        run_ingest(str(tmp_path / "long.csv"), str(tmp_path / "l"), label="label")


def test_unbalanced_quote_names_the_line_where_its_row_starts(tmp_path):
    (tmp_path / "d.csv").write_text('a,label\n1,0\n"2,1\n3,0\n4,1\n')
    with pytest.raises(InputDataError, match=r"^Cannot parse .*d.csv as CSV: unexpected end of data, in the "
                                             r"row that starts on line 3"):
        run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "out"), label="label")


def test_parquet_nan_is_missing(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"x": [1.5, float("nan"), None, 2.5] * 5, "label": [0, 1] * 10})
    pq.write_table(table, str(tmp_path / "d.parquet"))
    version = run_ingest(str(tmp_path / "d.parquet"), str(tmp_path / "out"), label="label")
    assert version["columns"] == {"x": "FLOAT", "label": "INT"}
    assert sum("x" in row for row in read_examples_by(tmp_path / "out", "x").values()) == 10


def test_colliding_column_names_are_an_error(tmp_path):
    with pytest.raises(InputDataError, match=r"'a b'.*'a_b'"):
        run_ingest(str(DATA / "name_collision.csv"), str(tmp_path), label="label")


def test_unknown_drop_column_lists_the_columns(tmp_path):
    with pytest.raises(ConfigError, match=r"'nope' is not a column.*Columns: id, fare____"):
        run_ingest(str(TYPES), str(tmp_path), label="tip_binary", drop_columns=["nope"])


def test_dropping_the_label_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="label"):
        run_ingest(str(TYPES), str(tmp_path), label="tip_binary", drop_columns=["tip_binary"])


def test_rerun_replaces_the_previous_output(tmp_path):
    run_ingest(str(TYPES), str(tmp_path), label="tip_binary")
    shutil.copy(TYPES, tmp_path / "copy.csv")
    version = run_ingest(str(tmp_path / "copy.csv"), str(tmp_path), label="tip_binary")
    assert len(list(tmp_path.glob("Split-*/data-*"))) == 2
    assert sum(version["row_counts"].values()) == 60


def test_ingested_taxi_fixture(ingested):
    version = json.loads((ingested / keys.DATA_VERSION_FILE).read_text())
    assert version["label"] == {"name": "big_tipper", "problem_type": "binary", "classes": ["0", "1"]}
    # pickup_census_tract has no value in the first 3,000 trips.
    assert version["dropped_columns"] == ["tips", "pickup_census_tract"]
    assert "tips" not in version["columns"] and "pickup_census_tract" not in version["columns"]
    assert sum(version["row_counts"].values()) == 3000
    assert version["columns"]["fare"] == "FLOAT" and version["columns"]["company"] == "BYTES"


@pytest.mark.parametrize("damage", ["flipped", "not_gzip"])
def test_corrupt_gzip_is_one_paragraph_naming_the_file(tmp_path, damage):
    import gzip

    data = gzip.compress(TYPES.read_bytes() * 5, mtime=0)
    if damage == "flipped":
        data = data[:200] + bytes(b ^ 0xFF for b in data[200:260]) + data[260:]
    else:
        data = TYPES.read_bytes()
    (tmp_path / "d.csv.gz").write_bytes(data)
    with pytest.raises(InputDataError) as error:
        run_ingest(str(tmp_path / "d.csv.gz"), str(tmp_path / "out"), label="tip_binary")
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'd.csv.gz'} is not a complete gzip file (")
    assert message.endswith("it is truncated or corrupt, and no row of it was used. Download or compress it "
                            "again; 'gzip -t FILE' checks a .gz file.")
    assert not list((tmp_path / "out").glob("Split-*/*"))


def test_numbers_parsed_by_the_profile_give_the_same_arrays_as_parsing_again():
    import numpy as np
    import pandas as pd

    from prodml.components.ingest import columns

    cells = {"ints": ["1", None, "-3", " +4 "], "floats": ["1.5", "2", None, "1e-3"]}
    for name, values in cells.items():
        series = pd.Series(values, dtype=object)
        profile = columns.ColumnProfile(name)
        profile.observe(series, str)
        kind = profile.provisional_kind()
        reused = columns.to_arrow(series, kind, profile.parsed)
        again = columns.to_arrow(series, kind)
        assert reused.equals(again), name
        assert reused.null_count == 1
    assert np.isclose(reused.to_pylist()[3], 1e-3)


def test_a_float_column_stays_float_when_later_chunks_hold_only_integers():
    import pandas as pd

    from prodml.components.ingest import columns

    profile = columns.ColumnProfile("x")
    profile.observe(pd.Series(["1.5", "2"], dtype=object), str)
    profile.observe(pd.Series(["3", "4"], dtype=object), str)  # skips the integer test: already FLOAT
    assert profile.provisional_kind() == keys.FLOAT
    ints = columns.ColumnProfile("y")
    ints.observe(pd.Series(["3", "4"], dtype=object), str)
    ints.observe(pd.Series(["5", None], dtype=object), str)
    assert ints.provisional_kind() == keys.INT
