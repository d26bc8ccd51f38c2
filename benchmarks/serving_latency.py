"""Serving latency and throughput: the prodml predictor vs a hand-written KServe predictor.

One run, same machine, same model, same raw taxi rows (one row per request):

  * floor     — the SavedModel's ``serving_default`` called in-process on one row
                (numpy -> tensors -> signature -> numpy), no server;
  * prodml    — ``python -m prodml.serving`` (micro-batching, lean hot path), request logging off;
  * prodml+log — the same with ``--log_requests <file>`` (JSON lines);
  * baseline  — ``benchmarks/baseline_predictor.py``: a ``kserve.Model`` that converts each request
                to tensors and calls the model once per request, stock ``kserve.ModelServer``;
  * grpc floor — ``benchmarks/grpc_floor_server.py``: gRPC only, a constant answer and no model,
                 i.e. what grpcio alone costs per request.

Each server is measured over V1 REST, V2 REST and V2 gRPC at concurrency 1, 8 and 64 by an
async closed-loop load generator (aiohttp, grpc.aio) in this process, separate from the server
processes. All servers run at once and are measured in turn, cell by cell, ``--repeats`` times,
so that other activity on the machine spreads evenly over them; server CPU time per request
(from /proc) is reported beside latency because it does not depend on that activity. On
machines with 2+ CPUs the servers are pinned to CPU 0 and the load generator to CPU 1.
Prints a Markdown table and writes the JSON results.

    python benchmarks/serving_latency.py [--model_dir DIR] [--duration 3] [--json out.json]

Without ``--model_dir`` a model is trained first by the pipeline's executors in the runtime
environment (``PRODML_RUNTIME_PYTHON``, default ``.venv/runtime/bin/python``) on ``--data``.
"""

import argparse
import asyncio
import csv
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_NAME = "chicago-taxi"
PROTOCOLS = ("v1", "v2", "grpc")
V2_DATATYPES = {"INT": "FP64", "FLOAT": "FP32", "BYTES": "BYTES"}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_dir", help="A registry root holding the benchmark model (default: train one).")
    parser.add_argument("--data", default=os.path.join(REPO, "data", "chicago_taxi", "data.csv"))
    parser.add_argument("--rows", type=int, default=2000, help="Distinct raw rows cycled through.")
    parser.add_argument("--duration", type=float, default=3.0, help="Measured seconds per scenario.")
    parser.add_argument("--warmup", type=float, default=1.0, help="Unmeasured seconds before each scenario.")
    parser.add_argument("--repeats", type=int, default=2, help="Interleaved repeats of every cell.")
    parser.add_argument("--concurrency", default="1,8,64")
    parser.add_argument("--epochs", type=int, default=2, help="Epochs when training the model first.")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "serving_latency.json"))
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="Do not pin server and client CPUs.")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the servers are stopped
    concurrencies = [int(c) for c in args.concurrency.split(",")]

    workdir = tempfile.mkdtemp(prefix="prodml-bench-")
    try:
        model_dir = args.model_dir or train_model(args.data, workdir, args.epochs)
        version_dir = resolve_version(model_dir)
        with open(os.path.join(version_dir, "prodml_model.json"), encoding="utf-8") as f:
            kinds = json.load(f)["raw_features"]
        rows = read_rows(args.data, kinds, args.rows)
        pin = args.pin and len(os.sched_getaffinity(0)) >= 2
        server_cpus = {sorted(os.sched_getaffinity(0))[0]} if pin else None
        client_cpus = {sorted(os.sched_getaffinity(0))[1]} if pin else None

        results = {"floor": measure_floor(version_dir, rows, kinds, server_cpus), "servers": {}}
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        log_file = os.path.join(workdir, "requests.jsonl")
        servers = {
            "prodml": [sys.executable, "-m", "prodml.serving", "--model_name", MODEL_NAME,
                       "--saved_model", version_dir],
            "prodml+log": [sys.executable, "-m", "prodml.serving", "--model_name", MODEL_NAME,
                           "--saved_model", version_dir, "--log_requests", log_file],
            "baseline": [sys.executable, os.path.join(REPO, "benchmarks", "baseline_predictor.py"),
                         "--model_name", MODEL_NAME, "--model_dir", version_dir],
        }
        payloads = build_payloads(rows, kinds)
        results["servers"] = measure_servers(servers, payloads, concurrencies, args, server_cpus, workdir)
        results["grpc_transport_floor"] = measure_grpc_floor(payloads["grpc"], concurrencies, args, server_cpus,
                                                             workdir)
        if os.path.exists(log_file):
            with open(log_file, "rb") as f:
                results["logged_rows"] = sum(1 for _ in f)
        results["setup"] = {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version(),
            "pinned": bool(pin), "duration_s": args.duration, "warmup_s": args.warmup, "repeats": args.repeats,
            "distinct_rows": len(rows), "rows_per_request": 1, "model": version_dir,
        }
        results["targets"] = targets(results, concurrencies)
        print(markdown(results, concurrencies))
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"\nJSON results: {args.json}", file=sys.stderr)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# Model and data ---------------------------------------------------------------------------

