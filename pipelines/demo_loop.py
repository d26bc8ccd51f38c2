"""``make demo-loop``: a served model drifts, the monitor notices, retraining replaces it, the server rolls over.

The story, on the vendored Chicago Taxi sample (``python -m prodml.pipelines.demo_loop``):

1. v1 is trained on trips of January to June.
2. The KServe predictor serves it, logging every row with its ``trip_id`` and polling the registry.
3. From July the fares rise by 50 % plus a $2 surcharge, and riders tip what they tipped before; trips
   of July to December are replayed as HTTP requests. "Big tipper" (a tip above 20 % of the fare) is
   recomputed from the new fare, so the world really changed.
4. The labels arrive later, as a CSV of ``trip_id,big_tipper``.
5. ``prodml monitor`` measures drift and live quality, decides to retrain, retrains on the logged
   rows joined with the labels plus v1's data, blesses the candidate against v1 on the new data and
   pushes v2.
6. The server picks v2 up while requests keep coming; none fails.

The scenario helpers (:func:`taxi_slices`, :func:`instances`, :class:`Traffic`) are also what
``tests/test_monitoring_loop.py`` runs.
"""

import argparse
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Set, Tuple

from prodml.serving.demo import wait_ready

FARE_RISE, SURCHARGE = 1.5, 2.0
LABEL = "big_tipper"
JOIN_KEY = "trip_id"
ROWS_PER_REQUEST = 20
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(REPO, "data", "chicago_taxi", "data.csv")
DEMO_MARKER = ".prodml-demo-loop"  # in --root: the folder is the demo's, and a new run may empty it


def taxi_slices(data_csv: str, v1_rows: int, traffic_rows: int, holdout_rows: int):
    """(v1's training rows, the shifted traffic, a shifted hold-out) as DataFrames, each row with a trip_id.

    v1's rows are trips of January to June. Traffic and hold-out are disjoint trips of July to
    December after the fare rise, with the label recomputed from the new fare.
    """
    import pandas as pd

    data = pd.read_csv(data_csv)
    data.insert(0, JOIN_KEY, [f"trip-{i:05d}" for i in range(len(data))])
    early = data[data.trip_start_month <= 6]
    early = early.sample(n=min(v1_rows, len(early)), random_state=0).sort_index()
    late = data[data.trip_start_month > 6].sample(n=traffic_rows + holdout_rows, random_state=1).copy()
    late["fare"] = (late["fare"] * FARE_RISE + SURCHARGE).round(2)
    late[LABEL] = (late["tips"] > 0.2 * late["fare"]).astype(int)
    return early, late.iloc[:traffic_rows], late.iloc[traffic_rows:]


def instances(frame, kinds: Dict[str, str]) -> List[dict]:
    """V1 instances: the model's raw features (null when missing) and the trip_id pass-through key."""
    rows = []
    for record in frame.to_dict("records"):
        row = {JOIN_KEY: record[JOIN_KEY]}
        for name, kind in kinds.items():
            value = record.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                row[name] = None
            else:
                row[name] = int(value) if kind == "INT" else float(value) if kind == "FLOAT" else str(value)
        rows.append(row)
    return rows


def predict(client, url: str, model_name: str, rows: List[dict]):
    """(predictions, the version that served them) of one V1 request."""
    import numpy as np

    response = client.post(f"{url}/v1/models/{model_name}:predict", json={"instances": rows}, timeout=30)
    response.raise_for_status()
    body = response.json()
    return np.asarray(body["predictions"], dtype=float), int(body["model_version"])


def score(client, url: str, model_name: str, rows: List[dict]) -> Tuple[object, Set[int]]:
    """Predictions for every row, sent ``ROWS_PER_REQUEST`` at a time, and the versions that served them."""
    import numpy as np

    predictions, versions = [], set()
    for start in range(0, len(rows), ROWS_PER_REQUEST):
        values, version = predict(client, url, model_name, rows[start:start + ROWS_PER_REQUEST])
        predictions.append(values)
        versions.add(version)
    return np.concatenate(predictions), versions


