"""The monitor's cost against TFDV's own statistics of the same logged rows, and its memory at 100k vs 1M rows.

On request-log rows (Contract 1 of issue 10: one JSON object per line, as ``prodml serve
--log_requests`` writes them) resampled with a seed from the vendored ``data/chicago_taxi/data.csv``,
each row's prediction made by the served model itself, in one run:

  * tfdv           — TFDV's own statistics of the same rows, the baseline of the ratio: the log read by
                     Arrow's JSON reader (the parser the monitor uses), its ``features`` flattened into
                     one RecordBatch of the raw features, then
                     ``stats_impl.generate_statistics_in_memory`` with the default ``StatsOptions``: the
                     in-memory generators ``tfdv.generate_statistics_from_dataframe`` runs, minus pandas.
                     The fairest form: the same file, the same parser and TFDV's fastest path over the rows
                     (the Beam ``GenerateStatistics`` transform on the DirectRunner is not measured here).
  * tfdv-dataframe — TFDV's pandas entry point for reference: the same read, ``to_pandas()``,
                     ``tfdv.generate_statistics_from_dataframe`` (n_jobs=1).
  * monitor        — ``run_monitor`` (prodml.components.monitor.executor, Contract 3): streams the log,
                     TFDV statistics, drift (JS / L-inf, PSI), skew against the schema, prediction drift,
                     the decision, monitoring.json, report.html and summary.md, the MLMD execution.

Each measurement runs in a fresh process. ``seconds`` is the work after the imports (``import_seconds``
apart, the same libraries for all), ``CPU s`` the CPU time (user + system) of that work: on a shared
machine it moves less than wall time, so the ratio is given on both. ``wall`` includes starting the
process. Engines run ``--repeat``
times interleaved (tfdv, monitor, ..., tfdv, monitor, ...), so a slow moment of the shared machine hits
both; the ratio is taken per pair of neighbouring runs and summarised by its median and range. Peak
memory is the process's own high-water mark (``ru_maxrss``: the kernel's, not a sample), so the 100k
and 1M runs are comparable: streaming the log means the monitor's peak does not grow with the window.

    python benchmarks/monitor.py [--rows 100000 1000000] [--engines tfdv tfdv-dataframe monitor]
        [--repeat 3] [--root DIR] [--workdir /tmp/prodml-monitor-bench] [--seed 42] [--json results.json]

Without ``--root`` a model is trained first with ``prodml run training`` into ``WORKDIR/home`` (a few
minutes; reused next time). The generated logs stay in ``--workdir``; nothing large is written to the
repository.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from _common import scaling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "data", "chicago_taxi", "data.csv")
ENGINES = ("tfdv", "tfdv-dataframe", "monitor")
BASELINE = "tfdv"
MODEL_NAME = "chicago-taxi"
LABEL, DROPPED = "big_tipper", "tips"
WINDOW_SECONDS = 7 * 24 * 3600           # the logged rows span a week
LOG_START = 1_796_000_000                # 2026-11-30 UTC, seconds
MAX_REQUEST_ROWS = 4                     # rows per request: 1..4
BATCH_REQUESTS = 8                       # requests per served micro-batch (one timestamp)


# ---- the model and the log -----------------------------------------------------------------------

def train_model(root: str) -> None:
    """Trains and pushes version 1 of MODEL_NAME into the local home ``root`` (once)."""
    from prodml.components.common import registry

    if registry.list_versions(os.path.join(root, "registry"), MODEL_NAME):
        return
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "prodml"), "run", "training", "--data", SOURCE,
                    "--label", LABEL, "--model-name", MODEL_NAME, "--drop-columns", DROPPED, "--root", root,
                    "--epochs", "1"], check=True)


def model_version(root: str):
    """(version folder, ModelInfo) of the newest pushed version of MODEL_NAME under ``root``."""
    from prodml.components.common import artifacts, registry

    reg = os.path.join(root, "registry")
    uri = registry.version_uri(reg, MODEL_NAME, registry.list_versions(reg, MODEL_NAME)[-1])
    return uri, artifacts.ModelInfo.read(uri)


def source_records(root: str) -> List[bytes]:
    """Each vendored row's ``"features":...,"prediction":...`` JSON, the prediction made by the model."""
    import numpy as np
    import orjson
    import pandas as pd
    import tensorflow as tf

    from prodml.components.common import keys, saved_models

    uri, info = model_version(root)
    frame = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
    columns, values = {}, {}
    for name, kind in info.raw_features.items():
        text = frame[name]
        if kind == keys.BYTES:
            values[name] = [v if v else None for v in text]
        else:
            numbers = pd.to_numeric(text, errors="coerce")  # "" is missing
            # The predictor holds INT features as float64 and logs them so (19.0), as it does here.
            values[name] = [None if np.isnan(v) else float(v) for v in numbers]
    loaded, signature = saved_models.load_signature(uri, keys.RAW_SIGNATURE)
    for name, spec in signature.structured_input_signature[1].items():
        if spec.dtype == tf.string:
            columns[name] = tf.constant([v or "" for v in values[name]], tf.string)
        else:
            columns[name] = tf.constant([np.nan if v is None else v for v in values[name]], spec.dtype)
    predictions = signature(**columns)[keys.PREDICTIONS].numpy().reshape(len(frame), -1)
    names = list(info.raw_features)
    out = []
    for i in range(len(frame)):
        prediction = float(predictions[i, 0]) if predictions.shape[1] == 1 else [float(p) for p in predictions[i]]
        out.append(b'"features":' + orjson.dumps({n: values[n][i] for n in names})
                   + b',"prediction":' + orjson.dumps(prediction))
    del loaded
    return out