def train_model(data: str, workdir: str, epochs: int) -> str:
    python = os.environ.get("PRODML_RUNTIME_PYTHON", os.path.join(REPO, ".venv", "runtime", "bin", "python"))
    registry = os.path.join(workdir, "registry")
    print(f"-- training a model on {data} with the runtime environment ({python})", file=sys.stderr, flush=True)
    subprocess.run([python, os.path.join(REPO, "tests", "serving", "build_model.py"), data, workdir, registry,
                    MODEL_NAME, str(epochs)], check=True, stdout=subprocess.DEVNULL)
    return registry


def resolve_version(model_dir: str) -> str:
    from prodml.serving.model_source import ModelSource

    source = ModelSource(model_dir, MODEL_NAME)
    latest = source.latest()
    if latest is None:
        sys.exit(f"No model version under {source.where}.")
    return source.path(latest)


def read_rows(path: str, kinds: Dict[str, str], limit: int) -> List[dict]:
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            rows.append({name: _value(record.get(name, ""), kind) for name, kind in kinds.items()})
            if len(rows) >= limit:
                break
    return rows


def _value(text: str, kind: str):
    if text == "":
        return None
    if kind == "BYTES":
        return text
    number = float(text)
    return int(number) if kind == "INT" else number


def build_payloads(rows: List[dict], kinds: Dict[str, str]) -> dict:
    import orjson
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    v1 = [orjson.dumps({"instances": [row]}) for row in rows]
    v2 = [orjson.dumps({"inputs": [{"name": n, "datatype": V2_DATATYPES[k], "shape": [1], "data": [row[n]]}
                                   for n, k in kinds.items()]}) for row in rows]
    grpc_requests = []
    for row in rows:
        inputs = []
        for name, kind in kinds.items():
            value = row[name]
            if kind == "BYTES":
                contents = pb.InferTensorContents(bytes_contents=[(value or "").encode()])
            elif kind == "INT":
                contents = pb.InferTensorContents(fp64_contents=[math.nan if value is None else value])
            else:
                contents = pb.InferTensorContents(fp32_contents=[math.nan if value is None else value])
            inputs.append(pb.ModelInferRequest.InferInputTensor(
                name=name, datatype=V2_DATATYPES[kind], shape=[1], contents=contents))
        grpc_requests.append(pb.ModelInferRequest(model_name=MODEL_NAME, inputs=inputs))
    return {"v1": v1, "v2": v2, "grpc": grpc_requests}


# Measurements -----------------------------------------------------------------------------

def measure_floor(version_dir: str, rows: List[dict], kinds: Dict[str, str], cpus) -> dict:
    """The in-process signature call on one row, in a child process pinned like the servers."""
    code = f"""
import json, math, os, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
rows, kinds = json.load(sys.stdin), {kinds!r}
fn = tf.saved_model.load({version_dir!r}).signatures["serving_default"]
dtypes = {{"INT": np.float64, "FLOAT": np.float32}}
def columns(row):
    return {{n: (np.array([row[n] or ""], dtype=object) if k == "BYTES" else
             np.array([math.nan if row[n] is None else row[n]], dtype=dtypes[k])) for n, k in kinds.items()}}
prepared = [columns(r) for r in rows]
for c in prepared[:200]:
    fn(**{{n: tf.constant(v) for n, v in c.items()}})
lat = []
deadline = time.perf_counter() + 3.0
i = 0
while time.perf_counter() < deadline:
    c = prepared[i % len(prepared)]
    t = time.perf_counter()
    fn(**{{n: tf.constant(v) for n, v in c.items()}})["predictions"].numpy()
    lat.append(time.perf_counter() - t)
    i += 1
print(json.dumps(lat))
"""
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(rows), capture_output=True, text=True,
                          check=True, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    latencies = json.loads(done.stdout.strip().splitlines()[-1])
    return summarize(latencies, sum(latencies), 0)


