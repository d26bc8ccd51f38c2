"""The model registry: integer versions that appear only complete, even with concurrent pushers."""

import os
import threading

import pytest

from prodml.components.common import registry
from prodml.components.common.errors import RegistryError

NAME = "taxi"


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _fill_with(text: str):
    return lambda staging: _write(os.path.join(staging, "content.txt"), text)


def _read(root, version: int, name: str = "content.txt") -> str:
    with open(os.path.join(registry.version_uri(str(root), NAME, version), name), encoding="utf-8") as f:
        return f.read()


def test_empty_registry_has_no_versions(tmp_path):
    assert registry.list_versions(str(tmp_path), NAME) == []
    assert registry.latest_version(str(tmp_path), NAME) is None


def test_publish_numbers_versions_from_one(tmp_path):
    assert registry.publish(str(tmp_path), NAME, _fill_with("first")) == 1
    assert registry.publish(str(tmp_path), NAME, _fill_with("second")) == 2
    assert registry.list_versions(str(tmp_path), NAME) == [1, 2]
    assert (_read(tmp_path, 1), _read(tmp_path, 2)) == ("first", "second")
    assert sorted(os.listdir(tmp_path / NAME)) == ["1", "2"]


def test_versions_sort_numerically_and_ignore_other_entries(tmp_path):
    for name in ("9", "10", ".staging-abc", "notes", "2.tmp"):
        os.makedirs(tmp_path / NAME / name)
    assert registry.list_versions(str(tmp_path), NAME) == [9, 10]
    assert registry.publish(str(tmp_path), NAME, _fill_with("x")) == 11


def test_failed_fill_leaves_no_version_and_no_staging(tmp_path):
    def fill(staging):
        _write(os.path.join(staging, "half.txt"), "half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        registry.publish(str(tmp_path), NAME, fill)
    assert registry.list_versions(str(tmp_path), NAME) == []
    assert os.listdir(tmp_path / NAME) == []


def test_leftover_staging_of_a_crashed_pusher_is_not_a_version(tmp_path):
    _write(str(tmp_path / NAME / f"{registry.STAGING_PREFIX}dead" / "saved_model.pb"), "partial")
    assert registry.list_versions(str(tmp_path), NAME) == []
    assert registry.publish(str(tmp_path), NAME, _fill_with("ok")) == 1


def test_stamp_names_the_final_version_when_another_pusher_takes_the_number(tmp_path):
    stamped = []

    def stamp(staging, version):
        stamped.append(version)
        _write(os.path.join(staging, "version.txt"), str(version))
        if len(stamped) == 1:  # another pusher claims this number before our rename
            registry.publish(str(tmp_path), NAME, _fill_with("other"))

    assert registry.publish(str(tmp_path), NAME, _fill_with("ours"), stamp=stamp) == 2
    assert stamped == [1, 2]
    assert (_read(tmp_path, 1), _read(tmp_path, 2)) == ("other", "ours")
    assert _read(tmp_path, 2, "version.txt") == "2"


def test_gives_up_when_other_pushers_keep_taking_the_number(tmp_path):
    def stamp(staging, version):
        registry.publish(str(tmp_path), NAME, _fill_with("other"))

    with pytest.raises(RegistryError, match="after 2 attempts"):
        registry.publish(str(tmp_path), NAME, _fill_with("ours"), max_attempts=2, stamp=stamp)
    assert [n for n in os.listdir(tmp_path / NAME) if n.startswith(registry.STAGING_PREFIX)] == []


def test_concurrent_publishers_get_distinct_versions(tmp_path):
    n = 6
    barrier = threading.Barrier(n)
    versions, errors = [], []

    def push(i):
        def fill(staging):
            _write(os.path.join(staging, "content.txt"), f"pusher {i}")
            barrier.wait()  # everyone renames at once, racing for the same number

        def stamp(staging, version):
            _write(os.path.join(staging, "version.txt"), str(version))

        try:
            versions.append(registry.publish(str(tmp_path), NAME, fill, stamp=stamp))
        except Exception as e:  # surfaced below with the thread's error
            errors.append(e)

    threads = [threading.Thread(target=push, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(versions) == list(range(1, n + 1))
    assert registry.list_versions(str(tmp_path), NAME) == list(range(1, n + 1))
    assert sorted(_read(tmp_path, v) for v in versions) == sorted(f"pusher {i}" for i in range(n))
    assert all(_read(tmp_path, v, "version.txt") == str(v) for v in versions)
    assert sorted(os.listdir(tmp_path / NAME)) == sorted(str(v) for v in versions)


def test_unwritable_registry_raises_registry_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(RegistryError, match="registry folder"):
        registry.publish(str(blocker), NAME, _fill_with("x"))


def test_object_store_registry_copies_model_cards_last(monkeypatch):
    """The gfile branch, on TensorFlow's in-memory file system (no folder rename there, as on S3)."""
    import uuid

    import tensorflow as tf

    from prodml.components.common import dataio, keys

    root = f"ram://registry-{uuid.uuid4().hex[:8]}"
    copied = []
    real_copy = dataio.copy_file
    monkeypatch.setattr(dataio, "copy_file", lambda src, dst: (copied.append(dst), real_copy(src, dst)))

    def fill(staging):
        for name in (keys.MODEL_CARD_JSON, "saved_model.pb", "variables/variables.index", keys.MODEL_CARD_MD):
            tf.io.gfile.makedirs(dataio.join(staging, name).rsplit("/", 1)[0])
            with tf.io.gfile.GFile(dataio.join(staging, name), "w") as f:
                f.write(name)

    assert registry.publish(root, NAME, fill) == 1
    assert registry.publish(root, NAME, fill) == 2
    assert registry.list_versions(root, NAME) == [1, 2]
    assert sorted(tf.io.gfile.listdir(dataio.join(root, NAME))) == ["1", "2"]  # staging removed
    first = [p.rsplit("/1/", 1)[1] for p in copied if "/1/" in p]
    assert first[-2:] == [keys.MODEL_CARD_JSON, keys.MODEL_CARD_MD]
    assert dataio.list_files(registry.version_uri(root, NAME, 2)) == sorted(
        [keys.MODEL_CARD_JSON, keys.MODEL_CARD_MD, "saved_model.pb", "variables/variables.index"])