def make_log(rows: int, seed: int, root: str, workdir: str) -> str:
    """``rows`` request-log lines drawn with replacement from the vendored sample (written once per size and seed)."""
    import datetime

    import numpy as np

    path = os.path.join(workdir, f"requests-{rows}-{seed}.jsonl")
    if os.path.exists(path):
        return path
    records = source_records(root)
    _, info = model_version(root)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(records), rows)
    sizes = rng.integers(1, MAX_REQUEST_ROWS + 1, rows)          # more than enough requests
    ids = rng.bytes(16 * rows).hex()
    version = int(os.path.basename(model_version(root)[0]))
    del info
    with open(path + ".tmp", "wb") as f:
        written, request, batch_head = 0, 0, b""
        while written < rows:
            if request % BATCH_REQUESTS == 0:   # a new micro-batch: its serving time
                at = LOG_START + WINDOW_SECONDS * written / rows
                stamp = datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="microseconds")
                batch_head = (f'{{"timestamp":"{stamp}","model_name":"{MODEL_NAME}",'
                              f'"model_version":{version},"request_id":"').encode()
            request_id = ids[32 * request:32 * request + 32].encode()
            lines = []
            for row in range(min(int(sizes[request]), rows - written)):
                lines.append(batch_head + request_id + b'","row":%d,"passthrough":{},' % row
                             + records[picks[written]] + b"}\n")
                written += 1
            f.write(b"".join(lines))
            request += 1
    os.replace(path + ".tmp", path)
    return path


# ---- the measured jobs (each in its own process: `monitor.py --job ENGINE LOG ROOT OUT`) -------------

