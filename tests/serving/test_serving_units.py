"""Fast tests of the serving modules on their own, without a server or a model.

The codec, the batcher, the model source, the version manager, the request log and the error
table, each called directly (the serving marker: they import the serving environment's packages).
"""

import asyncio
import json
import os
import stat
import struct
import threading

import numpy as np
import pytest
from grpc import StatusCode
from kserve.errors import ModelNotFound, ModelNotReady

from prodml.components.common import registry
from prodml.components.common.errors import ConfigError, RegistryError
from prodml.serving import codec, errors
from prodml.serving.batcher import MicroBatcher
from prodml.serving.model_source import MODEL, REGISTRY, SAVED_MODEL, ModelSource
from prodml.serving.model_version import FeatureSpec
from prodml.serving.quiet_tf import is_noise
from prodml.serving.request_log import RequestLogger, RotatingFile
from prodml.serving.versions import VersionManager

pytestmark = pytest.mark.serving

FEATURES = {
    "company": FeatureSpec("company", "BYTES", "BYTES", np.object_),
    "fare": FeatureSpec("fare", "FLOAT", "FP32", np.float32),
    "trip_seconds": FeatureSpec("trip_seconds", "INT", "FP64", np.float64),
}
NAME = "taxi"


# Codec -----------------------------------------------------------------------------------------

def test_instances_become_typed_columns_with_missing_values():
    columns, rows = codec.from_instances(
        [{"company": "A", "fare": 1.5, "trip_seconds": 60, "id": 7},
         {"company": None, "fare": None, "trip_seconds": None}], FEATURES)
    assert rows == 2
    assert columns["company"].tolist() == ["A", ""]
    assert columns["fare"].dtype == np.float32 and columns["fare"][0] == 1.5 and np.isnan(columns["fare"][1])
    assert columns["trip_seconds"].dtype == np.float64 and np.isnan(columns["trip_seconds"][1])


@pytest.mark.parametrize("rows", [2, 100], ids=["short", "vectorised"])
@pytest.mark.parametrize("feature,value", [("fare", 1e39), ("fare", -1e39), ("trip_seconds", 1e39),
                                           ("trip_seconds", 10 ** 40), ("fare", 10 ** 400)])
def test_values_outside_float32_are_400_naming_feature_and_row(rows, feature, value):
    columns = {"company": ["x"] * rows, "fare": [1.0] * rows, "trip_seconds": [1] * rows}
    columns[feature][rows - 1] = value
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.from_columnar(columns, FEATURES)
    message = str(caught.value)
    assert f"Feature '{feature}'" in message and f"row {rows - 1} of inputs" in message and "float32" in message
    assert errors.status_of(caught.value).http == 400


def test_float32_limits_and_nan_are_accepted():
    limit = float(np.finfo(np.float32).max)
    for rows in (2, 100):
        columns, _ = codec.from_columnar({"company": ["x"] * rows, "fare": [limit] + [None] * (rows - 1),
                                          "trip_seconds": [-limit] + [1] * (rows - 1)}, FEATURES)
        assert np.isfinite(columns["fare"][0]) and np.isnan(columns["fare"][1])


def test_infinite_binary_value_is_400():
    inputs = [{"name": "company", "datatype": "BYTES", "shape": [1], "data": ["x"]},
              {"name": "trip_seconds", "datatype": "FP64", "shape": [1], "data": [1.0]},
              {"name": "fare", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}]
    header = json.dumps({"inputs": inputs}).encode()
    request = codec.v2_rest_request(header + np.array([np.inf], np.float32).tobytes(), str(len(header)), NAME)
    with pytest.raises(errors.InvalidRequest, match="Feature 'fare' has inf in row 0"):
        codec.from_v2(request.inputs, FEATURES)


@pytest.mark.parametrize("value", ["NaN", "inf", "1.5"])
def test_numbers_as_strings_are_400(value):
    with pytest.raises(errors.InvalidRequest, match=r"Feature 'fare' is a FLOAT feature but row 0"):
        codec.from_instances([{"company": "x", "fare": value, "trip_seconds": 1}], FEATURES)


def test_fractional_int_is_400_in_both_paths():
    for rows in (2, 100):
        values = [1] * rows
        values[-1] = 2.5
        with pytest.raises(errors.InvalidRequest, match=f"row {rows - 1} of inputs has 2.5"):
            codec.from_columnar({"company": ["x"] * rows, "fare": [1.0] * rows, "trip_seconds": values}, FEATURES)


