"""Ingest's fast paths give what the plain ones give: Arrow's tokenizer on plain CSV blocks, the
per-value hash, and the tf.Example encoder."""

import pathlib
import random

import numpy as np
import pandas as pd
import pytest

from prodml.components.common import keys
from prodml.components.common.errors import InputDataError
from prodml.components.ingest import columns, sources, splits

ROOT = pathlib.Path(__file__).parent.parent
CSV_FILES = sorted((ROOT / "data" / "csv").glob("*.csv*")) + sorted((ROOT / "testdata" / "ingest").glob("*.csv"))


def _read(path, chunk_rows=3):
    """Every chunk's (frame, lines, first_row) of ``path``, or the error message."""
    try:
        return [(c.frame, c.lines.tolist(), c.first_row)
                for c in sources.read_chunks([str(path)], chunk_rows, sources.Fingerprint())]
    except InputDataError as e:
        return str(e)


def _same(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return len(a) == len(b) and all(
        x.equals(y) and list(x.columns) == list(y.columns) and (x.dtypes == y.dtypes).all() and lx == ly and fx == fy
        for (x, lx, fx), (y, ly, fy) in zip(a, b))


@pytest.fixture
def plain_calls(monkeypatch):
    """Small blocks, so that files of a few lines have plain blocks; counts the blocks read as plain."""
    monkeypatch.setattr(sources, "FIRST_BLOCK", 40)
    monkeypatch.setattr(sources, "BLOCK", 64)
    calls = {"plain": 0}
    plain_rows = sources._plain_rows

    def counting(block, names):
        table = plain_rows(block, names)
        calls["plain"] += table is not None
        return table

    monkeypatch.setattr(sources, "_plain_rows", counting)
    return calls


def _csv_module_only(path, monkeypatch, chunk_rows=3):
    with monkeypatch.context() as m:
        m.setattr(sources, "_plain_rows", lambda block, names: None)
        return _read(path, chunk_rows)


def _awkward(rng, n_rows):
    """CSV bytes with stretches of plain lines between quotes, CRs, blank, short and long lines."""
    nl = rng.choice(["\n", "\r\n", "\r"])
    lines = []
    for i in range(n_rows):
        r = rng.random()
        if r < 0.05:
            lines.append(rng.choice(["", "   "]))
        elif r < 0.1:
            lines.append(f'{i},"two{nl}lines, ""quoted""",x')
        elif r < 0.13:
            lines.append(rng.choice([f"{i},short", f"{i},long,x,,", f"{i},NA,"]))
        else:
            lines.append(f"{i},{rng.choice(['1.5', '', 'NA', 'b c', 'é'])},{rng.choice(['0', '1'])}")
    text = "id,value,label" + nl + nl.join(lines) + rng.choice(["", nl])
    return rng.choice([b"", b"\xef\xbb\xbf"]) + text.encode()


def test_plain_blocks_read_as_the_csv_module_reads_them(tmp_path, plain_calls, monkeypatch):
    rng = random.Random(7)
    files = list(CSV_FILES)
    for i in range(30):
        files.append(tmp_path / f"awkward-{i}.csv")
        files[-1].write_bytes(_awkward(rng, rng.randint(1, 120)))
    for path in files:
        for chunk_rows in (3, 1000):
            assert _same(_read(path, chunk_rows), _csv_module_only(path, monkeypatch, chunk_rows)), (path, chunk_rows)
    assert plain_calls["plain"] > 50


def test_errors_after_plain_blocks_name_the_line(tmp_path, plain_calls):
    rows = [f"{i},{i % 7}.5,{i % 2}" for i in range(1, 200)]
    cases = {
        "long row": (rows[:150] + ["150,1,0,extra"] + rows[150:], "Line 152 of"),
        "quote": (rows[:120] + ['120,"open,0'] + rows[120:], "in the row that starts on line 122"),
        "not utf-8": (rows[:100] + ["100,caf\xe9,0"] + rows[100:], "line 102 has the byte 0xe9"),
    }
    for name, (lines, expected) in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(("id,value,label\n" + "\n".join(lines) + "\n").encode("latin-1"))
        message = _read(path)
        assert isinstance(message, str) and expected in message, (name, message)
    assert plain_calls["plain"] >= 3


def test_plain_rows_take_only_plain_blocks():
    names = ["a", "b"]
    assert sources._plain_rows(b"1,2\n3,4\n", names).to_pydict() == {"a": ["1", "3"], "b": ["2", "4"]}
    assert sources._plain_rows(b"1,2\n3,4", names).num_rows == 2
    for block in (b'1,"2"\n', b"1,2\r\n", b"1,2\n\n3,4\n", b"\n1,2\n", b"\xef\xbb\xbf1,2\n", b"1,2,3\n",
                  b"1\n", b"   \n", b"1,\xe9\n"):
        assert sources._plain_rows(block, names) is None, block
    assert sources._plain_rows(b"1\n2\n", ["a"]) is None  # one column: a line of spaces is blank


def test_chunk_frame_is_strings_and_nan(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c\n1,NA,\nx,,\n")
    chunk = next(sources.read_chunks([str(path)], 10, sources.Fingerprint()))
    frame = chunk.frame
    assert list(frame.dtypes) == [object] * 3
    assert frame["a"].tolist() == ["1", "x"]
    assert frame[["b", "c"]].isna().all().all() and isinstance(frame.loc[0, "b"], float)


def test_row_hashes_are_pandas_hashes():
    frame = pd.DataFrame({"a": ["x", np.nan, "x", "é", ""], "b": [np.nan] * 5, "c": ["1", "2", "1", "1", "NA"]},
                         dtype=object)
    cells = [columns.Cells.of(frame[name]) for name in frame.columns]
    expected = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    assert (splits.hash_rows(cells) == expected).all()
    ratios = splits.normalise_ratios(None)
    assert (splits.assign(cells, ratios) == splits.assign(frame, ratios)).all()


def test_cells_of_a_slice_hold_only_its_values():
    import pyarrow as pa
    import pyarrow.compute as pc

    column = pc.dictionary_encode(pa.array(["a", "b", None, "c", "b"])).slice(1, 3)
    cells = columns.Cells.of(column)
    assert cells.values.tolist() == ["b", "c"] and cells.index.tolist() == [0, -1, 1]
    assert cells.counts.tolist() == [1, 1] and cells.first(np.array([False, True])) == 2


def test_pinned_splits_name_the_first_bad_row():
    ratios = splits.normalise_ratios(None)
    values = pd.Series([None, " eval", "train", None], dtype=object, name="split")
    hashed = np.array([0, 0, 1, 1])
    assert splits.pinned(columns.Cells.of(values), ratios, hashed, str, "split").tolist() == [0, 1, 0, 1]
    with pytest.raises(InputDataError, match="On 2, the split column 'split' holds 'test'"):
        splits.pinned(pd.Series(["train", None, "test", "x"], dtype=object, name="split"), ratios, hashed, str)


def test_encoded_examples_are_tfx_bsl_examples():
    import pyarrow as pa
    import tensorflow as tf
    from tfx_bsl.coders.example_coder import RecordBatchToExamplesEncoder

    long_name = "n" * 130
    data = {
        "i": (keys.INT, ["-1", "0", "9223372036854775807", None, "-9223372036854775808", "300"]),
        "f": (keys.FLOAT, ["1.5", None, "-3e38", "1e-40", "0.1", "7"]),
        "s": (keys.BYTES, ["é", "x" * 200, None, " ", "a,b", "é"]),
        long_name: (keys.INT, ["1", "2", "3", "4", "5", "6"]),
    }
    features = {}
    for name, (kind, values) in data.items():
        cells = columns.Cells.of(pd.Series(values, dtype=object))
        features[name] = (kind, cells, columns.typed_values(cells, kind))
    records = splits.encode(features)
    encoder = RecordBatchToExamplesEncoder()
    for row, record in enumerate(records):
        present = [n for n, (_, values) in data.items() if values[row] is not None]
        arrays = [pa.ListArray.from_arrays(pa.array([0, 1], pa.int32()),
                                           columns.to_arrow(pd.Series(data[n][1][row:row + 1], dtype=object),
                                                            data[n][0]))
                  for n in present]
        expected = encoder.encode(pa.RecordBatch.from_arrays(arrays, present))[0]
        assert tf.train.Example.FromString(record) == tf.train.Example.FromString(expected), row
