"""The part of infra_validate that runs in the serving environment (kserve, TF 2.21).

``python -m prodml.components.infra_validate.serving_check --model_dir M --probe P --result R``
starts the prodml predictor on the candidate exactly as the serving image's entry point does
(``python -m prodml.serving --saved_model M``, a real ``kserve.ModelServer`` on free ports, reached
over loopback; KServe binds every interface: 0.0.0.0 for REST, [::] for gRPC), measures how long
it takes to be ready, sends the probe rows over V1 REST, V2 REST and V2 gRPC, then times
single-row V1 requests at the probe's concurrency, and stops the server.

It measures and reports; it decides nothing. The result file holds::

    {"ready": bool, "ready_seconds", "load_seconds", "warm_up_seconds", "failure": str or null,
     "predictions": {"v1": [...], "v2": [...], "grpc": [...]}, "errors": {protocol: str},
     "latency": {"concurrency", "requests", "errors", "p50_ms", "p99_ms", "max_ms", "first_error"},
     "server_log": last lines of the server's output}

The probe file is written by ``probe.py``: ``{"features": {name: kind}, "rows": [{name: value or
null}], "concurrency": int, "requests": int, "max_load_seconds": float}``.
"""

import argparse
import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

MODEL_NAME = "candidate"
_READY_LINE = re.compile(r"serving version \d+ \(loaded in (?P<load>[\d.]+)s, warm-up (?P<warm>[\d.]+)s\)")
_V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}
_GRPC_FIELDS = {"FP64": "fp64_contents", "FP32": "fp32_contents", "BYTES": "bytes_contents"}
LOG_TAIL_CHARS = 3000


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prodml.components.infra_validate.serving_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="The candidate's SavedModel folder.")
    parser.add_argument("--probe", required=True, help="The probe JSON written by probe.py.")
    parser.add_argument("--result", required=True, help="Where to write the result JSON.")
    args = parser.parse_args(argv)
    # A SIGTERM (the caller giving up) unwinds through check(), which stops the predictor.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with open(args.probe, encoding="utf-8") as f:
        probe = json.load(f)
    result = check(args.model_dir, probe)
    tmp = args.result + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(tmp, args.result)
    return 0


def check(model_dir: str, probe: Dict[str, Any]) -> Dict[str, Any]:
    """Serves ``model_dir`` with the predictor and measures it on ``probe`` (see the module docstring)."""
    result: Dict[str, Any] = {"ready": False, "ready_seconds": None, "load_seconds": None, "warm_up_seconds": None,
                              "failure": None, "predictions": {}, "errors": {}, "latency": {}, "server_log": ""}
    with tempfile.TemporaryDirectory(prefix="prodml-infra-") as work:
        log_path = os.path.join(work, "server.log")
        http_port = grpc_port = _free_port()
        while grpc_port == http_port:
            grpc_port = _free_port()
        command = [sys.executable, "-m", "prodml.serving", "--model_name", MODEL_NAME, "--saved_model", model_dir,
                   "--http_port", str(http_port), "--grpc_port", str(grpc_port)]
        started = time.perf_counter()
        with open(log_path, "wb") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
                                      env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            url = f"http://127.0.0.1:{http_port}"
            result["failure"] = _wait_ready(server, url, float(probe["max_load_seconds"]), log_path)
            if result["failure"] is None:
                result["ready"] = True
                result["ready_seconds"] = round(time.perf_counter() - started, 3)
                _send_probe(url, f"127.0.0.1:{grpc_port}", probe, result)
                result["latency"] = asyncio.run(_latency(url, probe["rows"], int(probe["concurrency"]),
                                                         int(probe["requests"])))
        finally:
            _stop(server)
            text = _read(log_path)
            match = _READY_LINE.search(text)
            if match:
                result["load_seconds"] = float(match.group("load"))
                result["warm_up_seconds"] = float(match.group("warm"))
            result["server_log"] = text[-LOG_TAIL_CHARS:]
    return result


def _wait_ready(server: subprocess.Popen, url: str, max_seconds: float, log_path: str) -> Optional[str]:
    """None once ``/v2/health/ready`` answers 200; otherwise why the server never became ready."""
    import httpx

    deadline = time.perf_counter() + max_seconds
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            return f"the predictor exited with code {server.returncode} before it was ready: {_error_of(log_path)}"
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1.0).status_code == 200:
                return None
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    return f"the predictor was not ready within {max_seconds:g} s"


