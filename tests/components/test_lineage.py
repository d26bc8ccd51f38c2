"""ML Metadata lineage on a real SQLite store: records, links by URI, contexts, and the walk back."""

import pytest
from ml_metadata.proto import metadata_store_pb2 as mlmd

from prodml.components.common import lineage
from prodml.components.common.errors import ConfigError


@pytest.fixture
def connection(tmp_path):
    return f"sqlite://{tmp_path / 'metadata.sqlite'}"


def _two_steps(connection, run_id="run-1"):
    lineage.record_execution(
        connection, "ingest", "pipe", run_id,
        inputs={"data": lineage.ArtifactRecord("/data.csv", lineage.DATASET, {"sha256": "ab" * 32})},
        outputs={"examples": lineage.ArtifactRecord(f"/root/{run_id}/examples", lineage.DATASET,
                                                     {"row_counts": {"train": 8, "eval": 2}})},
        parameters={"label": "y"})
    return lineage.record_execution(
        connection, "train", "pipe", run_id,
        inputs={"examples": lineage.ArtifactRecord(f"/root/{run_id}/examples", lineage.DATASET)},
        outputs={"model": lineage.ArtifactRecord(f"/root/{run_id}/model", lineage.MODEL)},
        parameters={"epochs": 3, "seed": 42, "hyperparameters": {}})


def test_connection_strings():
    sqlite = lineage.connection_config("sqlite:///tmp/m.db")
    assert sqlite.sqlite.filename_uri == "/tmp/m.db"
    mysql = lineage.connection_config("mysql://ml:s%40cret@db.example:3307/mlmd")
    assert (mysql.mysql.host, mysql.mysql.port, mysql.mysql.database, mysql.mysql.user, mysql.mysql.password) == \
        ("db.example", 3307, "mlmd", "ml", "s@cret")
    grpc = lineage.connection_config("grpc://metadata-grpc-service.kubeflow:8080")
    assert isinstance(grpc, mlmd.MetadataStoreClientConfig)
    assert (grpc.host, grpc.port) == ("metadata-grpc-service.kubeflow", 8080)


@pytest.mark.parametrize("bad", ["sqlite://relative.db", "postgres://x", "metadata.sqlite"])
def test_bad_connection_strings_name_the_setting(bad):
    with pytest.raises(ConfigError, match="Metadata connection"):
        lineage.connection_config(bad)


def test_empty_connection_records_nothing():
    assert lineage.record_execution("", "ingest", "pipe", "run", {}, {}) == 0


def test_executions_artifacts_events_and_contexts(connection):
    _two_steps(connection)
    store = lineage.connect(connection)
    executions = store.get_executions()
    assert [lineage.properties_of(e)["component"] for e in executions] == ["ingest", "train"]
    assert {store.get_execution_types_by_id([e.type_id])[0].name for e in executions} == {"system.ContainerExecution"}
    # The examples written by ingest are the very artifact train read: one artifact, two events.
    examples = lineage.find_artifacts(connection, "/root/run-1/examples", lineage.DATASET)
    assert len(examples) == 1
    events = store.get_events_by_artifact_ids([examples[0].id])
    assert sorted(e.type for e in events) == sorted([mlmd.Event.OUTPUT, mlmd.Event.INPUT])
    assert lineage.properties_of(examples[0])["row_counts"] == '{"eval": 2, "train": 8}'
    for execution in executions:
        contexts = store.get_contexts_by_execution(execution.id)
        assert sorted(c.name for c in contexts) == ["pipe", "run-1"]
    run = store.get_context_by_type_and_name(lineage.RUN_CONTEXT, "run-1")
    assert [p.name for p in store.get_parent_contexts_by_context(run.id)] == ["pipe"]
    assert lineage.properties_of(executions[1])["epochs"] == 3


def test_upstream_walks_back_to_the_source(connection):
    _two_steps(connection)
    model = lineage.find_artifacts(connection, "/root/run-1/model", lineage.MODEL)[0]
    steps = lineage.upstream(connection, model.id)
    assert [s["component"] for s in steps] == ["train", "ingest"]
    assert steps[-1]["inputs"]["data"]["properties"]["sha256"] == "ab" * 32


def test_two_runs_share_the_pipeline_context_and_keep_their_own(connection):
    _two_steps(connection, "run-1")
    _two_steps(connection, "run-2")
    store = lineage.connect(connection)
    assert len(store.get_contexts_by_type(lineage.PIPELINE_CONTEXT)) == 1
    assert sorted(c.name for c in store.get_contexts_by_type(lineage.RUN_CONTEXT)) == ["run-1", "run-2"]
    # The source file is one artifact read by both runs.
    assert len(lineage.find_artifacts(connection, "/data.csv")) == 1