def read_features(log: str, raw_features: Dict[str, str]):
    """The log's ``features`` as one RecordBatch of flat columns (Arrow's JSON reader, the whole file)."""
    import pyarrow as pa
    import pyarrow.json as pj

    from prodml.components.common import keys

    kinds = {name: pa.string() if kind == keys.BYTES else pa.float64() for name, kind in raw_features.items()}
    schema = pa.schema([("features", pa.struct(list(kinds.items())))])
    table = pj.read_json(log, read_options=pj.ReadOptions(block_size=8 << 20),
                         parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"))
    struct = table.column("features").combine_chunks()
    # INT features are logged as whole floats (19.0); TFDV should see them as integers, as the monitor does.
    columns = [values.cast(pa.int64()) if raw_features[field.name] == keys.INT else values
               for field, values in zip(struct.type, struct.flatten())]
    return pa.RecordBatch.from_arrays(columns, [f.name for f in struct.type])


def job_tfdv(log: str, root: str, out: str) -> Dict:
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_impl
    from tfx_bsl.arrow import table_util

    start = time.perf_counter()
    batch = read_features(log, model_version(root)[1].raw_features)
    read = time.perf_counter() - start
    stats = stats_impl.generate_statistics_in_memory(table_util.CanonicalizeRecordBatch(batch), tfdv.StatsOptions())
    return {"rows": int(stats.datasets[0].num_examples), "read_seconds": round(read, 2)}


def job_tfdv_dataframe(log: str, root: str, out: str) -> Dict:
    import tensorflow_data_validation as tfdv

    start = time.perf_counter()
    frame = read_features(log, model_version(root)[1].raw_features).to_pandas()
    read = time.perf_counter() - start
    stats = tfdv.generate_statistics_from_dataframe(frame, tfdv.StatsOptions())
    return {"rows": int(stats.datasets[0].num_examples), "read_seconds": round(read, 2)}


def job_monitor(log: str, root: str, out: str) -> Dict:
    from prodml.components.monitor.executor import run_monitor

    result = run_monitor(log, os.path.join(root, "registry"), MODEL_NAME, out,
                         metadata_connection=f"sqlite://{os.path.join(root, 'metadata.sqlite')}")
    return {"rows": int(result["rows"]), "retrain": bool(result["retrain"]),
            "drifted_features": len(result.get("drifted_features") or [])}


JOBS = {"tfdv": job_tfdv, "tfdv-dataframe": job_tfdv_dataframe, "monitor": job_monitor}


def _cpu_seconds() -> float:
    import resource

    usage, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime


def run_job(engine: str, log: str, root: str, out: str) -> None:
    import resource

    started = time.perf_counter()
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    import tensorflow_data_validation  # noqa: F401 - every engine imports it: timed apart

    if engine == "monitor":
        import prodml.components.monitor.executor  # noqa: F401
    imported, cpu_imported = time.perf_counter(), _cpu_seconds()
    figures = JOBS[engine](log, root, out)
    seconds = time.perf_counter() - imported
    cpu = _cpu_seconds()
    peak_kb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    print(json.dumps({**figures, "seconds": seconds, "import_seconds": imported - started, "cpu_seconds": cpu,
                      "work_cpu_seconds": cpu - cpu_imported, "peak_rss_kb": peak_kb}))


# ---- the driver ------------------------------------------------------------------------------------

def measure(engine: str, log: str, rows: int, root: str, workdir: str) -> Dict:
    """One job in a fresh process: its time after imports, wall time, CPU time and peak RSS."""
    out = tempfile.mkdtemp(prefix=f"out-{engine}-", dir=workdir)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--job", engine, log, root, out],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} failed on {log}:\n{proc.stderr[-4000:]}")
    inner = json.loads(proc.stdout.strip().splitlines()[-1])
    if inner["rows"] != rows:
        raise RuntimeError(f"{engine} counted {inner['rows']} rows in {log}, which has {rows}")
    return {"engine": engine, "rows": rows, "seconds": round(inner["seconds"], 2), "wall": round(wall, 2),
            "import_seconds": round(inner["import_seconds"], 2), "cpu_seconds": round(inner["cpu_seconds"], 1),
            "work_cpu_seconds": round(inner["work_cpu_seconds"], 2),
            "peak_rss_mb": round(inner["peak_rss_kb"] / 1024, 1),
            **{k: v for k, v in inner.items() if k in ("read_seconds", "retrain", "drifted_features")}}


