"""The model registry: integer versions that appear only complete, even with concurrent pushers.

Object stores are exercised on TensorFlow's in-memory ``ram://`` file system, which, like S3,
has no atomic folder rename (renaming a folder there leaves its files behind).
"""

import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from prodml.components.common import dataio, keys, registry
from prodml.components.common.errors import ConfigError, RegistryError

NAME = "taxi"


def _write(path: str, text: str) -> None:
    if dataio.is_local(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    dataio.gfile().makedirs(path.rsplit("/", 1)[0])
    with dataio.gfile().GFile(path, "w") as f:
        f.write(text)


def _fill_with(text: str, files=("content.txt",)):
    def fill(folder):
        for name in files:
            _write(dataio.join(folder, name), text)
    return fill


def _read(root, version: int, name: str = "content.txt") -> str:
    return dataio.read_text(dataio.join(registry.version_uri(str(root), NAME, version), name))


def _entries(root) -> list:
    return sorted(os.listdir(os.path.join(root, NAME)))


@pytest.fixture
def ram_root():
    return f"ram://registry-{uuid.uuid4().hex[:8]}"


def test_empty_registry_has_no_versions(tmp_path):
    assert registry.list_versions(str(tmp_path), NAME) == []
    assert registry.latest_version(str(tmp_path), NAME) is None


def test_publish_numbers_versions_from_one_and_leaves_only_complete_versions(tmp_path):
    assert registry.publish(str(tmp_path), NAME, _fill_with("first")) == 1
    assert registry.publish(str(tmp_path), NAME, _fill_with("second"), marker={"run_id": "r2"}) == 2
    assert registry.list_versions(str(tmp_path), NAME) == [1, 2]
    assert (_read(tmp_path, 1), _read(tmp_path, 2)) == ("first", "second")
    assert _entries(tmp_path) == ["1", "2"]
    assert registry.list_claims(str(tmp_path), NAME) == []  # claims go once the marker is written
    marker = registry.read_marker(str(tmp_path), NAME, 2)
    assert (marker["version"], marker["run_id"], marker["files"]) == (2, "r2", ["content.txt"])


def test_a_folder_without_completion_marker_is_not_a_version_but_takes_its_number(tmp_path):
    for name in ("9", "10", ".staging-abc", "notes", "2.tmp"):
        os.makedirs(tmp_path / NAME / name)
    _write(str(tmp_path / NAME / "10" / keys.VERSION_COMPLETE_FILE), "{}")
    _write(str(tmp_path / NAME / "9" / "saved_model.pb"), "half-copied")
    assert registry.list_versions(str(tmp_path), NAME) == [10]
    assert registry.latest_version(str(tmp_path), NAME) == 10
    assert registry.version_folders(str(tmp_path), NAME) == [9, 10]
    assert registry.publish(str(tmp_path), NAME, _fill_with("x")) == 11


def test_local_versions_from_before_markers_count_when_they_hold_a_model_card(tmp_path):
    _write(str(tmp_path / NAME / "1" / keys.MODEL_CARD_JSON), "{}")  # published by rename, pre-marker
    _write(str(tmp_path / NAME / "2" / "saved_model.pb"), "no card, no marker")
    assert registry.list_versions(str(tmp_path), NAME) == [1]
    assert registry.read_marker(str(tmp_path), NAME, 1) == {}


def test_failed_fill_leaves_no_version_no_staging_and_no_claim(tmp_path):
    def fill(staging):
        _write(os.path.join(staging, "half.txt"), "half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        registry.publish(str(tmp_path), NAME, fill)
    assert registry.list_versions(str(tmp_path), NAME) == []
    assert _entries(tmp_path) == []
    assert registry.list_claims(str(tmp_path), NAME) == []


def test_leftover_staging_of_a_crashed_pusher_is_not_a_version(tmp_path):
    _write(str(tmp_path / NAME / f"{registry.STAGING_PREFIX}dead" / "saved_model.pb"), "partial")
    assert registry.list_versions(str(tmp_path), NAME) == []
    assert registry.publish(str(tmp_path), NAME, _fill_with("ok")) == 1


def test_stale_claim_of_a_dead_pusher_burns_its_number(tmp_path):
    _write(str(tmp_path / NAME / f"{registry.CLAIM_PREFIX}1-{uuid.uuid4().hex}"), "{}")
    assert registry.publish(str(tmp_path), NAME, _fill_with("ok")) == 2
    assert registry.list_versions(str(tmp_path), NAME) == [2]


def test_stamp_names_the_claimed_version_while_another_pusher_publishes(tmp_path):
    stamped = []

    def stamp(staging, version):
        stamped.append(version)
        _write(os.path.join(staging, "version.txt"), str(version))
        if len(stamped) == 1:  # another pusher publishes while we hold our claim
            registry.publish(str(tmp_path), NAME, _fill_with("other"))

    assert registry.publish(str(tmp_path), NAME, _fill_with("ours"), stamp=stamp) == 1
    assert stamped == [1]
    assert (_read(tmp_path, 1), _read(tmp_path, 2)) == ("ours", "other")
    assert _read(tmp_path, 1, "version.txt") == "1"


def _with_a_rival_claim_each_time(monkeypatch):
    """Makes every claim race: a rival claims the same number between our write and our listing."""
    real_write = registry._write_small
    rivals = []

    def write(uri, text):
        real_write(uri, text)
        version = os.path.basename(uri)[len(registry.CLAIM_PREFIX):].split("-")[0]
        rival = dataio.join(os.path.dirname(uri), f"{registry.CLAIM_PREFIX}{version}-{uuid.uuid4().hex}")
        rivals.append(rival)
        real_write(rival, text)

    monkeypatch.setattr(registry, "_write_small", write)
    monkeypatch.setattr(registry, "_backoff", lambda attempt: None)
    return rivals


def test_a_claim_that_meets_a_rival_claim_loses_and_removes_itself(tmp_path, monkeypatch):
    rivals = _with_a_rival_claim_each_time(monkeypatch)
    assert registry._claim_next(str(tmp_path), NAME) == (None, 0)
    assert [c.uri for c in registry.list_claims(str(tmp_path), NAME)] == rivals  # only the rival's remains


def test_gives_up_when_other_pushers_keep_taking_the_number(tmp_path, monkeypatch):
    rivals = _with_a_rival_claim_each_time(monkeypatch)
    with pytest.raises(RegistryError, match="after 3 attempts"):
        registry.publish(str(tmp_path), NAME, _fill_with("ours"), max_attempts=3)
    assert sorted(c.uri for c in registry.list_claims(str(tmp_path), NAME)) == sorted(rivals)
    assert [n for n in os.listdir(tmp_path / NAME) if n.startswith(registry.STAGING_PREFIX)] == []
    assert registry.list_versions(str(tmp_path), NAME) == []


def test_model_names_are_checked_before_any_path_is_built(tmp_path):
    with pytest.raises(ConfigError, match="DNS-1123"):
        registry.list_versions(str(tmp_path), "../etc")
    with pytest.raises(ConfigError, match="DNS-1123"):
        registry.publish(str(tmp_path), "a/b", _fill_with("x"))


def test_unwritable_registry_raises_registry_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RegistryError, match="registry folder"):
        registry.publish(str(blocker), NAME, _fill_with("x"))


MODEL_FILES = ("saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001",
               keys.MODEL_CARD_JSON)


def _assert_each_version_is_one_model(root, versions, expected_models):
    """Every file of every version comes from the same pusher, and the marker lists exactly them."""
    seen = []
    for version in versions:
        folder = registry.version_uri(root, NAME, version)
        contents = {name: dataio.read_text(dataio.join(folder, name)) for name in MODEL_FILES}
        assert len(set(contents.values())) == 1, f"version {version} mixes models: {contents}"
        assert registry.read_marker(root, NAME, version)["files"] == sorted(MODEL_FILES + ("version.txt",))
        assert dataio.read_text(dataio.join(folder, "version.txt")) == str(version)
        seen.append(next(iter(contents.values())))
    assert sorted(seen) == sorted(expected_models)


def test_object_store_publishes_with_the_marker_last_and_no_folder_rename(ram_root, monkeypatch):
    written = []
    real_write_json = dataio.write_json
    monkeypatch.setattr(dataio, "write_json", lambda uri, value: (written.append(uri), real_write_json(uri, value)))
    stamp = lambda folder, version: _write(dataio.join(folder, "version.txt"), str(version))  # noqa: E731
    assert registry.publish(ram_root, NAME, _fill_with("model a", MODEL_FILES), stamp=stamp) == 1
    assert registry.publish(ram_root, NAME, _fill_with("model b", MODEL_FILES), stamp=stamp) == 2
    assert registry.list_versions(ram_root, NAME) == [1, 2]
    assert [w.rsplit("/", 1)[1] for w in written] == [keys.VERSION_COMPLETE_FILE] * 2
    _assert_each_version_is_one_model(ram_root, [1, 2], ["model a", "model b"])
    assert sorted(n for n in dataio.gfile().listdir(registry.model_root(ram_root, NAME))
                  if not n.startswith(".")) == ["1", "2"]


def test_object_store_version_without_marker_is_invisible_even_with_a_model_card(ram_root):
    _fill_with("half", MODEL_FILES)(registry.version_uri(ram_root, NAME, 1))  # a pusher died before its marker
    assert registry.list_versions(ram_root, NAME) == []
    assert registry.publish(ram_root, NAME, _fill_with("whole", MODEL_FILES)) == 2
    assert registry.latest_version(ram_root, NAME) == 2


def test_object_store_skips_a_number_whose_files_exist_even_when_no_listing_shows_its_folder(ram_root):
    # Object stores have no folders: files under <model>/1/ may exist with no "1" entry to list.
    with dataio.gfile().GFile(dataio.join(registry.version_uri(ram_root, NAME, 1), "saved_model.pb"), "w") as f:
        f.write("orphan")
    assert registry.version_folders(ram_root, NAME) == []
    assert registry.publish(ram_root, NAME, _fill_with("whole")) == 2


def test_object_store_failed_fill_removes_its_files_and_claim(ram_root):
    def fill(folder):
        _write(dataio.join(folder, "saved_model.pb"), "half")
        raise RuntimeError("network down")

    with pytest.raises(RuntimeError, match="network down"):
        registry.publish(ram_root, NAME, fill)
    assert dataio.list_files(registry.model_root(ram_root, NAME)) == []
    assert registry.publish(ram_root, NAME, _fill_with("ok")) == 1


def test_concurrent_pushers_on_an_object_store_never_mix_two_models_in_one_version(ram_root):
    n = 8
    barrier = threading.Barrier(n)
    versions, errors = [], []

    def push(i):
        def fill(folder):
            for name in MODEL_FILES:  # file by file, with the others interleaving
                _write(dataio.join(folder, name), f"pusher {i}")

        def stamp(folder, version):
            _write(dataio.join(folder, "version.txt"), str(version))

        try:
            barrier.wait()
            versions.append(registry.publish(ram_root, NAME, fill, stamp=stamp))
        except Exception as e:  # noqa: BLE001 -- surfaced below with the thread's error
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(versions)) == n
    assert registry.list_versions(ram_root, NAME) == sorted(versions)
    _assert_each_version_is_one_model(ram_root, versions, [f"pusher {i}" for i in range(n)])
    assert registry.list_claims(ram_root, NAME) == []