def _binary_body(fare: bytes, declared: int, extra: bytes = b""):
    inputs = [{"name": "company", "datatype": "BYTES", "shape": [1], "data": ["x"]},
              {"name": "trip_seconds", "datatype": "FP64", "shape": [1], "data": [60]},
              {"name": "fare", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": declared}}]
    header = json.dumps({"inputs": inputs}).encode()
    return header + fare + extra, str(len(header))


def test_binary_v2_decodes():
    body, length = _binary_body(np.array([2.5], np.float32).tobytes(), 4)
    columns, rows = codec.from_v2(codec.v2_rest_request(body, length, NAME).inputs, FEATURES)
    assert rows == 1 and columns["fare"].tolist() == [2.5]


@pytest.mark.parametrize("case,expected", [
    ("short", "declares binary_data_size 8"),
    ("extra", "add up to 4"),
    ("odd", "Input 'fare' cannot be read as FP32"),
])
def test_binary_sizes_that_disagree_with_the_body_are_400(case, expected):
    fare = np.array([2.5], np.float32).tobytes()
    body, length = {"short": _binary_body(fare, 8), "extra": _binary_body(fare, 4, b"xx"),
                    "odd": _binary_body(fare[:3], 3)}[case]
    with pytest.raises(errors.InvalidRequest, match=expected):
        codec.from_v2(codec.v2_rest_request(body, length, NAME).inputs, FEATURES)


@pytest.mark.parametrize("length", ["abc", "-1", "99999", "1e3"])
def test_malformed_header_length_is_400_naming_the_header(length):
    body, _ = _binary_body(b"\0" * 4, 4)
    with pytest.raises(errors.InvalidRequest, match="inference-header-content-length header"):
        codec.v2_rest_request(body, length, NAME)


@pytest.mark.parametrize("where,payload", [
    ('"parameters"', {"parameters": "x"}),
    ("inputs[0].parameters", {"input_parameters": [1]}),
    ("outputs[0].parameters", {"outputs": [{"name": "predictions", "parameters": 3}]}),
])
def test_parameters_that_are_not_objects_are_400(where, payload):
    inputs = [{"name": "fare", "datatype": "FP32", "shape": [1], "data": [1.0]}]
    if "input_parameters" in payload:
        inputs[0]["parameters"] = payload.pop("input_parameters")
    with pytest.raises(errors.InvalidRequest) as caught:
        codec.v2_request({"inputs": inputs, **payload}, NAME)
    assert str(caught.value).startswith(where) and "must be an object" in str(caught.value)


def test_bytes_tensor_truncated_is_400():
    inputs = [{"name": "company", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
              {"name": "fare", "datatype": "FP32", "shape": [1], "data": [1.0]},
              {"name": "trip_seconds", "datatype": "FP64", "shape": [1], "data": [1]}]
    header = json.dumps({"inputs": inputs}).encode()
    body = header + struct.pack("<I", 10) + b"ab"  # says 10 bytes, has 2
    with pytest.raises(errors.InvalidRequest, match="Input 'company' cannot be read"):
        codec.from_v2(codec.v2_rest_request(body, str(len(header)), NAME).inputs, FEATURES)


# Batcher ---------------------------------------------------------------------------------------

class SumVersion:
    """A model version whose prediction is the row's fare; records each call's size and thread."""

    def __init__(self, version=1):
        self.version = version
        self.calls = []

    def predict(self, columns):
        self.calls.append((len(columns["fare"]), threading.get_ident()))
        return columns["fare"] * 1.0


def _columns(values):
    return {"fare": np.array(values, dtype=np.float32)}


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    version = SumVersion()
    observed = []

    async def scenario():
        batcher = MicroBatcher(max_batch_size=64, max_wait_ms=50,
                               on_batch=lambda v, c, p, r: observed.append((p.tolist(), r)))
        return await asyncio.gather(*[batcher.submit(version, _columns([i, i + 0.5]), 2, tag=f"request {i}")
                                      for i in range(10)])

    results = asyncio.run(scenario())
    assert [r.predictions.tolist() for r in results] == [[i, i + 0.5] for i in range(10)]
    assert len(version.calls) < 10 and sum(n for n, _ in version.calls) == 20
    # The observer gets each request's tag with its rows, in the order of the batch's predictions.
    assert sorted(tag for _, requests in observed for tag, _ in requests) == sorted(f"request {i}" for i in range(10))
    for predictions, requests in observed:
        assert [int(p) for p in predictions[::2]] == [int(tag.split()[1]) for tag, rows in requests if rows == 2]


def test_batches_respect_max_size_and_never_mix_versions():
    old, new = SumVersion(1), SumVersion(2)

    async def scenario():
        batcher = MicroBatcher(max_batch_size=4, max_wait_ms=50)
        calls = [batcher.submit(old if i < 6 else new, _columns([i]), 1) for i in range(10)]
        return await asyncio.gather(*calls)

    results = asyncio.run(scenario())
    assert [r.version.version for r in results] == [1] * 6 + [2] * 4
    assert [r.predictions.tolist() for r in results] == [[i] for i in range(10)]
    assert all(n <= 4 for n, _ in old.calls + new.calls)
    assert sum(n for n, _ in old.calls) == 6 and sum(n for n, _ in new.calls) == 4


def test_large_request_is_predicted_off_the_loop_in_chunks():
    version = SumVersion()
    observed = []

    async def scenario():
        batcher = MicroBatcher(max_batch_size=8, offload_rows=100,
                               on_batch=lambda v, c, p, r: observed.append(len(p)))
        ticks = 0

        async def ticker():  # the loop keeps running while the big request is predicted
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        result = await batcher.submit(version, _columns(np.arange(250)), 250)
        task.cancel()
        return result, ticks

    result, ticks = asyncio.run(scenario())
    assert result.predictions.tolist() == list(range(250))
    assert [n for n, _ in version.calls] == [100, 100, 50]
    assert all(thread != threading.get_ident() for _, thread in version.calls)
    assert observed == [250] and ticks > 0


def test_a_failed_model_call_fails_each_caller_of_the_batch():
    class Broken(SumVersion):
        def predict(self, columns):
            raise RuntimeError("boom")

    async def scenario():
        batcher = MicroBatcher(max_batch_size=64, max_wait_ms=20)
        return await asyncio.gather(*[batcher.submit(Broken(), _columns([1]), 1) for _ in range(3)],
                                    return_exceptions=True)

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(scenario()))


# Model source and version manager ---------------------------------------------------------------

def _publish(root, name="chicago-taxi"):
    def fill(staging):
        os.makedirs(staging)
        with open(os.path.join(staging, "saved_model.pb"), "wb") as f:
            f.write(b"stand-in")

    return registry.publish(str(root), name, fill)


def test_registry_layout_watches_the_model_before_its_first_push(tmp_path):
    source = ModelSource.from_flags("chicago-taxi", str(tmp_path), None)
    assert source.layout == REGISTRY and source.latest() is None
    assert source.where == str(tmp_path / "chicago-taxi")
    assert _publish(tmp_path) == 1 and _publish(tmp_path) == 2
    assert source.versions() == [1, 2] and source.path(2) == str(tmp_path / "chicago-taxi" / "2")


def test_model_layout_is_a_folder_of_versions_whatever_its_name(tmp_path):
    source = ModelSource.from_flags("chicago-taxi", None, str(tmp_path / "models"))
    assert source.layout == MODEL and source.latest() is None
    (tmp_path / "models").mkdir()
    _publish(tmp_path, "models")
    assert source.latest() == 1 and source.path(1) == str(tmp_path / "models" / "1")


def test_incomplete_versions_are_not_served(tmp_path):
    _publish(tmp_path)
    (tmp_path / "chicago-taxi" / "2").mkdir()  # a pusher still at work (or dead): no marker
    (tmp_path / "chicago-taxi" / "2" / "saved_model.pb").write_bytes(b"half")
    source = ModelSource(str(tmp_path), "chicago-taxi", REGISTRY)
    assert source.versions() == [1] and source.latest() == 1
    with pytest.raises(RegistryError, match=r"Version 2 of model 'chicago-taxi' is not in .*\[1\]"):
        source.path(2)


def test_a_saved_model_folder_is_one_version(tmp_path):
    folder = tmp_path / "7"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"stand-in")
    source = ModelSource.from_flags("m", None, None, str(folder))
    assert source.layout == SAVED_MODEL and source.versions() == [7] and source.path(7) == str(folder)


def test_model_dir_never_guesses_a_saved_model_from_the_disk(tmp_path):
    """--model_dir always means a folder of versions, even when it holds a saved_model.pb."""
    folder = tmp_path / "7"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"stand-in")
    source = ModelSource.from_flags("m", None, str(folder))
    assert source.layout != SAVED_MODEL and source.versions() == []
    with pytest.raises(ConfigError, match="is not a SavedModel folder"):
        ModelSource.from_flags("m", None, None, str(tmp_path))


