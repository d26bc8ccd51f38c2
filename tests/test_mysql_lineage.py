"""Lineage on MySQL, the backend of Kubeflow's metadata store, against a real throwaway MariaDB server.

The fixture starts its own ``mariadbd``/``mysqld`` (data folder, socket and loopback port in a
temporary folder) with a user whose password holds URL-special characters, and stops it at the
end. Without a server binary on PATH (or in /usr/sbin) the tests skip, saying so: ``.ci/run``
installs Debian's ``mariadb-server``.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest

from prodml.components.common import lineage

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

USER, PASSWORD, DATABASE = "prodml", "p@ss:w/rd%1", "mlmd"


def _binary(*names):
    search = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/usr/local/sbin:/usr/local/mysql/bin"
    for name in names:
        found = shutil.which(name, path=search)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mysql_server(tmp_path_factory):
    server = _binary("mariadbd", "mysqld")
    install = _binary("mariadb-install-db", "mysql_install_db")
    client = _binary("mariadb", "mysql")
    if not (server and install and client):
        pytest.skip("no MySQL/MariaDB server on PATH (mysqld, mariadb-install-db, mariadb): "
                    "install Debian's mariadb-server, as .ci/run does, to run the MySQL lineage tests")
    base = tmp_path_factory.mktemp("mysql")
    data, sock, port = base / "data", str(base / "mysqld.sock"), _free_port()
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--auth-root-authentication-method=normal",
                    "--skip-test-db", *as_root], check=True, capture_output=True, timeout=120)
    log = open(base / "server.log", "w")
    proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
                             "--bind-address=127.0.0.1", "--skip-log-bin", f"--pid-file={base / 'pid'}",
                             f"--log-error={base / 'error.log'}", *as_root], stdout=log, stderr=log)
    sql = (f"CREATE DATABASE {DATABASE}; CREATE USER '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'; "
           f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'127.0.0.1';")
    deadline = time.monotonic() + 60
    while True:
        done = subprocess.run([client, "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql],
                              capture_output=True, text=True)
        if done.returncode == 0:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the throwaway MariaDB did not start: {done.stderr}\n"
                        f"{(base / 'error.log').read_text() if (base / 'error.log').exists() else ''}")
        time.sleep(0.5)
    yield {"host": "127.0.0.1", "port": port}
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _connection(server, password=PASSWORD):
    userinfo = USER + (":" + urllib.parse.quote(password, safe="") if password else "")
    return f"mysql://{userinfo}@{server['host']}:{server['port']}/{DATABASE}"


def _record(connection, run_id, index=0):
    lineage.record_execution(
        connection, "ingest", "pipe", run_id,
        inputs={"data": lineage.ArtifactRecord("/data.csv", lineage.DATASET, {"sha256": "ab" * 32})},
        outputs={"examples": lineage.ArtifactRecord(f"/root/{run_id}/{index}/examples", lineage.DATASET)},
        parameters={"metadata_connection": connection})
    return lineage.record_execution(
        connection, "train", "pipe", run_id,
        inputs={"examples": lineage.ArtifactRecord(f"/root/{run_id}/{index}/examples", lineage.DATASET)},
        outputs={"model": lineage.ArtifactRecord(f"/root/{run_id}/{index}/model", lineage.MODEL)})


def test_lineage_recorded_over_mysql_reads_back_to_the_source(mysql_server):
    connection = _connection(mysql_server)
    _record(connection, "run-read-back")
    model = lineage.find_artifacts(connection, "/root/run-read-back/0/model", lineage.MODEL)[0]
    steps = lineage.upstream(connection, model.id)
    assert [s["component"] for s in steps] == ["train", "ingest"]
    assert steps[-1]["inputs"]["data"]["properties"]["sha256"] == "ab" * 32
    assert set(lineage.run_steps(connection, "run-read-back")) == {"ingest", "train"}


def test_the_password_is_never_recorded(mysql_server):
    connection = _connection(mysql_server)
    _record(connection, "run-secret")
    store = lineage.connect(connection)
    stored = [lineage.properties_of(node) for node in
              store.get_executions() + store.get_artifacts() + store.get_contexts()]
    text = repr(stored)
    assert PASSWORD not in text and urllib.parse.quote(PASSWORD, safe="") not in text
    assert f"mysql://{USER}:***@" in text  # the connection parameter is kept, redacted


def test_the_password_comes_from_the_environment_when_the_url_has_none(mysql_server, monkeypatch):
    monkeypatch.setenv(lineage.PASSWORD_ENV, PASSWORD)
    assert _record(_connection(mysql_server, password=""), "run-env") > 0
    monkeypatch.setenv(lineage.PASSWORD_ENV, "wrong")
    with pytest.raises(lineage.LineageError) as error:
        lineage.connect(_connection(mysql_server, password=""))
    assert "Cannot open ML Metadata at mysql://prodml@" in str(error.value) and "wrong" not in str(error.value)


def test_a_wrong_password_is_one_clear_error_without_the_password(mysql_server):
    with pytest.raises(lineage.LineageError) as error:
        lineage.connect(_connection(mysql_server, password="not-the-password"))
    assert "not-the-password" not in str(error.value)
    assert f"mysql://{USER}:***@127.0.0.1:{mysql_server['port']}/{DATABASE}" in str(error.value)


_WRITER = """
import sys
from prodml.components.common import lineage
connection, run_id, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(count):
    lineage.record_execution(
        connection, "ingest", "pipe-concurrent", run_id,
        inputs={"data": lineage.ArtifactRecord("/shared.csv", lineage.DATASET, {"sha256": "cd" * 32})},
        outputs={"examples": lineage.ArtifactRecord(f"/root/{run_id}/{i}/examples", lineage.DATASET)})
"""


def test_concurrent_writers_all_land(mysql_server):
    connection = _connection(mysql_server)
    writers, per_writer = 4, 10
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, connection, f"crun-{w}", str(per_writer)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for w in range(writers)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert PASSWORD not in err and urllib.parse.quote(PASSWORD, safe="") not in err
    store = lineage.connect(connection)
    pipeline = store.get_context_by_type_and_name(lineage.PIPELINE_CONTEXT, "pipe-concurrent")
    for w in range(writers):
        run = store.get_context_by_type_and_name(lineage.RUN_CONTEXT, f"crun-{w}")
        assert len(store.get_executions_by_context(run.id)) == per_writer
        assert [p.id for p in store.get_parent_contexts_by_context(run.id)] == [pipeline.id]
    assert len(store.get_executions_by_context(pipeline.id)) == writers * per_writer
    shared = lineage.find_artifacts(connection, "/shared.csv", lineage.DATASET)
    assert len(store.get_events_by_artifact_ids([a.id for a in shared])) == writers * per_writer
