"""Real faults on real runs: a SIGKILL of the running step at each step, and concurrent runs.

One local root takes, in order (each run on ``testdata/taxi_small.csv`` with one epoch):

1. four runs, each killed with SIGKILL as it starts its target step (ingest, validate,
   transform, train): the task subprocess is killed from outside, as an OOM kill would;
2. one run whose push kills itself right after publishing, before recording its lineage
   (``PRODML_FAULT=push:after_publish``, the only window too short to hit from outside);
3. three runs at once on the same root: two that must finish with complete lineage, and one
   killed as it starts evaluate.

After each stage: the registry holds only complete versions, every execution in ML Metadata
is COMPLETE with every output present, ``prodml lineage`` explains every version, and
``prodml gc`` finds what the kills left and removes it without touching anything recorded.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import LABEL, TAXI_SMALL

from prodml.components.common import lineage, registry

psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAME = "taxi"
KILLED_STEPS = ("ingest", "validate", "transform", "train")
_STARTED = re.compile(r"(?:Executing task '|▶ )([\w-]+)")
_WORKING = re.compile(r"\bprodml .*\.\.\.\s*$")  # a step's "<what> ..." line: its executor is at work
STEP_TIMEOUT = 900


def _command(root, *extra):
    return [sys.executable, "-m", "prodml.pipelines.cli", "run", "training", "--data", str(TAXI_SMALL),
            "--label", LABEL, "--model-name", NAME, "--drop-columns", "tips", "--epochs", "1",
            "--root", str(root), "--json", *extra]


class Run:
    """A ``prodml run training`` subprocess, optionally SIGKILLed as it starts ``kill_at``."""

    def __init__(self, root, kill_at: str = "", env=None):
        self.kill_at, self.killed_pid = kill_at, None
        self.stderr, self.stdout = [], []
        self.started, self.working = threading.Event(), threading.Event()
        self.proc = subprocess.Popen(_command(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stdout, self.stdout), daemon=True)]
        for reader in self._readers:
            reader.start()
        if kill_at:
            threading.Thread(target=self._kill_when_started, daemon=True).start()

    def _read(self, pipe, lines):
        for line in pipe:
            lines.append(line)
            match = _STARTED.search(line)
            if self.kill_at and match and match.group(1) == self.kill_at:
                self.started.set()
            elif self.started.is_set() and _WORKING.search(line):
                self.working.set()

    def _kill_when_started(self):
        # Once the step's executor says it is at work (past the imports), kill the task subprocess.
        if not self.working.wait(STEP_TIMEOUT):
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            children = psutil.Process(self.proc.pid).children()
            if children:
                task = children[0]  # kfp.local runs one task subprocess at a time
                time.sleep(0.5)
                try:
                    doomed = task.children(recursive=True) + [task]
                except psutil.NoSuchProcess:  # the step ended before the kill: leave killed_pid unset
                    return
                for process in doomed:  # descendants first, then the task process itself
                    try:
                        process.send_signal(signal.SIGKILL)
                    except psutil.NoSuchProcess:
                        pass
                self.killed_pid = task.pid
                return
            time.sleep(0.1)

    def wait(self) -> int:
        code = self.proc.wait(timeout=STEP_TIMEOUT * 2)
        for reader in self._readers:
            reader.join(10)
        return code

    @property
    def summary(self):
        return json.loads(self.stdout[-1])

    @property
    def output(self):
        return "".join(self.stderr) + "".join(self.stdout)


def _prodml(*args):
    return subprocess.run([sys.executable, "-m", "prodml.pipelines.cli", *args], capture_output=True, text=True,
                          timeout=300)


def _connection(root):
    return f"sqlite://{root}/metadata.sqlite"


def assert_registry_complete(root):
    """Every numbered folder is a complete version, and its marker lists files that are all there."""
    reg = str(root / "registry")
    assert registry.version_folders(reg, NAME) == registry.list_versions(reg, NAME)
    for version in registry.list_versions(reg, NAME):
        marker = registry.read_marker(reg, NAME, version)
        folder = registry.version_uri(reg, NAME, version)
        assert marker["version"] == version and "saved_model.pb" in marker["files"]
        assert all(os.path.exists(os.path.join(folder, f)) for f in marker["files"])


def assert_mlmd_whole(root):
    """No execution is half-recorded: each is COMPLETE and every artifact it output exists."""
    from ml_metadata.proto import metadata_store_pb2 as mlmd

    store = lineage.connect(_connection(root))
    executions = store.get_executions()
    assert executions, "nothing recorded"
    assert {mlmd.Execution.State.Name(e.last_known_state) for e in executions} == {"COMPLETE"}
    events = store.get_events_by_execution_ids([e.id for e in executions])
    outputs = store.get_artifacts_by_id(sorted({e.artifact_id for e in events if e.type == mlmd.Event.OUTPUT}))
    # KFP keeps Metrics and ClassificationMetrics in the artifact's metadata: no file at their URI.
    metadata_only = {t.id for t in store.get_artifact_types()
                     if t.name in (lineage.METRICS, lineage.CLASSIFICATION_METRICS)}
    missing = [a.uri for a in outputs if a.type_id not in metadata_only and not os.path.exists(a.uri)]
    assert missing == []
    for execution in executions:  # every execution has its run and pipeline contexts
        assert len(store.get_contexts_by_execution(execution.id)) == 2


def assert_lineage_complete(root, version):
    result = _prodml("lineage", "--model-name", NAME, "--version", str(version), "--root", str(root), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [step["component"] for step in report["chain"]] == ["push", "train", "transform", "ingest"]
    assert report["source"]["properties"]["sha256"]
    return report


def _gc(root, *args):
    result = _prodml("gc", "--root", str(root), "--older-than", "0", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def killed_chain(tmp_path_factory):
    """Stage 1 and 2: a run killed at each of the first four steps, then a push killed after publishing."""
    root = tmp_path_factory.mktemp("faults") / "home"
    started = time.monotonic()
    runs = {}
    for step in KILLED_STEPS:
        run = runs[step] = Run(root, kill_at=step)
        run.code = run.wait()
    runs["push"] = Run(root, env={"PRODML_FAULT": "push:after_publish"})
    runs["push"].code = runs["push"].wait()
    print(f"stage 1 took {time.monotonic() - started:.0f}s")
    return root, runs


def test_a_step_killed_by_sigkill_fails_the_run_with_one_clear_message(killed_chain):
    _, runs = killed_chain
    for step in KILLED_STEPS + ("push",):
        run = runs[step]
        assert run.code == 3, f"{step}: exit {run.code}\n{run.output[-3000:]}"
        assert "Traceback" not in "".join(run.stderr[-5:]), run.output[-3000:]
        assert step in run.output.splitlines()[-1] or step in "".join(run.stderr[-3:]), run.output[-2000:]
    assert all(runs[step].killed_pid for step in KILLED_STEPS)


def test_push_killed_after_publishing_leaves_a_complete_version_that_lineage_explains(killed_chain):
    root, _ = killed_chain
    reg = str(root / "registry")
    assert registry.list_versions(reg, NAME) == [1]
    assert_registry_complete(root)
    uri = registry.version_uri(reg, NAME, 1)
    assert lineage.find_artifacts(_connection(root), uri, lineage.MODEL) == []  # killed before recording
    assert_mlmd_whole(root)

    report = _gc(root, "--dry-run")
    kinds = {(f["kind"], f["uri"]) for f in report}
    assert ("unrecorded_push", uri) in kinds
    assert any(kind in ("run_folder", "task_folder") for kind, _ in kinds)  # the killed steps' outputs
    assert {f["action"] for f in report} <= {"would remove", "would record"}

    lineage_report = assert_lineage_complete(root, 1)  # records the push from the version's marker
    marker = registry.read_marker(reg, NAME, 1)
    assert lineage_report["chain"][0]["run_id"] == marker["run_id"]
    assert lineage.properties_of(lineage.find_artifacts(_connection(root), uri, lineage.MODEL)[0])[
        "recorded_from_marker"] is True
    assert_mlmd_whole(root)


@pytest.fixture(scope="module")
def concurrent_runs(killed_chain):
    """Stage 3: two runs at once on the same root, and a third killed as it starts evaluate."""
    root, _ = killed_chain
    started = time.monotonic()
    runs = [Run(root), Run(root), Run(root, kill_at="evaluate")]
    for run in runs:
        run.code = run.wait()
    print(f"stage 3 took {time.monotonic() - started:.0f}s")
    return root, runs


def test_two_concurrent_runs_both_finish_with_complete_lineage(concurrent_runs):
    root, (first, second, killed) = concurrent_runs
    for run in (first, second):
        assert run.code == 0, run.output[-3000:]
        summary = run.summary
        steps = lineage.run_steps(_connection(root), summary["run_id"])
        assert set(steps) >= {"ingest", "validate", "transform", "train", "evaluate", "push"}
        assert steps["push"]["state"] == "COMPLETE"
        if summary["pushed"]:
            assert_lineage_complete(root, summary["pushed"]["version"])
    assert killed.code == 3 and killed.killed_pid


def test_after_every_fault_the_registry_and_mlmd_hold_only_whole_records(concurrent_runs):
    root, _ = concurrent_runs
    assert_registry_complete(root)
    assert_mlmd_whole(root)
    for version in registry.list_versions(str(root / "registry"), NAME):
        assert_lineage_complete(root, version)


def test_gc_removes_what_the_kills_left_and_keeps_what_lineage_needs(concurrent_runs):
    root, _ = concurrent_runs
    removed = _gc(root)
    assert removed and {f["action"] for f in removed} <= {"removed", "recorded"}
    assert not any(os.path.exists(f["uri"]) for f in removed if f["action"] == "removed")
    assert _gc(root, "--dry-run") == []
    assert_mlmd_whole(root)  # nothing a recorded execution output was removed
    assert_registry_complete(root)
    for version in registry.list_versions(str(root / "registry"), NAME):
        assert_lineage_complete(root, version)