def test_exactly_one_location_flag(tmp_path):
    for registry_root, model_dir in ((None, None), (str(tmp_path), str(tmp_path))):
        with pytest.raises(ConfigError, match="exactly one of --registry"):
            ModelSource.from_flags("m", registry_root, model_dir)


def test_version_manager_reports_failure_instead_of_signalling(tmp_path):
    _publish(tmp_path)

    def unloadable(path, version):
        raise ConfigError(f"{path} is not loadable")

    reasons = []
    manager = VersionManager(ModelSource(str(tmp_path), "chicago-taxi"), "chicago-taxi",
                             on_failure=reasons.append, load=unloadable)
    manager.check()
    manager.start()
    manager._thread.join(10)
    assert manager.current is None and manager.served() == []
    assert reasons == [manager.failure] and "is not loadable" in manager.failure


def test_version_manager_polls_until_the_first_push(tmp_path):
    class Loaded:
        def __init__(self, path, version):
            self.version = version

        def warm_up(self, rows):
            return 0.0

    manager = VersionManager(ModelSource(str(tmp_path), "chicago-taxi"), "chicago-taxi", poll_seconds=0.05,
                             load=Loaded)
    manager.check()  # polling: an empty registry is fine
    manager.start()
    try:
        _publish(tmp_path)
        for _ in range(200):
            if manager.current is not None:
                break
            threading.Event().wait(0.05)
        assert manager.served() == ["1"] and manager.failure is None
    finally:
        manager.stop()


