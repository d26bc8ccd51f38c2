"""A local Spark job's start-up: the warm daemon (spark_daemon) and the JVM's class archive (spark_jvm), for real."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import psutil
import pytest

from prodml.components.batch_predict import spark_daemon, spark_jvm

pytest.importorskip("pyspark", reason="pyspark is not installed in this environment")

SHIM = [sys.executable, "-m", "prodml.components.batch_predict.spark_daemon"]


def _wait(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def _listening_ports(pid: int):
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def _start_shim(env_extra):
    env = {**os.environ, **env_extra}
    return subprocess.Popen(SHIM, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def _read_port(shim) -> int:
    return struct.unpack("!i", shim.stdout.read(4))[0]  # what PySpark's daemon tells the JVM


@pytest.mark.slow  # the warm daemon imports TensorFlow
def test_spark_daemon_hands_its_streams_to_the_warm_daemon():
    warm = spark_daemon.WarmDaemon()
    try:
        shim = _start_shim({spark_daemon.WARM_ENV: warm.socket_path})
        port = _read_port(shim)
        warm_pid = warm._process.pid
        _wait(lambda: port in _listening_ports(warm_pid), 10, "the warm daemon to run PySpark's daemon loop")
        assert not _listening_ports(shim.pid), "Spark's daemon process only stands in for it"
        with socket.create_connection(("127.0.0.1", port)):  # a worker is forked from the warm daemon
            _wait(lambda: psutil.Process(warm_pid).children(), 10, "a forked worker")
        shim.stdin.close()  # how Spark tells its daemon to end
        assert shim.wait(timeout=20) == 0, shim.stderr.read().decode()[-3000:]
        _wait(lambda: warm._process.poll() is not None, 10, "the warm daemon to end")
    finally:
        warm.stop()
    assert not os.path.exists(os.path.dirname(warm.socket_path))


def test_without_a_warm_daemon_it_is_pysparks_daemon(tmp_path):
    shim = _start_shim({spark_daemon.WARM_ENV: str(tmp_path / "gone.sock")})
    try:
        port = _read_port(shim)
        _wait(lambda: port in _listening_ports(shim.pid), 10, "PySpark's daemon loop in this process")
    finally:
        shim.stdin.close()
    shim.wait(timeout=20)  # PySpark's own daemon ends with 1 even when told to end


@pytest.mark.slow  # the warm daemon imports TensorFlow before it watches its parent
def test_a_warm_daemon_whose_job_was_killed_ends():
    code = ("import sys, time; from prodml.components.batch_predict import spark_daemon; "
            "w = spark_daemon.WarmDaemon(); print(w._process.pid, w.socket_path, flush=True); time.sleep(600)")
    job = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid, path = job.stdout.readline().split()
    warm_pid, folder = int(pid), os.path.dirname(path)
    job.send_signal(signal.SIGKILL)
    job.wait()
    _wait(lambda: not psutil.pid_exists(warm_pid) or psutil.Process(warm_pid).status() == psutil.STATUS_ZOMBIE,
          60, "the orphaned warm daemon to end")
    assert not os.path.exists(folder), "it removes its socket"


# ---- the class archive ---------------------------------------------------------------------------

@pytest.fixture
def cds_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cds"
    monkeypatch.setenv(spark_jvm.CACHE_ENV, str(folder))
    return folder


def test_a_first_job_writes_an_archive_and_the_next_one_publishes_it(cds_dir):
    plain = f"{spark_jvm.FAST_START} {spark_jvm.QUIET}"
    options = spark_jvm.driver_options(make_archive=True)
    archive = spark_jvm.archive_path()
    assert f"-XX:ArchiveClassesAtExit={archive}.tmp-{os.getpid()} " in options
    assert "-Xlog:disable" in options, "the JVM prints nothing on the job's output"
    assert spark_jvm.driver_options(make_archive=False) == plain

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    written = f"{archive}.tmp-{dead.pid}"
    with open(written, "wb") as f:
        f.write(b"archive")
    assert spark_jvm.driver_options(make_archive=True) == plain, \
        "a file written moments ago may still be growing: not used, and no second one is written"
    old = time.time() - spark_jvm.SETTLE_SECONDS - 1
    os.utime(written, (old, old))
    options = spark_jvm.driver_options(make_archive=True)
    assert "ArchiveClassesAtExit" not in options and f"-XX:SharedArchiveFile={archive}" in options
    assert sorted(os.listdir(cds_dir)) == [os.path.basename(archive)]


def test_an_archive_of_a_live_job_is_left_alone_and_a_duplicate_is_removed(cds_dir):
    archive = spark_jvm.archive_path()
    os.makedirs(cds_dir)
    old = time.time() - spark_jvm.SETTLE_SECONDS - 1
    live, dead = f"{archive}.tmp-{os.getpid()}", f"{archive}.tmp-999999999"
    for path in (live, dead, archive):
        with open(path, "wb") as f:
            f.write(b"x")
        os.utime(path, (old, old))
    spark_jvm.driver_options(make_archive=True)
    assert sorted(os.listdir(cds_dir)) == sorted(os.path.basename(p) for p in (archive, live))


def test_an_empty_cache_setting_turns_the_archive_off(monkeypatch):
    monkeypatch.setenv(spark_jvm.CACHE_ENV, "")
    assert spark_jvm.archive_path() is None
    assert spark_jvm.driver_options(make_archive=True) == f"{spark_jvm.FAST_START} {spark_jvm.QUIET}"


@pytest.mark.slow  # three local Spark jobs, each in its own process
def test_local_spark_jobs_use_the_warm_daemon_and_the_archive_and_survive_a_damaged_one(trained, tmp_path):
    data = os.path.join(os.path.dirname(os.path.dirname(__file__)), "testdata", "taxi_small.csv")
    env = {**os.environ, spark_jvm.CACHE_ENV: str(tmp_path / "cds")}

    def job(name):
        """Runs a spark-submit-able job; the processes the warm daemon forked while it ran."""
        out = tmp_path / name
        proc = subprocess.Popen([sys.executable, "-m", "prodml.components.batch_predict.spark_job", "--master",
                                 "local[2]", "--data", data, "--output", str(out), "--model-dir", str(trained)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        forked = set()
        while proc.poll() is None:
            try:
                for child in psutil.Process(proc.pid).children():
                    if "--warm" in child.cmdline():
                        forked.update(p.pid for p in child.children())
            except psutil.Error:
                pass
            time.sleep(0.05)
        stdout, stderr = proc.communicate()
        assert proc.returncode == 0, stderr[-2000:]
        assert len(stdout.splitlines()) == 1, "one JSON line and nothing else on stdout"
        assert json.loads(stdout)["scored"] > 0
        return forked

    assert job("first"), "Spark's Python workers were forked from the warm daemon"
    archive = os.path.join(tmp_path / "cds", os.path.basename(spark_jvm.archive_path()))
    pending = _wait(lambda: [n for n in os.listdir(tmp_path / "cds") if ".tmp-" in n], 60,
                    "the first job's JVM to write its archive")
    path = os.path.join(tmp_path / "cds", pending[0])
    _wait(lambda: not any(p.info["cmdline"] and path in " ".join(p.info["cmdline"])
                          for p in psutil.process_iter(["cmdline"])), 60, "the first job's JVM to end")
    old = time.time() - spark_jvm.SETTLE_SECONDS - 1
    os.utime(path, (old, old))
    assert job("second")
    assert os.path.getsize(archive) > 1 << 20 and not [n for n in os.listdir(tmp_path / "cds") if ".tmp-" in n]
    os.chmod(archive, 0o600)
    with open(archive, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(1 << 16))
    assert job("third"), "a damaged archive is ignored"