def _error_of(log_path: str) -> str:
    """The server's own error line ("error: ..."), else its last log line."""
    lines = [line.strip() for line in _read(log_path).splitlines() if line.strip()]
    errors = [line[len("error: "):] for line in lines if line.startswith("error: ")]
    if errors:
        return errors[-1]
    logged = [line for line in lines if " ERROR " in line or "Error" in line]
    return (logged or lines or ["it wrote nothing"])[-1]


def _send_probe(url: str, grpc_target: str, probe: Dict[str, Any], result: Dict[str, Any]) -> None:
    """The probe rows over each protocol; each protocol's predictions or its error."""
    for protocol, send in (("v1", _v1), ("v2", _v2_rest), ("grpc", _v2_grpc)):
        try:
            result["predictions"][protocol] = send(url if protocol != "grpc" else grpc_target, probe)
        except Exception as e:  # noqa: BLE001 - any failure to answer is the finding, not a crash
            result["errors"][protocol] = f"{type(e).__name__}: {e}"[:500]


def _v1(url: str, probe: Dict[str, Any]) -> list:
    import httpx

    reply = httpx.post(f"{url}/v1/models/{MODEL_NAME}:predict", json={"instances": probe["rows"]}, timeout=60)
    if reply.status_code != 200:
        raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:300]}")
    return reply.json()["predictions"]


def _v2_rest(url: str, probe: Dict[str, Any]) -> list:
    import httpx

    rows = probe["rows"]
    inputs = [{"name": name, "datatype": _V2_DATATYPES[kind], "shape": [len(rows)],
               "data": [row[name] for row in rows]} for name, kind in sorted(probe["features"].items())]
    reply = httpx.post(f"{url}/v2/models/{MODEL_NAME}/infer", json={"inputs": inputs}, timeout=60)
    if reply.status_code != 200:
        raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:300]}")
    output = reply.json()["outputs"][0]
    return _reshape(output["data"], output["shape"])


def _v2_grpc(target: str, probe: Dict[str, Any]) -> list:
    import grpc
    import numpy as np
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    rows = probe["rows"]
    tensors = []
    for name, kind in sorted(probe["features"].items()):
        datatype = _V2_DATATYPES[kind]
        values = [row[name] for row in rows]
        if kind == "BYTES":
            values = [b"" if v is None else v.encode("utf-8") for v in values]
        else:
            values = [math.nan if v is None else float(v) for v in values]
        contents = pb.InferTensorContents(**{_GRPC_FIELDS[datatype]: values})
        tensors.append(pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=[len(rows)],
                                                             contents=contents))
    with grpc.insecure_channel(target) as channel:
        response = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            pb.ModelInferRequest(model_name=MODEL_NAME, inputs=tensors), timeout=60)
    output = response.outputs[0]
    if response.raw_output_contents:
        flat = np.frombuffer(response.raw_output_contents[0], dtype=np.float32).tolist()
    else:
        flat = list(output.contents.fp32_contents) or list(output.contents.fp64_contents)
    return _reshape(flat, list(output.shape))


def _reshape(flat: list, shape: List[int]) -> list:
    if len(shape) == 2:
        width = int(shape[1])
        return [flat[i:i + width] for i in range(0, len(flat), width)]
    return list(flat)


async def _latency(url: str, rows: List[dict], concurrency: int, requests: int) -> Dict[str, Any]:
    """``requests`` single-row V1 requests from ``concurrency`` clients at once; percentiles in ms."""
    import httpx

    seconds: List[float] = []
    errors: List[str] = []
    bodies = [json.dumps({"instances": [row]}).encode() for row in rows]
    counter = iter(range(requests))
    path = f"/v1/models/{MODEL_NAME}:predict"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits,
                                 headers={"content-type": "application/json"}) as client:
        async def worker():
            for i in counter:
                start = time.perf_counter()
                try:
                    reply = await client.post(path, content=bodies[i % len(bodies)])
                    if reply.status_code != 200:
                        errors.append(f"HTTP {reply.status_code}: {reply.text[:200]}")
                        continue
                except httpx.HTTPError as e:
                    errors.append(f"{type(e).__name__}: {e}")
                    continue
                seconds.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    figures: Dict[str, Any] = {"concurrency": concurrency, "requests": requests, "errors": len(errors),
                               "first_error": errors[0] if errors else None}
    if seconds:
        ordered = sorted(seconds)
        figures.update(p50_ms=round(_percentile(ordered, 50) * 1000, 3),
                       p99_ms=round(_percentile(ordered, 99) * 1000, 3), max_ms=round(ordered[-1] * 1000, 3))
    return figures


def _percentile(ordered: List[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _die_with_parent() -> None:
    """Linux: the predictor gets SIGTERM if this process dies without stopping it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
