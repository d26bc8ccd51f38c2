"""The monitor's traffic reader, PSI and decision bounds on small hand-written logs (no model, no TF)."""

import json

import numpy as np
import pytest

from prodml.components.common import artifacts
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.monitor import decision, drift, traffic

MODEL = artifacts.ModelInfo.from_dict({
    "label": {"name": "y", "problem_type": "binary", "classes": ["0", "1"]},
    "raw_features": {"n": "INT", "x": "FLOAT", "c": "BYTES"}, "signatures": {}, "params": {}})


def _record(i, version=1):
    return {"timestamp": f"2026-12-01T10:00:{i % 60:02d}+00:00", "model_name": "m", "model_version": version,
            "request_id": f"r{i // 3}", "row": i % 3, "passthrough": {"trip_id": i},
            "features": {"n": i % 7 if i % 5 else None, "x": i / 4, "c": "abc"[i % 3] if i % 4 else ""},
            "prediction": (i % 10) / 10}


def _read(uri, chunk_rows=50, join_key=""):
    counts = traffic.Counts()
    chunks = list(traffic.read(traffic.list_files(uri), MODEL, chunk_rows, counts, 3, join_key))
    return chunks, counts


def test_rotated_files_are_read_oldest_first_and_bad_lines_are_named(tmp_path):
    lines = [json.dumps(_record(i)) for i in range(1200)]
    lines.insert(120, "{not json")
    lines.insert(1100, json.dumps({"features": 3}))  # in a later block of the newest file
    (tmp_path / "requests.log.2").write_text("\n".join(lines[:100]) + "\n")
    (tmp_path / "requests.log.1").write_text("\n".join(lines[100:200]) + "\n")
    (tmp_path / "requests.log").write_text("\n".join(lines[200:]))  # no newline at the end
    chunks, counts = _read(str(tmp_path / "requests.log"), chunk_rows=40, join_key="trip_id")
    assert counts.files == [str(tmp_path / n) for n in ("requests.log.2", "requests.log.1", "requests.log")]
    assert sum(c.rows for c in chunks) == 1200 and len(chunks) > 4  # the newest file in several blocks
    assert counts.malformed == 2
    assert counts.malformed_examples[0].startswith(f"{tmp_path / 'requests.log.1'} line 21: not JSON")
    assert counts.malformed_examples[1].startswith(f"{tmp_path / 'requests.log'} line 901: not a request-log record")
    keys_ = np.concatenate([c.join_keys["trip_id"] for c in chunks])
    assert list(keys_) == [str(i) for i in range(1200)]  # every row once, in order, the int key as text


def test_features_are_typed_as_tfdv_sees_them(tmp_path):
    (tmp_path / "log.jsonl").write_text("".join(json.dumps(_record(i)) + "\n" for i in range(20)))
    (chunk,), _ = _read(str(tmp_path / "log.jsonl"))
    assert str(chunk.features["n"].type) == "int64" and chunk.features["n"].null_count == 4
    assert str(chunk.features["x"].type) == "float" and chunk.features["x"].null_count == 0
    assert chunk.features["c"].null_count == 5  # "" is missing, as the serving signature reads it
    assert chunk.versions.tolist() == [1] * 20 and chunk.predictions[3] == pytest.approx(0.3)
    assert "request_id" not in chunk.join_keys  # parsed only when labels are joined on it


def test_a_fractional_value_of_an_int_feature_is_counted_not_truncated(tmp_path):
    record = _record(1)
    record["features"]["n"] = 2.5
    (tmp_path / "log.jsonl").write_text(json.dumps(record) + "\n")
    (chunk,), counts = _read(str(tmp_path / "log.jsonl"))
    assert chunk.features["n"].null_count == 1 and counts.type_mismatches == {"n": 1}


def test_no_traffic_is_one_paragraph(tmp_path):
    with pytest.raises(InputDataError, match="No traffic at .*nothing.*give a request-log file"):
        traffic.list_files(str(tmp_path / "nothing"))


def test_psi_is_zero_for_the_same_shares_and_grows_with_the_shift():
    assert drift.psi([10, 20, 70], [1, 2, 7]) == pytest.approx(0.0)
    small, large = drift.psi([50, 50], [45, 55]), drift.psi([50, 50], [10, 90])
    assert 0 < small < 0.05 < 0.2 < large
    assert drift.psi([0, 0], [1, 1]) is None


def test_thresholds_are_checked_by_name():
    assert decision.bounds({"js": 0.3})["js"] == 0.3
    with pytest.raises(ConfigError, match="Unknown monitoring threshold 'jsd'"):
        decision.bounds({"jsd": 0.3})
    with pytest.raises(ConfigError, match="must be a number ≥ 0"):
        decision.bounds({"psi": -1})
    drifted = decision.drifted({"a": {"js": 0.5, "psi": 0.1}, "b": {"linf": 0.05, "psi": 2.0},
                                "c": {"js": 0.01, "psi": None}}, decision.bounds(None))
    assert drifted == ["b", "a"]  # most over its bound first


def test_times_are_parsed_to_utc_whichever_reader_parses_the_block(tmp_path):
    stamps = ["2026-12-01T10:00:00.123456+00:00", "2026-12-01T11:30:00+01:00", "2026-12-01T10:00:02Z",
              "2026-12-01T10:00:03", None]
    lines = [json.dumps(dict(_record(i), timestamp=stamp)) for i, stamp in enumerate(stamps)]
    expected = np.array(["2026-12-01T10:00:00.123456", "2026-12-01T10:30:00", "2026-12-01T10:00:02",
                         "2026-12-01T10:00:03", "NaT"], "datetime64[ns]")
    (tmp_path / "arrow.jsonl").write_text("\n".join(lines) + "\n")  # Arrow's reader parses the times
    (tmp_path / "lines.jsonl").write_text("\n".join(lines + ["oops"]) + "\n")  # the line-by-line reader does
    for name in ("arrow.jsonl", "lines.jsonl"):
        (chunk,), _ = _read(str(tmp_path / name))
        np.testing.assert_array_equal(chunk.times, expected)


def test_served_values_are_clipped_to_the_training_range_and_the_rest_counted():
    import pyarrow as pa

    from prodml.components.monitor import serving_stats as ss

    ints, floats = ss.RangeCounter(0.0, 100.0), ss.RangeCounter(-1.5, 2.5)
    assert ints.clip(pa.array([-3, 5, None, 100, 7000], pa.int64())).to_pylist() == [0, 5, None, 100, 100]
    assert floats.clip(pa.array([-2.0, 0.5, 3.0, None], pa.float32())).to_pylist() == [-1.5, 0.5, 2.5, None]
    assert (ints.present, ints.below, ints.above) == (4, 1, 1)
    assert (floats.present, floats.below, floats.above) == (3, 1, 1)
    assert (ints.minimum, ints.maximum) == (-3, 7000) and (floats.minimum, floats.maximum) == (-2.0, 3.0)