def measure_servers(servers: Dict[str, List[str]], payloads: dict, concurrencies: List[int], args, cpus,
                    workdir) -> dict:
    """Starts every server, then measures them in turn, cell by cell, ``--repeats`` times.

    Interleaving spreads whatever else the machine is doing evenly over the servers; each cell
    pools the latencies of its repeats.
    """
    running = {name: start(command, cpus, workdir) for name, command in servers.items()}
    try:
        for proc, http_port, _, log_path in running.values():
            wait_ready(proc, f"http://127.0.0.1:{http_port}", log_path)
        cells = {name: {p: {str(c): [] for c in concurrencies} for p in PROTOCOLS} for name in servers}
        for protocol in PROTOCOLS:
            for concurrency in concurrencies:
                for _ in range(args.repeats):
                    for name, (proc, http_port, grpc_port, _) in running.items():
                        cells[name][protocol][str(concurrency)].append(
                            measure_cell(proc, protocol, payloads[protocol], concurrency, args, http_port, grpc_port))
                for name in servers:
                    r = pool(cells[name][protocol][str(concurrency)], args.duration)
                    cells[name][protocol][str(concurrency)] = r
                    print(f"   {name:11} {protocol:4} c={concurrency:<3} {r['rps']:7.0f} req/s"
                          f"  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms"
                          f"  server CPU {r['server_cpu_ms_per_request']:.3f} ms/req"
                          f"  errors {r['errors']}", file=sys.stderr, flush=True)
        return cells
    finally:
        for proc, _, _, _ in running.values():
            proc.terminate()
        for proc, _, _, _ in running.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def measure_grpc_floor(payloads: list, concurrencies: List[int], args, cpus, workdir: str) -> dict:
    """gRPC with an empty ``ModelInfer`` (``grpc_floor_server.py``): grpcio's own cost per request."""
    import grpc

    command = [sys.executable, os.path.join(REPO, "benchmarks", "grpc_floor_server.py")]
    proc, _, grpc_port, log_path = start(command, cpus, workdir, http=False)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=60)
            except grpc.FutureTimeoutError:
                sys.exit(f"The gRPC floor server did not start; see {log_path}")
        cells = {}
        for concurrency in concurrencies:
            runs = [measure_cell(proc, "grpc", payloads, concurrency, args, 0, grpc_port)
                    for _ in range(args.repeats)]
            cells[str(concurrency)] = r = pool(runs, args.duration)
            print(f"   {'grpc floor':11} grpc c={concurrency:<3} {r['rps']:7.0f} req/s  p50 {r['p50_ms']:7.2f} ms"
                  f"  server CPU {r['server_cpu_ms_per_request']:.3f} ms/req", file=sys.stderr, flush=True)
        return cells
    finally:
        proc.terminate()
        proc.wait(30)


def measure_cell(proc, protocol: str, payloads: list, concurrency: int, args, http_port: int,
                 grpc_port: int) -> dict:
    """One run of ``load`` against the server ``proc``, with the server's CPU seconds during it."""
    cpu_before = process_cpu_seconds(proc.pid)
    cell = asyncio.run(load(protocol, payloads, concurrency, args.duration, args.warmup, http_port, grpc_port))
    cell["server_cpu_s"] = process_cpu_seconds(proc.pid) - cpu_before
    return cell