def percentile(values: List[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a few measurements."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


def summarise(runs: List[Dict]) -> List[Dict]:
    """One row per (rows, engine): median, p90, min and max of the times; the largest peak memory."""
    groups: Dict[tuple, List[Dict]] = {}
    for r in runs:
        groups.setdefault((r["rows"], r["engine"]), []).append(r)
    summary = []
    for (rows, engine), group in groups.items():
        seconds = [r["seconds"] for r in group]
        median = statistics.median(seconds)
        summary.append({"engine": engine, "rows": rows, "runs": len(group), "seconds": round(median, 2),
                        "seconds_p90": percentile(seconds, 90), "seconds_min": min(seconds),
                        "seconds_max": max(seconds), "wall": round(statistics.median(r["wall"] for r in group), 2),
                        "rows_per_second": round(rows / median, 1),
                        "work_cpu_seconds": round(statistics.median(r["work_cpu_seconds"] for r in group), 2),
                        "cores": round(statistics.median(r["cpu_seconds"] / r["wall"] for r in group), 2),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in group)})
    return summary


def ratios(runs: List[Dict]) -> List[Dict]:
    """Per size and engine: time / the baseline's time, paired run by run (the i-th run of each)."""
    out = []
    for rows in dict.fromkeys(r["rows"] for r in runs):
        base = [r for r in runs if r["rows"] == rows and r["engine"] == BASELINE]
        for engine in dict.fromkeys(r["engine"] for r in runs if r["engine"] != BASELINE):
            mine = [r for r in runs if r["rows"] == rows and r["engine"] == engine]
            pairs = list(zip(mine, base))
            if not pairs:
                continue
            inner = [m["seconds"] / b["seconds"] for m, b in pairs]
            wall = [m["wall"] / b["wall"] for m, b in pairs]
            cpu = [m["work_cpu_seconds"] / b["work_cpu_seconds"] for m, b in pairs]
            out.append({"rows": rows, "engine": engine, "baseline": BASELINE, "pairs": len(pairs),
                        "x_baseline": round(statistics.median(inner), 2), "x_baseline_min": round(min(inner), 2),
                        "x_baseline_max": round(max(inner), 2), "x_baseline_cpu": round(statistics.median(cpu), 2),
                        "x_baseline_wall": round(statistics.median(wall), 2)})
    return out


def table(summary: List[Dict], ratio_rows: List[Dict]) -> str:
    by = {(r["rows"], r["engine"]): r for r in ratio_rows}
    lines = [f"| rows | engine | seconds (median, p90, min–max) | rows/s | × {BASELINE} (min–max) | CPU s "
             f"| × {BASELINE} CPU | wall (s) | peak RSS (MB) |", "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        r = by.get((s["rows"], s["engine"]))
        x = f"{r['x_baseline']} ({r['x_baseline_min']}–{r['x_baseline_max']})" if r else "1"
        lines.append(f"| {s['rows']:,} | {s['engine']} | {s['seconds']:.1f} ({s['seconds_p90']:.1f}, "
                     f"{s['seconds_min']:.1f}–{s['seconds_max']:.1f}) | {s['rows_per_second']:,.0f} | {x} | "
                     f"{s['work_cpu_seconds']:.1f} | {r['x_baseline_cpu'] if r else 1} | {s['wall']:.1f} | "
                     f"{s['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        run_job(*sys.argv[2:6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--root", default="", help="a prodml home with a pushed chicago-taxi model (and MLMD)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "prodml-monitor-bench"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="runs of every engine at every size")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    root = os.path.abspath(args.root) if args.root else os.path.join(args.workdir, "home")
    if not args.root:
        train_model(root)
    runs, logs, load_start = [], {}, os.getloadavg()
    for rows in args.rows:
        log = make_log(rows, args.seed, root, args.workdir)
        logs[rows] = {"path": log, "bytes": os.path.getsize(log)}
        for _ in range(args.repeat):
            for engine in args.engines:
                runs.append(measure(engine, log, rows, root, args.workdir))
                print(json.dumps(runs[-1]), flush=True)
    summary = summarise(runs)
    ratio_rows = ratios(runs)
    print(table(summary, ratio_rows))
    growth = scaling(summary)
    for g in growth:
        print(f"{g['engine']}: {g['rows_ratio']}x rows -> {g['time_ratio']}x time, {g['memory_ratio']}x peak memory "
              f"({g['peak_rss_mb'][0]:,.0f} -> {g['peak_rss_mb'][1]:,.0f} MB)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"seed": args.seed, "cpus": os.cpu_count(), "repeat": args.repeat, "logs": logs,
                       # other work on the machine: the 1/5/15-minute load averages before and after
                       "load_average": {"start": load_start, "end": os.getloadavg()},
                       "baseline": BASELINE, "target_x_baseline": 1.3, "summary": summary, "ratios": ratio_rows,
                       "scaling": growth, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