_PUSHER = """
import sys
from prodml.components.common import dataio, registry
root, who, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = {files!r}
def fill(folder):
    for name in files:
        path = dataio.join(folder, name)
        dataio.makedirs(dataio.join(folder, name.rsplit("/", 1)[0]) if "/" in name else folder)
        open(path, "w").write(who)
def stamp(folder, version):
    open(dataio.join(folder, "version.txt"), "w").write(str(version))
for _ in range(count):
    print(registry.publish(root, "{name}", fill, stamp=stamp), flush=True)
"""


def test_concurrent_pusher_processes_on_a_local_registry_get_distinct_whole_versions(tmp_path):
    script = _PUSHER.format(files=MODEL_FILES, name=NAME)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), f"process {i}", "3"],
                              stdout=subprocess.PIPE, text=True) for i in range(4)]
    versions = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        versions += [int(line) for line in out.split()]
    assert sorted(versions) == list(range(1, 13))
    _assert_each_version_is_one_model(str(tmp_path), versions, [f"process {i}" for i in range(4) for _ in range(3)])
    assert _entries(tmp_path) == sorted(str(v) for v in versions)


@pytest.mark.parametrize("point", ["push:before_marker", "push:after_publish"])
def test_a_pusher_killed_mid_publish_leaves_no_incomplete_version(tmp_path, point):
    script = _PUSHER.format(files=MODEL_FILES, name=NAME)
    env = {**os.environ, "PRODML_FAULT": point}
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), "killed", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9  # SIGKILL: no finally, no cleanup
    if point == "push:before_marker":
        assert registry.list_versions(str(tmp_path), NAME) == []
        assert [c.version for c in registry.list_claims(str(tmp_path), NAME)] == [1]  # burns number 1
        assert any(n.startswith(registry.STAGING_PREFIX) for n in os.listdir(tmp_path / NAME))
        assert registry.publish(str(tmp_path), NAME, _fill_with("next", MODEL_FILES)) == 2
    else:
        assert registry.list_versions(str(tmp_path), NAME) == [1]
        assert registry.read_marker(str(tmp_path), NAME, 1)["files"]
        assert registry.list_claims(str(tmp_path), NAME) == []
        assert json.loads((tmp_path / NAME / "1" / keys.VERSION_COMPLETE_FILE).read_text())["version"] == 1


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_gc_removes_what_dead_pushers_left_and_keeps_live_work(tmp_path):
    import socket

    from prodml.pipelines.gc import collect_garbage

    root = tmp_path / "home"
    reg = str(root / "registry")
    assert registry.publish(reg, NAME, _fill_with("kept", MODEL_FILES)) == 1
    model = root / "registry" / NAME
    _write(str(model / f"{registry.STAGING_PREFIX}dead" / "saved_model.pb"), "partial")
    dead = {"host": socket.gethostname(), "pid": _dead_pid(), "created": 0}
    alive = {"host": socket.gethostname(), "pid": os.getpid(), "created": 4e9}
    _write(str(model / f"{registry.CLAIM_PREFIX}2-{uuid.uuid4().hex}"), json.dumps(dead))
    _write(str(model / "2" / "saved_model.pb"), "half-copied by the dead pusher")
    _write(str(model / f"{registry.CLAIM_PREFIX}3-{uuid.uuid4().hex}"), json.dumps(alive))
    _write(str(model / "3" / "saved_model.pb"), "a live pusher at work")
    _write(str(root / "pipeline_root" / "run" / "ingest" / "examples" / "data_version.json.tmp-0a1b2c3d"), "{")

    found = collect_garbage(str(root), dry_run=True, older_than=0)
    assert sorted((f.kind, os.path.relpath(f.uri, root)) for f in found) == sorted([
        ("staging", f"registry/{NAME}/{registry.STAGING_PREFIX}dead"),
        ("claim", os.path.relpath(registry.list_claims(reg, NAME)[0].uri, root)),
        ("incomplete_version", f"registry/{NAME}/2"),
        ("tmp_file", "pipeline_root/run/ingest/examples/data_version.json.tmp-0a1b2c3d")])
    assert {f.action for f in found} == {"would remove"}
    assert all(os.path.exists(f.uri) for f in found)

    removed = collect_garbage(str(root), older_than=0)
    assert {f.action for f in removed} == {"removed"} and not any(os.path.exists(f.uri) for f in removed)
    assert collect_garbage(str(root), dry_run=True, older_than=0) == []
    assert registry.list_versions(reg, NAME) == [1] and _read(root / "registry", 1, "saved_model.pb") == "kept"
    assert os.path.exists(model / "3" / "saved_model.pb")  # its pusher is alive
    assert registry.publish(reg, NAME, _fill_with("next")) == 4


def test_lineage_of_a_version_that_was_never_pushed_says_so(tmp_path):
    from prodml.pipelines.lineage_report import model_lineage

    root = str(tmp_path / "registry")
    registry.publish(root, "m", _fill_with("one"))
    os.makedirs(registry.version_uri(root, "m", 2))  # a folder without its marker: still arriving, or dead
    connection = f"sqlite://{tmp_path / 'metadata.sqlite'}"
    with pytest.raises(RegistryError) as missing:
        model_lineage(connection, root, "m", 5)
    assert str(missing.value) == f"Model 'm' has no version 5 under {root} (complete versions: [1])."
    with pytest.raises(RegistryError, match=r"Version 2 of 'm' is not a complete version .*still being pushed"):
        model_lineage(connection, root, "m", 2)