def start(command: List[str], cpus, workdir: str, http: bool = True):
    http_port, grpc_port = free_port(), free_port()
    log_path = os.path.join(workdir, f"server-{http_port}.log")
    with open(log_path, "wb") as log:
        ports = (["--http_port", str(http_port)] if http else []) + ["--grpc_port", str(grpc_port)]
        proc = subprocess.Popen(command + ports,
                                stdout=log, stderr=subprocess.STDOUT, cwd=workdir,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    return proc, http_port, grpc_port, log_path


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pool(cells: List[dict], duration: float) -> dict:
    """One cell from its repeats: pooled latencies, mean throughput, server CPU per request."""
    per_run = [{"rps": round(len(cell["latencies"]) / duration, 1),
                "server_cpu_ms_per_request": round(1000 * cell["server_cpu_s"] / cell["n_total"], 4)
                if cell["n_total"] else math.nan} for cell in cells]
    latencies = [x for cell in cells for x in cell.pop("latencies")]
    out = summarize(latencies, duration * len(cells), sum(cell["errors"] for cell in cells))
    out["runs"] = per_run
    served = sum(cell["n_total"] for cell in cells)
    out["server_cpu_ms_per_request"] = round(1000 * sum(c["server_cpu_s"] for c in cells) / served, 3) \
        if served else math.nan
    out["client_cpu"] = round(sum(c["client_cpu"] for c in cells) / len(cells), 2)
    out["repeats"] = len(cells)
    return out


async def load(protocol: str, payloads: list, concurrency: int, duration: float, warmup: float,
               http_port: int, grpc_port: int) -> dict:
    """Closed-loop load: ``concurrency`` callers, each sending its next request when answered."""
    latencies, errors, served = [], [0], [0]
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + duration

    async def caller(send, offset):
        i = offset
        while True:
            began = time.perf_counter()
            if began >= stop_at:
                return
            ok = await send(payloads[i % len(payloads)])
            ended = time.perf_counter()
            served[0] += 1
            if began >= measure_from and ended <= stop_at:
                if ok:
                    latencies.append(ended - began)
                else:
                    errors[0] += 1
            i += concurrency

    cpu_start = time.process_time()
    if protocol == "grpc":
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc

        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def send(request):
                try:
                    await stub.ModelInfer(request)
                    return True
                except grpc.aio.AioRpcError:
                    return False

            await asyncio.gather(*[caller(send, k) for k in range(concurrency)])
    else:
        import aiohttp

        path = f"/v1/models/{MODEL_NAME}:predict" if protocol == "v1" else f"/v2/models/{MODEL_NAME}/infer"
        url = f"http://127.0.0.1:{http_port}{path}"
        headers = {"content-type": "application/json"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def send(body):
                async with session.post(url, data=body, headers=headers) as reply:
                    await reply.read()
                    return reply.status == 200

            await asyncio.gather(*[caller(send, k) for k in range(concurrency)])
    client_cpu = (time.process_time() - cpu_start) / (time.perf_counter() - start)
    return {"latencies": latencies, "errors": errors[0], "n_total": served[0], "client_cpu": client_cpu}


def summarize(latencies: List[float], seconds: float, errors: int) -> dict:
    ordered = sorted(latencies)
    n = len(ordered)

    def pct(p):
        return round(ordered[min(n - 1, int(p * n))] * 1000, 3) if n else math.nan

    out = {"n": n, "errors": errors, "rps": round(n / seconds, 1) if seconds else math.nan,
           "p50_ms": pct(0.50), "p99_ms": pct(0.99),
           "mean_ms": round(sum(ordered) / n * 1000, 3) if n else math.nan}
    return out


def wait_ready(proc, url: str, log_path: str, timeout: float = 180.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"The server exited ({proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=1.0) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.3)
    sys.exit(f"The server was not ready after {timeout}s; see {log_path}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Report -----------------------------------------------------------------------------------

def targets(results: dict, concurrencies: List[int]) -> dict:
    floor = results["floor"]["p50_ms"]
    ours, base = results["servers"]["prodml"], results["servers"]["baseline"]
    top = str(max(concurrencies))
    out = {}
    for protocol in PROTOCOLS:
        p50 = ours[protocol][str(min(concurrencies))]["p50_ms"]
        mine, theirs = ours[protocol][top], base[protocol][top]
        speedup = mine["rps"] / theirs["rps"] if theirs["rps"] else math.inf
        out[protocol] = {
            "p50_c1_minus_floor_ms": round(p50 - floor, 3),
            "p50_within_1.5ms_of_floor": p50 - floor <= 1.5,
            f"throughput_vs_baseline_c{top}": round(speedup, 2),
            "throughput_10x_baseline": speedup >= 10,
            f"p99_c{top}_ms": ours[protocol][top]["p99_ms"],
            "p99_under_50ms": ours[protocol][top]["p99_ms"] < 50,
        }
        # Logging cost: the median over repeats of each back-to-back pair (without, with logging),
        # so that slow drifts in the machine's speed cancel out.
        logged = results["servers"]["prodml+log"][protocol][top]
        cpu = "server_cpu_ms_per_request"
        pairs = list(zip(mine["runs"], logged["runs"]))
        out[protocol]["logging_throughput_cost_pct"] = round(
            100 * statistics.median(1 - b["rps"] / a["rps"] for a, b in pairs), 1)
        out[protocol]["logging_cpu_cost_pct"] = round(
            100 * statistics.median(b[cpu] / a[cpu] - 1 for a, b in pairs), 1)
        out[protocol]["cpu_per_request_baseline_over_prodml"] = round(theirs[cpu] / mine[cpu], 2)
    return out


def markdown(results: dict, concurrencies: List[int]) -> str:
    lo, mid, top = concurrencies[0], concurrencies[len(concurrencies) // 2], concurrencies[-1]
    header = (f"| server | protocol | p50 c={lo} (ms) | p99 c={lo} (ms) | req/s c={mid} | p99 c={mid} (ms) "
              f"| req/s c={top} | p99 c={top} (ms) | server CPU per request c={top} (ms) |")
    lines = [header, "|" + "---|" * 9]
    floor = results["floor"]
    lines.append(f"| in-process signature call (floor) | - | {floor['p50_ms']:.2f} | {floor['p99_ms']:.2f} "
                 f"| {floor['rps']:.0f} (1 caller) | - | - | - | - |")
    for server, by_protocol in results["servers"].items():
        for protocol, by_c in by_protocol.items():
            a, b, c = by_c[str(lo)], by_c[str(mid)], by_c[str(top)]
            lines.append(f"| {server} | {protocol} | {a['p50_ms']:.2f} | {a['p99_ms']:.2f} | {b['rps']:.0f} "
                         f"| {b['p99_ms']:.2f} | {c['rps']:.0f} | {c['p99_ms']:.2f} "
                         f"| {c['server_cpu_ms_per_request']:.3f} |")
    lines.append("")
    lines.append(f"| protocol | p50 c={lo} minus floor (ms) | prodml / baseline req/s at c={top} "
                 f"| baseline / prodml server CPU per request at c={top} | prodml p99 c={top} (ms) "
                 f"| logging cost at c={top}: req/s, CPU per request |")
    lines.append("|---|---|---|---|---|---|")
    for protocol, t in results["targets"].items():
        lines.append(f"| {protocol} | {t['p50_c1_minus_floor_ms']:.2f} "
                     f"| {t[f'throughput_vs_baseline_c{top}']:.1f}x "
                     f"| {t['cpu_per_request_baseline_over_prodml']:.1f}x | {t[f'p99_c{top}_ms']:.1f} "
                     f"| {t['logging_throughput_cost_pct']:+.1f}%, {t['logging_cpu_cost_pct']:+.1f}% |")
    floor_grpc = results.get("grpc_transport_floor")
    if floor_grpc:
        cell = floor_grpc[str(top)]
        lines.append("")
        lines.append(f"gRPC transport floor (grpcio asyncio server on uvloop, constant ModelInfer answer, no "
                     f"model): {cell['rps']:.0f} req/s at c={top}, {cell['server_cpu_ms_per_request']:.3f} ms "
                     "server CPU per request.")
    setup = results["setup"]
    lines.append("")
    lines.append(f"{setup['machine']}, Python {setup['python']}; server and load generator "
                 f"{'pinned to separate CPUs' if setup['pinned'] else 'not pinned'}; one raw row per request, "
                 f"{setup['repeats']} interleaved runs of {setup['duration_s']:g} s per cell, each after "
                 f"{setup['warmup_s']:g} s warm-up. Logging cost: median over the runs of each pair "
                 "measured back to back; positive means slower / more CPU with logging on.")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