# Request log -----------------------------------------------------------------------------------

def test_log_file_is_private_even_if_it_existed(tmp_path):
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)
    log = RotatingFile(str(path))
    log.write(b"{}\n")
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    fresh = RotatingFile(str(tmp_path / "new.jsonl"))
    fresh.close()
    assert stat.S_IMODE((tmp_path / "new.jsonl").stat().st_mode) == 0o600


def test_log_file_rotates_by_size_keeping_backups(tmp_path):
    path = tmp_path / "requests.jsonl"
    log = RotatingFile(str(path), max_bytes=100, backup_count=2)
    for i in range(10):
        log.write(b"%d" % i + b"x" * 38 + b"\n")  # 40 bytes: two lines per file
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["requests.jsonl", "requests.jsonl.1", "requests.jsonl.2"]
    assert [line[:1] for line in path.read_bytes().splitlines()] == [b"8", b"9"]
    assert [line[:1] for line in (tmp_path / "requests.jsonl.1").read_bytes().splitlines()] == [b"6", b"7"]
    assert all(p.stat().st_size <= 100 for p in tmp_path.iterdir())
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tmp_path.iterdir())


def test_request_logger_rotates_its_json_lines(tmp_path):
    path = tmp_path / "log" / "requests.jsonl"
    logger = RequestLogger(str(path), "taxi", flush_seconds=0.01, max_bytes=900, backup_count=3)
    for i in range(6):
        logger.log_batch(1, {"fare": np.array([i, i], np.float32)}, np.array([0.5, 0.25], np.float32))
        threading.Event().wait(0.05)
    logger.close()
    records = [json.loads(line) for p in sorted(path.parent.iterdir()) for line in p.read_text().splitlines()]
    assert len(records) == 12 and {r["model_name"] for r in records} == {"taxi"}
    assert len(list(path.parent.iterdir())) == 3  # two batches (some 810 bytes) per file
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in path.parent.iterdir())


# Error table and start-up noise -----------------------------------------------------------------

def test_error_table_rows_and_nearest_class():
    assert errors.status_of(errors.InvalidRequest("x")) == errors.ErrorStatus(400, StatusCode.INVALID_ARGUMENT)
    assert errors.status_of(errors.VersionNotServed("m", "2", ["1"])).grpc == StatusCode.NOT_FOUND
    assert errors.status_of(ModelNotFound("m")).http == 404
    assert errors.status_of(ModelNotReady("m")).http == 503
    assert errors.status_of(errors.RequestTooLarge(10, 5)).grpc == StatusCode.RESOURCE_EXHAUSTED
    assert errors.status_of(KeyError("x")) is errors.INTERNAL
    assert errors.message_of(KeyError("x")).startswith("Internal error (KeyError)")
    assert "versions served: 1, 3" in str(errors.VersionNotServed("m", "2", ["1", "3"]))


def test_tensorflow_start_up_noise_is_recognised():
    noise = [b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
             b"I0000 00:00:1796119805.667443    9954 cudart_stub.cc:31] Could not find cuda drivers on your "
             b"machine, GPU will not be used.\n",
             b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on.\n"]
    assert all(is_noise(line) for line in noise)
    assert not is_noise(b"10:10:05 prodml serving model 'chicago-taxi' from /r on http :8080\n")