def test_changed_bytes_at_the_same_path_are_a_new_artifact(connection):
    for sha in ("ab" * 32, "cd" * 32):
        lineage.record_execution(
            connection, "ingest", "pipe", f"run-{sha[:2]}",
            inputs={"data": lineage.ArtifactRecord("/data.csv", lineage.DATASET, {"sha256": sha})},
            outputs={"examples": lineage.ArtifactRecord(f"/root/{sha[:2]}/examples", lineage.DATASET)})
    versions = lineage.find_artifacts(connection, "/data.csv", lineage.DATASET)
    assert sorted(lineage.properties_of(a)["sha256"] for a in versions) == ["ab" * 32, "cd" * 32]
    newest = lineage.find_artifacts(connection, "/root/cd/examples")[0]
    assert lineage.upstream(connection, newest.id)[0]["inputs"]["data"]["properties"]["sha256"] == "cd" * 32


def test_redact_hides_every_password_and_keeps_the_rest():
    assert lineage.redact("mysql://ml:s%40cret@db:3306/mlmd") == "mysql://ml:***@db:3306/mlmd"
    assert lineage.redact('{"c": "mysql://u:p:w@h/d"}') == '{"c": "mysql://u:***@h/d"}'
    for safe in ("mysql://ml@db:3306/mlmd", "sqlite:///tmp/m.db", "grpc://metadata-grpc-service.kubeflow:8080"):
        assert lineage.redact(safe) == safe


def test_a_password_never_reaches_properties_or_error_messages(connection):
    secret = "mysql://ml:hunter2@db:3306/mlmd"
    lineage.record_execution(connection, "ingest", "pipe", "run-1", inputs={},
                             outputs={"examples": lineage.ArtifactRecord("/root/ex", lineage.DATASET,
                                                                         {"source": secret})},
                             parameters={"metadata_connection": secret, "nested": {"c": secret}})
    store = lineage.connect(connection)
    stored = repr([lineage.properties_of(n) for n in store.get_executions() + store.get_artifacts()])
    assert "hunter2" not in stored and "mysql://ml:***@db:3306/mlmd" in stored
    with pytest.raises(ConfigError) as error:
        lineage.connection_config("mysq://ml:hunter2@db/mlmd")
    assert "hunter2" not in str(error.value)


def test_mysql_password_comes_from_the_environment_when_the_url_has_none(monkeypatch):
    monkeypatch.setenv(lineage.PASSWORD_ENV, "from-secret")
    assert lineage.connection_config("mysql://ml@db/mlmd").mysql.password == "from-secret"
    assert lineage.connection_config("mysql://ml:in-url@db/mlmd").mysql.password == "in-url"


def test_aborted_writes_are_retried_then_reported_as_one_clear_error(monkeypatch):
    from ml_metadata import errors

    monkeypatch.setattr(lineage.time, "sleep", lambda seconds: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise errors.AbortedError("Concurrent writes aborted")
        return 7

    assert lineage.with_retries("recording", flaky) == 7 and len(calls) == 3

    def always_aborted():
        raise errors.AbortedError("database is locked")

    with pytest.raises(lineage.LineageError, match="recording failed 3 times: database is locked"):
        lineage.with_retries("recording", always_aborted, attempts=3)
    with pytest.raises(errors.InvalidArgumentError):  # not transient: no retry
        lineage.with_retries("recording", lambda: (_ for _ in ()).throw(errors.InvalidArgumentError("bad")))


def test_run_steps_lists_a_runs_executions_by_component(connection):
    _two_steps(connection, "run-1")
    steps = lineage.run_steps(connection, "run-1")
    assert set(steps) == {"ingest", "train"}
    assert steps["train"]["state"] == "COMPLETE"
    assert steps["train"]["outputs"]["model"]["uri"] == "/root/run-1/model"
    assert lineage.run_steps(connection, "no-such-run") == {}


_COMPILE = """
import sys
from kfp import compiler
from prodml.pipelines.training import training_pipeline
compiler.Compiler().compile(training_pipeline, sys.argv[1])
"""


@pytest.mark.slow
def test_compiled_pipeline_takes_the_metadata_password_from_a_kubernetes_secret(tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    from prodml.pipelines import training

    package = tmp_path / "pipeline.yaml"
    env = {**os.environ, training.METADATA_SECRET_ENV: "prodml-metadata"}
    subprocess.run([sys.executable, "-c", _COMPILE, str(package)], env=env, check=True, timeout=300,
                   capture_output=True)
    text = package.read_text()
    assert lineage._PASSWORD.search(text) is None  # no user:password@ anywhere, defaults included
    spec, platform = list(yaml.safe_load_all(text))
    executors = spec["deploymentSpec"]["executors"]
    wired = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # Every task of the pipeline (ingest ... infra_validate, export, push, deploy) gets the Secret.
    assert set(wired) == set(executors) and len(executors) == len(spec["root"]["dag"]["tasks"]) == 9
    for executor in wired.values():
        assert executor["secretAsEnv"] == [{
            "secretName": "prodml-metadata",
            "secretNameParameter": {"runtimeValue": {"constant": "prodml-metadata"}},
            "keyToEnv": [{"secretKey": "password", "envVar": lineage.PASSWORD_ENV}]}]
