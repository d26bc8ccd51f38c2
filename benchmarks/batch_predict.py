"""Batch prediction throughput and memory: the floor, prodml on Beam and on Spark, and a pandas loop.

On taxi-like rows resampled (with a seed) from the vendored ``data/chicago_taxi/data.csv``, in one run:

  * floor   — one plain Python process: pyarrow's streaming CSV reader, the SavedModel's
              ``serving_default`` signature in batches of 64k rows, a Parquet writer of the rows
              read plus the prediction (the same content as the others write);
  * beam    — ``run_batch_predict(engine="beam")`` with its defaults: DirectRunner, one worker
              thread per core in the job's process (TensorFlow and the model load once);
  * beam-mp — the same with ``--direct_running_mode=multi_processing``: one worker process per core;
  * spark   — ``run_batch_predict(engine="spark")``: Spark local[2] (a warm daemon imports
              TensorFlow while the JVM starts; two Python workers forked from it load the model);
  * pandas  — the usual hand-written loop: ``pd.read_csv(chunksize=...)``, the signature per chunk,
              ``to_parquet`` at the end.

Each measurement runs in a fresh process; its wall time includes starting up and loading the
model, as a user's job would. One untimed run of every engine comes first (page cache; the class
archive a machine's first local Spark job writes, see ``components/batch_predict/spark_jvm.py``).
Every engine then runs ``--repeat`` times, interleaved (floor, beam, ..., floor, beam, ...), so a
slow moment of the machine hits all of them; the table shows the median and the spread. Peak
memory is the largest sum of RSS over the process and its children (Beam workers, the JVM and
Spark's Python workers), sampled every 0.1 s; CPU is the user+system time of the process tree,
so ``cores`` (CPU / wall) shows how many cores an engine kept busy.

    python benchmarks/batch_predict.py --rows 100000 1000000 [--engines floor beam beam-mp spark pandas]
        [--repeat 3] [--model-dir DIR] [--workdir /tmp/prodml-batch-bench] [--seed 42] [--json results.json]

Without ``--model-dir`` a model is trained first on the vendored sample (2 epochs; a few minutes).
The generated data stays in ``--workdir``; nothing large is written to the repository.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from _common import scaling

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "data", "chicago_taxi", "data.csv")
ENGINES = ("floor", "beam", "beam-mp", "spark", "pandas")
FLOOR_BATCH = 65536
PANDAS_CHUNK = 10000


def make_data(rows: int, seed: int, workdir: str) -> str:
    """``rows`` rows drawn with replacement from the vendored sample, as CSV (written once per size and seed)."""
    import numpy as np
    import pandas as pd

    path = os.path.join(workdir, f"taxi-{rows}-{seed}.csv")
    if not os.path.exists(path):
        sample = pd.read_csv(SOURCE, dtype=str, keep_default_na=False)
        picks = np.random.default_rng(seed).integers(0, len(sample), rows)
        sample.iloc[picks].to_csv(path + ".tmp", index=False)
        os.replace(path + ".tmp", path)
    return path


def train_model(workdir: str) -> str:
    model = os.path.join(workdir, "model")
    if not os.path.exists(os.path.join(model, "saved_model.pb")):
        subprocess.run([sys.executable, os.path.join(REPO, "tests", "serving", "build_model.py"), SOURCE, workdir,
                        os.path.join(workdir, "registry"), "bench", "2"], check=True)
    return model


# ---- the measured jobs (each runs in its own process: `batch_predict.py --job ENGINE DATA MODEL OUT`) ----

def job_floor(data: str, model_dir: str, out: str) -> int:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    import tensorflow as tf

    info = json.load(open(os.path.join(model_dir, "prodml_model.json")))
    kinds = info["raw_features"]
    types = {n: {"INT": pa.float64(), "FLOAT": pa.float32(), "BYTES": pa.string()}[k] for n, k in kinds.items()}
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    reader = pcsv.open_csv(data, read_options=pcsv.ReadOptions(block_size=16 << 20),
                           convert_options=pcsv.ConvertOptions(column_types=types, strings_can_be_null=True))
    rows, writer, pending = 0, None, []

    def flush(batches):
        nonlocal writer, rows
        table = pa.Table.from_batches(batches).combine_chunks()
        columns = {}
        for name, kind in kinds.items():
            col = table.column(name).chunk(0) if table.num_rows else table.column(name)
            if kind == "BYTES":
                columns[name] = tf.constant(col.fill_null("").to_numpy(zero_copy_only=False).astype(object))
            else:
                columns[name] = tf.constant(col.to_numpy(zero_copy_only=False))  # nulls become NaN
        prediction = fn(**columns)["predictions"].numpy().reshape(table.num_rows, -1)[:, 0]
        out_table = table.append_column("prediction", pa.array(prediction))
        writer = writer or pq.ParquetWriter(out, out_table.schema)
        writer.write_table(out_table)
        rows += table.num_rows

    size = 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        if size >= FLOOR_BATCH:
            flush(pending)
            pending, size = [], 0
    if pending:
        flush(pending)
    writer.close()
    return rows


def job_pandas(data: str, model_dir: str, out: str) -> int:
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    info = json.load(open(os.path.join(model_dir, "prodml_model.json")))
    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    results = []
    for chunk in pd.read_csv(data, chunksize=PANDAS_CHUNK):
        columns = {}
        for name, kind in info["raw_features"].items():
            if kind == "BYTES":
                columns[name] = tf.constant(chunk[name].fillna("").astype(str).to_numpy(dtype=object))
            else:
                columns[name] = tf.constant(chunk[name].to_numpy(dtype=np.float64 if kind == "INT" else np.float32))
        chunk = chunk.assign(prediction=fn(**columns)["predictions"].numpy().reshape(len(chunk), -1)[:, 0])
        results.append(chunk)
    frame = pd.concat(results)
    frame.to_parquet(out)
    return len(frame)


def job_prodml(engine: str, data: str, model_dir: str, out: str) -> int:
    from prodml.components.batch_predict.executor import run_batch_predict

    beam_args = ["--direct_running_mode=multi_processing"] if engine == "beam-mp" else []
    result = run_batch_predict(data, out, model_dir=model_dir, engine=engine.split("-")[0], progress_seconds=0,
                               max_error_rate=1.0, beam_args=beam_args)
    return result["rows"]


def run_job(engine: str, data: str, model_dir: str, out: str) -> None:
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    start = time.perf_counter()
    if engine == "floor":
        rows = job_floor(data, model_dir, out)
    elif engine == "pandas":
        rows = job_pandas(data, model_dir, out)
    else:
        rows = job_prodml(engine, data, model_dir, out)
    print(json.dumps({"rows": rows, "inner_seconds": time.perf_counter() - start}))


# ---- the driver ------------------------------------------------------------------------------------

def measure(engine: str, data: str, model_dir: str, workdir: str) -> Dict:
    """Runs one job in a fresh process; wall time, CPU time and peak RSS of its whole process tree."""
    import resource

    import psutil

    out = tempfile.mkdtemp(prefix=f"out-{engine}-", dir=workdir)
    out = os.path.join(out, "predictions.parquet" if engine in ("floor", "pandas") else "predictions")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--job", engine, data, model_dir, out],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root, peak, cpu = psutil.Process(proc.pid), 0, {}
    while proc.poll() is None:
        try:
            tree = [root] + root.children(recursive=True)
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            for p in tree:  # children that are never waited for (Spark's JVM) count too
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
        except psutil.Error:
            pass
        time.sleep(0.1)
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} failed:\n{stderr[-3000:]}")
    waited = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu_seconds = max(waited, sum(cpu.values()))
    inner = json.loads(stdout.strip().splitlines()[-1])
    shutil.rmtree(os.path.dirname(out), ignore_errors=True)
    return {"engine": engine, "rows": inner["rows"], "seconds": round(seconds, 2),
            "rows_per_second": round(inner["rows"] / seconds, 1), "cpu_seconds": round(cpu_seconds, 1),
            "peak_rss_mb": round(peak / 2 ** 20, 1)}


def summarise(runs: List[Dict]) -> List[Dict]:
    """One row per (rows, engine): the median run's figures and the spread of wall times."""
    import statistics

    groups: Dict[tuple, List[Dict]] = {}
    for r in runs:
        groups.setdefault((r["rows"], r["engine"]), []).append(r)
    summary = []
    for (rows, engine), group in groups.items():
        seconds = sorted(r["seconds"] for r in group)
        median = statistics.median(seconds)
        summary.append({"engine": engine, "rows": rows, "runs": len(group), "seconds": round(median, 2),
                        "seconds_min": seconds[0], "seconds_max": seconds[-1],
                        "rows_per_second": round(rows / median, 1),
                        "cores": round(statistics.median(r["cpu_seconds"] / r["seconds"] for r in group), 2),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in group)})
    floors = {s["rows"]: s["rows_per_second"] for s in summary if s["engine"] == "floor"}
    pandas = {s["rows"]: s["rows_per_second"] for s in summary if s["engine"] == "pandas"}
    for s in summary:
        if s["rows"] in floors:
            s["x_floor"] = round(s["rows_per_second"] / floors[s["rows"]], 2)
        if s["rows"] in pandas:
            s["x_pandas"] = round(s["rows_per_second"] / pandas[s["rows"]], 2)
    return summary


