"""Helpers of the serving tests: reference predictions, a server subprocess, publishing."""

import asyncio
import math
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import httpx
import numpy as np

HERE = pathlib.Path(__file__).parent
REPO = HERE.parent.parent
TAXI_SMALL = REPO / "tests" / "testdata" / "taxi_small.csv"
MODEL_NAME = "chicago-taxi"
# The shared server's --log_passthrough keys (request fields that are not features).
PASSTHROUGH = ("trip_id", "order_ref")
EPOCHS = 2


def runtime_python() -> str:
    return os.environ.get("PRODML_RUNTIME_PYTHON", str(REPO / ".venv" / "runtime" / "bin" / "python"))


def runtime_cli() -> str:
    """The runtime environment's ``prodml`` command (it launches the serving environment's python)."""
    return str(pathlib.Path(runtime_python()).parent / "prodml")


def publish(registry: pathlib.Path, model_dir: pathlib.Path) -> int:
    """Publishes ``model_dir`` as the next version (from this, the serving environment)."""
    from prodml.components.common import registry as reg

    return reg.publish(str(registry), MODEL_NAME, lambda staging: shutil.copytree(model_dir, staging))


def parse_value(text: str, kind: str):
    if text == "":
        return None
    if kind == "BYTES":
        return text
    value = float(text)
    return int(value) if kind == "INT" else value


def columns_of(rows: List[dict], kinds: Dict[str, str]) -> Dict[str, np.ndarray]:
    """Rows as signature inputs: NaN / "" for null."""
    dtypes = {"INT": np.float64, "FLOAT": np.float32}
    cols = {}
    for name, kind in kinds.items():
        values = [row[name] for row in rows]
        if kind == "BYTES":
            cols[name] = np.array(["" if v is None else v for v in values], dtype=object)
        else:
            cols[name] = np.array([math.nan if v is None else v for v in values], dtype=dtypes[kind])
    return cols


def predict_in_process(model, rows: List[dict], kinds: Dict[str, str]) -> np.ndarray:
    """The SavedModel's own ``serving_default`` on ``rows``."""
    import tensorflow as tf

    tensors = {name: tf.constant(col) for name, col in columns_of(rows, kinds).items()}
    return model.signatures["serving_default"](**tensors)["predictions"].numpy()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running ``python -m prodml.serving`` subprocess."""

    proc: subprocess.Popen
    http_port: int
    grpc_port: int
    log_file: pathlib.Path
    stderr_file: pathlib.Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"The server exited ({self.proc.returncode}):\n{self.stderr()}")
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"The server was not ready after {timeout}s:\n{self.stderr()}")

    def wait_live(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"The server exited ({self.proc.returncode}):\n{self.stderr()}")
            try:
                httpx.get(f"{self.url}/v2/health/live", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise TimeoutError(f"The server did not listen after {timeout}s:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 30.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(registry: pathlib.Path, workdir: pathlib.Path, *extra: str) -> Server:
    """Starts the predictor on free loopback ports; the caller waits for what it needs."""
    http_port, grpc_port = free_port(), free_port()
    stderr_file = workdir / f"server-{http_port}.log"
    log_file = workdir / f"requests-{http_port}.jsonl"
    args = [sys.executable, "-m", "prodml.serving", "--model_name", MODEL_NAME, "--registry", str(registry),
            "--http_port", str(http_port), "--grpc_port", str(grpc_port), *extra]
    if "--log_requests" not in extra:
        args += ["--log_requests", str(log_file)]
    with open(stderr_file, "wb") as err:
        proc = subprocess.Popen(args, stdout=err, stderr=subprocess.STDOUT, cwd=str(workdir),
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Server(proc, http_port, grpc_port, log_file, stderr_file)


def run(coro):
    """Runs a coroutine (the kserve clients are async) to completion."""
    return asyncio.run(coro)