@dataclasses.dataclass
class Traffic:
    """Requests sent one after another from a thread, about 5 a second; every outcome is kept."""

    url: str
    model_name: str
    rows: List[dict]
    versions: List[int] = dataclasses.field(default_factory=list)
    failures: List[str] = dataclasses.field(default_factory=list)
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    _thread: Optional[threading.Thread] = None

    def start(self) -> "Traffic":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def wait_for_version(self, version: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.versions and self.versions[-1] == version:
                return True
            time.sleep(0.2)
        return False

    def _run(self) -> None:
        import httpx

        position = 0
        with httpx.Client() as client:
            while not self._stop.is_set():
                batch = self.rows[position:position + ROWS_PER_REQUEST]
                position = (position + ROWS_PER_REQUEST) % len(self.rows)
                try:
                    self.versions.append(predict(client, self.url, self.model_name, batch)[1])
                except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                    self.failures.append(f"{type(e).__name__}: {e}")
                self._stop.wait(0.2)  # steady traffic that leaves the cores to the retraining run


def auc(labels, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def log_lines(path: str) -> int:
    """Rows in a request-log file so far."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def wait_for_log(path: str, rows: int, timeout: float = 10.0) -> int:
    """Waits until the server's log thread has written ``rows`` rows (it writes every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while log_lines(path) < rows and time.monotonic() < deadline:
        time.sleep(0.2)
    return log_lines(path)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(python: str, registry: str, model_name: str, log: str, stderr_path: str, http_port: int,
                 grpc_port: int, poll_seconds: float = 1.0) -> subprocess.Popen:
    """The predictor on loopback, logging every row with its trip_id, polling the registry for new versions."""
    with open(stderr_path, "wb") as err:
        return subprocess.Popen(
            [python, "-m", "prodml.serving", "--model_name", model_name, "--registry", registry,
             "--http_port", str(http_port), "--grpc_port", str(grpc_port), "--poll", str(poll_seconds),
             "--log_requests", log, "--log_passthrough", JOIN_KEY],
            stdout=err, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _say(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the demo; ``--root`` is emptied first if an earlier demo made it (it is the demo's own folder)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(REPO, ".prodml-demo-loop"))
    parser.add_argument("--model-name", default="chicago-taxi")
    parser.add_argument("--v1-rows", type=int, default=3000)
    parser.add_argument("--traffic-rows", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)

    import httpx

    from prodml.pipelines.cli import serving_python

    started = time.monotonic()
    prodml = os.path.join(os.path.dirname(sys.executable), "prodml")
    root, name = os.path.abspath(args.root), args.model_name
    marker = os.path.join(root, DEMO_MARKER)
    if os.path.isdir(root) and os.listdir(root) and not os.path.exists(marker):
        print(f"{root} is not empty and is not a demo-loop folder; give --root a new folder.", file=sys.stderr)
        return 2
    shutil.rmtree(root, ignore_errors=True)  # the previous demo's run
    os.makedirs(root)
    open(marker, "w").close()
    early, traffic, holdout = taxi_slices(TAXI, args.v1_rows, args.traffic_rows, 600)
    v1_data = os.path.join(root, "trips-jan-jun.csv")
    early.to_csv(v1_data, index=False)

    _say(f"1. Train v1 on {len(early):,} trips of January-June")
    subprocess.run([prodml, "run", "training", "--data", v1_data, "--label", LABEL, "--model-name", name,
                    "--drop-columns", f"tips,{JOIN_KEY}", "--epochs", str(args.epochs), "--root", root], check=True)

    registry, log = os.path.join(root, "registry"), os.path.join(root, "requests.jsonl")
    http_port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    _say(f"2. Serve it: python -m prodml.serving --poll 1 --log_requests {log} --log_passthrough {JOIN_KEY}")
    server = start_server(serving_python(), registry, name, log, os.path.join(root, "server.log"), http_port,
                          grpc_port)
    background = None
    try:
        wait_ready(url, name, server)
        from prodml.components.common import artifacts
        from prodml.components.common import registry as model_registry

        kinds = artifacts.ModelInfo.read(model_registry.version_uri(registry, name, 1)).raw_features
        client = httpx.Client()
        before, after = early["fare"].mean(), traffic["fare"].mean()
        _say(f"3. July-December: fares up {FARE_RISE - 1:.0%} plus ${SURCHARGE:.0f} (mean ${before:.2f} -> "
             f"${after:.2f}); {len(traffic):,} trips replayed over HTTP")
        _, versions = score(client, url, name, instances(traffic, kinds))
        print(f"   served by version {sorted(versions)}; {wait_for_log(log, len(traffic)):,} rows in {log}")
        labels = os.path.join(root, "labels.csv")
        traffic[[JOIN_KEY, LABEL]].to_csv(labels, index=False)
        _say(f"4. The labels arrive: {labels} ({traffic[LABEL].mean():.1%} big tippers now, "
             f"{early[LABEL].mean():.1%} before)")
        holdout_rows = instances(holdout, kinds)
        v1_scores, _ = score(client, url, name, holdout_rows)

        background = Traffic(url, name, holdout_rows).start()
        command = [prodml, "monitor", "--model-name", name, "--traffic", log, "--labels", labels,
                   "--join-key", JOIN_KEY, "--with-old-data", "--root", root]
        _say("5. " + " ".join(os.path.basename(c) if c == prodml else c for c in command)
             + "   (requests keep coming meanwhile)")
        subprocess.run(command, check=True)

        _say("6. The server rolls over")
        rolled = background.wait_for_version(2, timeout=60)
        background.stop()
        v2_scores, versions = score(client, url, name, holdout_rows)
        counts = {v: background.versions.count(v) for v in sorted(set(background.versions))}
        print(f"   requests during retraining: {len(background.versions):,} answered by version "
              + ", ".join(f"{v}: {n:,}" for v, n in counts.items()) + f"; failed: {len(background.failures)}")
        if not rolled:
            print("   version 2 was not served within 60 s (was it blessed? see the retraining summary above)")
        labels_holdout = holdout[LABEL].to_numpy()
        print(f"   AUC on {len(holdout):,} new trips neither model saw: v1 {auc(labels_holdout, v1_scores):.3f}, "
              f"v{max(versions)} {auc(labels_holdout, v2_scores):.3f}")
        print(f"\nDone in {time.monotonic() - started:.0f}s. Everything is under {root} (monitoring/ holds the "
              "HTML report).")
        return 0 if rolled and not background.failures else 1
    finally:
        if background is not None:
            background.stop()
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    sys.exit(main())