def table(summary: List[Dict]) -> str:
    lines = ["| rows | engine | seconds (median, min–max) | rows/s | × floor | × pandas loop | cores | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lines.append(f"| {s['rows']:,} | {s['engine']} | {s['seconds']:.1f} ({s['seconds_min']:.1f}–"
                     f"{s['seconds_max']:.1f}) | {s['rows_per_second']:,.0f} | {s.get('x_floor', '-')} | "
                     f"{s.get('x_pandas', '-')} | {s['cores']} | {s['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--job":
        run_job(*sys.argv[2:6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), choices=ENGINES)
    parser.add_argument("--model-dir", default="")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "prodml-batch-bench"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3, help="runs of every engine at every size")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    model_dir = os.path.abspath(args.model_dir) if args.model_dir else train_model(args.workdir)
    runs = []
    for engine in args.engines:
        # Untimed: fills the page cache with each engine's libraries, and on a new machine lets
        # Spark's first local job write the JVM's class archive (spark_jvm), which every later job maps.
        measure(engine, make_data(min(args.rows), args.seed, args.workdir), model_dir, args.workdir)
    for rows in args.rows:
        data = make_data(rows, args.seed, args.workdir)
        for _ in range(args.repeat):
            for engine in args.engines:
                runs.append(measure(engine, data, model_dir, args.workdir))
                print(json.dumps(runs[-1]), flush=True)
    summary = summarise(runs)
    print(table(summary))
    growth = scaling(summary)
    for g in growth:
        print(f"{g['engine']}: {g['rows_ratio']}x rows -> {g['time_ratio']}x time, {g['memory_ratio']}x peak memory")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"seed": args.seed, "cpus": os.cpu_count(), "repeat": args.repeat, "summary": summary,
                       "scaling": growth, "runs": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
