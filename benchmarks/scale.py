"""The training pipeline at 100k, 1M (and 10M) rows: time and peak memory per step, AUC, and the library floors.

On taxi-like rows resampled (with a seed) from the vendored ``data/chicago_taxi/data.csv``, per size,
in one run:

  * pipeline — ``prodml.pipelines.local.run_training`` as a user runs it (``prodml run training DATA
               --label big_tipper --drop-columns tips --epochs 10``): kfp.local, the default training
               pipeline with every step a user gets (ingest, validate, transform, train, evaluate,
               infra-validate, export, push, deploy), in a fresh process and a fresh ``--root``.
               Per step: wall time (as ``prodml run training`` prints it), rows/s, peak memory.
  * tft floor — ``tft_beam.AnalyzeAndTransformDataset`` alone on the run's own ingest examples
               (``scale_floors.tft_floor``), next to the transform step.
  * fit floor — a bare ``model.fit`` of the default model on the run's own transformed examples,
               for the epochs and batch size the run trained (``scale_floors.fit_floor``), next to train.

Peak memory is the largest sum of RSS over a process tree, sampled every 0.2 s with psutil: kfp.local
runs each step as a subprocess of the pipeline process, so a step's peak is the largest sum over that
subprocess and its children (Beam workers, the model server of infra-validate), attributed to the step
whose ``--function_to_execute`` it runs. ``peak RSS`` in the table is the largest sum over the whole tree
(the pipeline process included). ``cost/row`` growth is (seconds per row at the bigger size) / (at the
smaller one): 1.0 is linear.

    python benchmarks/scale.py [--rows 100000,1000000[,10000000]] [--epochs 10] [--no-floors]
        [--workdir /tmp/prodml-scale-bench] [--seed 42] [--keep] [--reuse] [--json results.json]

The data is written once per size and seed in ``--workdir`` (streamed in chunks: 10M rows is ~1.3 GB
of CSV, never in memory at once) and reused; each run's prodml home (``WORKDIR/home-ROWS``) is
removed after its floors unless ``--keep``. Nothing large is written to the repository.
"""

import argparse
import csv
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "data", "chicago_taxi", "data.csv")
FLOORS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scale_floors.py")
MODEL_NAME = "chicago-taxi"
LABEL, DROPPED = "big_tipper", "tips"
CHUNK_ROWS = 500_000                     # rows drawn and written at a time by make_data
SAMPLE_SECONDS = 0.2
STAGES = ("ingest", "validate", "transform", "train", "evaluate")
STAGE_FLOORS = {"transform": "tft", "train": "fit"}


# ---- the data --------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def source_lines(source: str = SOURCE) -> tuple:
    """``(header, lines)``: the sample's header and its data rows as CSV lines (bytes), as pandas writes them."""
    import numpy as np
    import pandas as pd

    sample = pd.read_csv(source, dtype=str, keep_default_na=False)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")  # pandas' to_csv quoting: QUOTE_MINIMAL
    writer.writerow(sample.columns)
    header = buffer.getvalue().encode()
    lines = []
    for row in sample.itertuples(index=False, name=None):
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        lines.append(buffer.getvalue().encode())
    out = np.empty(len(lines), dtype=object)
    out[:] = lines
    return header, out


def iter_chunks(rows: int, seed: int, chunk_rows: int = CHUNK_ROWS, source: str = SOURCE) -> Iterator[bytes]:
    """The CSV of ``rows`` rows drawn with replacement from ``source``, ``chunk_rows`` rows per piece.

    The header comes first, in its own piece. The rows are the same for any ``chunk_rows``: one
    seeded generator draws the row indices in order (numpy draws the same sequence in pieces).
    """
    import numpy as np

    header, lines = source_lines(source)
    yield header
    rng = np.random.default_rng(seed)
    for start in range(0, rows, chunk_rows):
        picks = rng.integers(0, len(lines), min(chunk_rows, rows - start))
        yield b"".join(lines[picks])


def make_data(rows: int, seed: int, workdir: str, chunk_rows: int = CHUNK_ROWS) -> str:
    """``WORKDIR/taxi-ROWS-SEED.csv``: ``rows`` rows resampled from the vendored sample, written once.

    The same bytes as ``batch_predict.make_data(rows, seed, workdir)`` (which builds it in memory),
    streamed in ``chunk_rows`` pieces and renamed into place when complete.
    """
    path = os.path.join(workdir, f"taxi-{rows}-{seed}.csv")
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            for piece in iter_chunks(rows, seed, chunk_rows):
                f.write(piece)
        os.replace(path + ".tmp", path)
    return path


# ---- measuring a process tree ----------------------------------------------------------------------

_FUNCTION = re.compile(r"--function_to_execute[= ]?(\w+)")


class TreeSampler(threading.Thread):
    """Samples the RSS of a process tree every ``interval`` seconds until ``stop()``.

    ``peak_mb`` is the largest sum over the whole tree; ``step_peak_mb[step]`` the largest sum over
    a child's subtree, the child attributed to the kfp step its command line runs (or to
    ``current_step`` when it names none).
    """

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.current_step: Optional[str] = None
        self.peak_mb = 0.0
        self.step_peak_mb: Dict[str, float] = {}
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        self.join()

    def run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._done.is_set():
            self.sample(root)
            self._done.wait(self.interval)

    def sample(self, root) -> None:
        import psutil

        try:
            total = root.memory_info().rss
            children = root.children()
        except psutil.NoSuchProcess:
            return
        for child in children:
            rss = _tree_rss(child)
            total += rss
            step = self._step_of(child) or self.current_step
            if step:
                self.step_peak_mb[step] = max(self.step_peak_mb.get(step, 0.0), rss / 2**20)
        self.peak_mb = max(self.peak_mb, total / 2**20)

    @staticmethod
    def _step_of(process) -> Optional[str]:
        import psutil

        try:
            match = _FUNCTION.search(" ".join(process.cmdline()))
        except psutil.Error:
            return None
        return match.group(1).replace("_", "-") if match else None


def _tree_rss(process) -> int:
    import psutil

    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_measured(command: List[str], log_path: str, on_line=None) -> Dict:
    """Runs ``command``, its stderr to ``log_path`` (each line also to ``on_line(line, sampler)``).

    Returns ``{"wall", "peak_rss_mb", "step_peak_rss_mb", "stdout"}``; raises on a non-zero exit.
    """
    start = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        stdout: List[str] = []
        reader = threading.Thread(target=lambda: stdout.extend(proc.stdout), daemon=True)
        reader.start()
        for line in proc.stderr:
            log.write(line)
            log.flush()
            if on_line:
                on_line(line, sampler)
        proc.wait()
        reader.join()
        sampler.stop()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8") as f:
            tail = f.read()[-4000:]
        raise RuntimeError(f"{' '.join(command[:4])} ... failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    return {"wall": round(wall, 2), "peak_rss_mb": round(sampler.peak_mb, 1),
            "step_peak_rss_mb": {k: round(v, 1) for k, v in sampler.step_peak_mb.items()},
            "stdout": "".join(stdout)}


# ---- the pipeline and the floors ------------------------------------------------------------------

def job_pipeline(data: str, root: str, out: str, epochs: str) -> None:
    """In the measured process: one training run as a user runs it; its summary to ``out``."""
    from prodml.pipelines.local import run_training

    summary = run_training(data, LABEL, MODEL_NAME, root=root, progress=sys.stderr,
                           drop_columns=[DROPPED], epochs=int(epochs))
    with open(out, "w", encoding="utf-8") as f:
        json.dump(summary, f, default=str)


_STARTED = re.compile(r"▶ ([\w-]+)")
_FINISHED = re.compile(r"[✔✘] ([\w-]+) \w+ in ")


def _follow_steps(line: str, sampler: TreeSampler) -> None:
    """Keeps the sampler's current step from ``prodml run training``'s progress lines; echoes them."""
    started, finished = _STARTED.search(line), _FINISHED.search(line)
    if started:
        sampler.current_step = started.group(1)
    elif finished:
        sampler.current_step = None
    if started or finished:
        print("   ", line.rstrip(), flush=True)


def run_folder(root: str) -> str:
    """The one run folder under ``ROOT/pipeline_root``."""
    base = os.path.join(root, "pipeline_root")
    runs = sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)))
    if len(runs) != 1:
        raise RuntimeError(f"expected one run in {base}, found {runs}")
    return os.path.join(base, runs[0])


def measure_pipeline(data: str, rows: int, epochs: int, workdir: str) -> Dict:
    """One training run in a fresh process and a fresh root; its steps' seconds and peaks, AUC, paths."""
    root = os.path.join(workdir, f"home-{rows}")
    shutil.rmtree(root, ignore_errors=True)
    out = os.path.join(workdir, f"summary-{rows}.json")
    measured = run_measured([sys.executable, os.path.abspath(__file__), "--job", "pipeline", data, root, out,
                             str(epochs)], os.path.join(workdir, f"pipeline-{rows}.log"), _follow_steps)
    with open(out, encoding="utf-8") as f:
        summary = json.load(f)
    run = run_folder(root)
    model_info = _read_json(os.path.join(run, "train", "model", "prodml_model.json"))
    steps = summary.get("step_seconds") or {}
    return {"rows": rows, "root": root, "run": run, "wall": measured["wall"],
            "total_seconds": summary.get("total_seconds"), "step_seconds": steps,
            "steps": list(steps), "peak_rss_mb": measured["peak_rss_mb"],
            "step_peak_rss_mb": measured["step_peak_rss_mb"],
            "auc": (summary.get("metrics") or {}).get("auc"), "metrics": summary.get("metrics"),
            "blessed": summary.get("blessed"), "row_counts": (summary.get("data_version") or {}).get("row_counts"),
            "epochs_run": len((model_info.get("history") or {}).get("loss", [])) or None,
            "train_params": model_info.get("params"), "pushed": summary.get("pushed")}


def measure_floor(name: str, run: str, rows: int, workdir: str) -> Dict:
    """One floor (``tft`` or ``fit``) in a fresh process on the outputs of the pipeline run ``run``."""
    scratch = tempfile.mkdtemp(prefix=f"floor-{name}-", dir=workdir)
    if name == "tft":
        args = [os.path.join(run, "ingest", "examples"), os.path.join(run, "validate", "schema"), scratch]
    else:
        args = [os.path.join(run, "transform", "transform_graph"), os.path.join(run, "transform",
                "transformed_examples"), os.path.join(run, "train", "model"), scratch]
    try:
        measured = run_measured([sys.executable, FLOORS, name, *args],
                                os.path.join(workdir, f"floor-{name}-{rows}.log"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    inner = json.loads(measured["stdout"].strip().splitlines()[-1])
    return {**inner, "floor": name, "wall": measured["wall"], "peak_rss_mb": measured["peak_rss_mb"]}


def _read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---- the figures ----------------------------------------------------------------------------------

def summarise(run: Dict, floors: Dict[str, Dict]) -> Dict:
    """The figures of one size: seconds, rows/s and peak per stage, other steps, floors and their ratios."""
    rows, steps = run["rows"], run["step_seconds"]
    total = run["total_seconds"] or run["wall"]
    stages = {}
    for stage in STAGES:
        seconds = steps.get(stage)
        stage_row = {"seconds": seconds, "rows_per_second": round(rows / seconds, 1) if seconds else None,
                     "peak_rss_mb": run["step_peak_rss_mb"].get(stage)}
        floor = floors.get(STAGE_FLOORS.get(stage, ""))
        if floor and floor.get("seconds") and seconds:
            stage_row.update(floor_seconds=round(floor["seconds"], 2), x_floor=round(seconds / floor["seconds"], 2))
        stages[stage] = stage_row
    others = {step: seconds for step, seconds in steps.items() if step not in STAGES}
    return {"rows": rows, "total_seconds": round(total, 2), "rows_per_second": round(rows / total, 1),
            "stages": stages, "other_steps": others, "other_seconds": round(sum(others.values()), 2),
            "other_peak_rss_mb": {s: run["step_peak_rss_mb"].get(s) for s in others},
            "peak_rss_mb": run["peak_rss_mb"], "auc": run["auc"], "epochs_run": run["epochs_run"],
            "floors": {name: {k: v for k, v in f.items() if k != "floor"} for name, f in floors.items()}}


def scaling(summary: Sequence[Dict]) -> List[Dict]:
    """Between neighbouring sizes: rows ratio, cost per row ratio (1.0 = linear), peak memory ratio."""
    out = []
    ordered = sorted(summary, key=lambda s: s["rows"])
    for small, big in zip(ordered, ordered[1:]):
        per_row = (big["total_seconds"] / big["rows"]) / (small["total_seconds"] / small["rows"])
        stage_per_row = {}
        for stage in STAGES:
            a, b = small["stages"][stage]["seconds"], big["stages"][stage]["seconds"]
            if a and b:
                stage_per_row[stage] = round((b / big["rows"]) / (a / small["rows"]), 2)
        stage_memory = {}
        for stage in STAGES:
            a, b = small["stages"][stage]["peak_rss_mb"], big["stages"][stage]["peak_rss_mb"]
            if a and b:
                stage_memory[stage] = round(b / a, 2)
        out.append({"rows": [small["rows"], big["rows"]], "rows_ratio": round(big["rows"] / small["rows"], 1),
                    "time_ratio": round(big["total_seconds"] / small["total_seconds"], 2),
                    "cost_per_row_ratio": round(per_row, 2), "stage_cost_per_row_ratio": stage_per_row,
                    "peak_rss_mb": [small["peak_rss_mb"], big["peak_rss_mb"]],
                    "memory_ratio": round(big["peak_rss_mb"] / small["peak_rss_mb"], 2),
                    "stage_memory_ratio": stage_memory})
    return out


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def _memory(mb: Optional[float]) -> str:
    if mb is None:
        return "–"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _stage_cell(stage: Dict) -> str:
    cell = _duration(stage["seconds"])
    if "x_floor" in stage:
        cell += f" (floor {_duration(stage['floor_seconds'])}, ×{stage['x_floor']})"
    return cell


def table(summary: Sequence[Dict]) -> str:
    """The README's table: per size, total and per-stage wall time (with floors), peak RSS, AUC, rows/s."""
    lines = ["| rows | total | ingest | validate | transform | train | evaluate | other steps | peak RSS | AUC "
             "| rows/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        auc = f"{s['auc']:.4f}" if s["auc"] is not None else "–"
        cells = [f"{s['rows']:,}", f"**{_duration(s['total_seconds'])}**",
                 *(_stage_cell(s["stages"][stage]) for stage in STAGES), _duration(s["other_seconds"]),
                 _memory(s["peak_rss_mb"]), auc, f"{s['rows_per_second']:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(summary: Sequence[Dict]) -> str:
    """Peak RSS per step (MB) and rows/s per stage."""
    others = list(dict.fromkeys(step for s in summary for step in s["other_steps"]))
    head = [*STAGES, *others]
    lines = ["| rows | " + " | ".join(f"{step} peak" for step in head) + " | "
             + " | ".join(f"{stage} rows/s" for stage in STAGES) + " |",
             "|---" * (1 + len(head) + len(STAGES)) + "|"]
    for s in summary:
        peaks = [s["stages"][st]["peak_rss_mb"] for st in STAGES] + [s["other_peak_rss_mb"].get(o) for o in others]
        speeds = [s["stages"][st]["rows_per_second"] for st in STAGES]
        lines.append(f"| {s['rows']:,} | " + " | ".join(_memory(p) for p in peaks) + " | "
                     + " | ".join(f"{v:,.0f}" if v else "–" for v in speeds) + " |")
    return "\n".join(lines)


def scaling_lines(growth: Sequence[Dict]) -> List[str]:
    return [f"{g['rows'][0]:,} -> {g['rows'][1]:,} rows ({g['rows_ratio']}x): {g['time_ratio']}x time, cost per row "
            f"x{g['cost_per_row_ratio']} (1.0 = linear; per stage {g['stage_cost_per_row_ratio']}), peak memory "
            f"x{g['memory_ratio']} ({g['peak_rss_mb'][0]:,.0f} -> {g['peak_rss_mb'][1]:,.0f} MB; per stage "
            f"{g['stage_memory_ratio']})" for g in growth]


# ---- the driver ------------------------------------------------------------------------------------

def parse_rows(text: str) -> List[int]:
    """``"100000,1000000"`` (or ``100k,1M``) -> ``[100000, 1000000]``."""
    rows = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1].lower(), 1)
        rows.append(int(float(part[:-1] if scale > 1 else part) * scale))
    if not rows or min(rows) < 1000:
        raise argparse.ArgumentTypeError(f"--rows {text!r}: give sizes of at least 1000 rows, e.g. 100000,1000000")
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--job":
        from prodml.components.common.logs import silence_tensorflow

        silence_tensorflow()
        job_pipeline(*argv[2:6])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=parse_rows, default=[100_000, 1_000_000],
                        help="comma-separated sizes (default 100000,1000000; add 10000000 for the 10M run)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--no-floors", action="store_true", help="skip the tft and fit floors")
    parser.add_argument("--floors-max-rows", type=int, default=1_000_000,
                        help="measure the floors only up to this size (a 10M TFT floor alone takes many minutes)")
    parser.add_argument("--add", action="store_true",
                        help="keep the sizes already in --json that --rows does not list (to add 10M to a 1M run)")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "prodml-scale-bench"))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--keep", action="store_true", help="keep each run's prodml home (WORKDIR/home-ROWS)")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse WORKDIR/run-ROWS.json and its home (from a run with --keep) instead of "
                             "running the pipeline again: to redo only the floors")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    load_start, runs, summary, data = os.getloadavg(), [], [], {}
    if args.add and args.json and os.path.exists(args.json):
        earlier = _read_json(args.json)
        kept = [s["rows"] for s in earlier["summary"] if s["rows"] not in args.rows]
        summary = [s for s in earlier["summary"] if s["rows"] in kept]
        runs = [r for r in earlier["runs"] if r["rows"] in kept]
        data = {int(k): v for k, v in earlier["data"].items() if int(k) in kept}
        args.rows = sorted(set(args.rows) | set(kept))
    todo = [rows for rows in args.rows if rows not in data]
    for rows in todo:
        start = time.perf_counter()
        path = make_data(rows, args.seed, args.workdir)
        data[rows] = {"path": path, "bytes": os.path.getsize(path), "seconds": round(time.perf_counter() - start, 1)}
        print(f"{rows:,} rows: {path} ({data[rows]['bytes'] / 2**20:,.0f} MB)", flush=True)
        saved = os.path.join(args.workdir, f"run-{rows}.json")
        if args.reuse and os.path.exists(saved):  # the pipeline's figures of an earlier invocation, its home kept
            run = _read_json(saved)
        else:
            run = measure_pipeline(path, rows, args.epochs, args.workdir)
            with open(saved, "w", encoding="utf-8") as f:
                json.dump(run, f, indent=2)
        floors = {}
        if not args.no_floors and rows <= args.floors_max_rows:
            for name in ("tft", "fit"):
                try:
                    floors[name] = measure_floor(name, run["run"], rows, args.workdir)
                except RuntimeError as e:  # a floor that fails (e.g. out of memory) leaves the pipeline's figures
                    floors[name] = {"floor": name, "error": str(e)[-2000:]}
                    print(f"    {name} floor failed: {str(e)[:300]}", flush=True)
                    continue
                print(f"    {name} floor: {floors[name]['seconds']:.1f} s", flush=True)
        if not args.keep:
            shutil.rmtree(run["root"], ignore_errors=True)
        runs.append({**run, "floors": floors})
        summary.append(summarise(run, floors))
        summary.sort(key=lambda s: s["rows"])  # sizes kept by --add sit among the new ones
        print(json.dumps(summary[-1]), flush=True)
        if args.json:  # after every size, so a failing bigger size keeps the smaller ones
            write_results(args, data, runs, summary, load_start, complete=rows == todo[-1])
    print(table(summary))
    print()
    print(memory_table(summary))
    for line in scaling_lines(scaling(summary)):
        print(line)
    return 0


def write_results(args, data: Dict, runs: List[Dict], summary: List[Dict], load_start, complete: bool) -> None:
    tmp = args.json + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"complete": complete, "rows": args.rows, "seed": args.seed, "epochs": args.epochs,
                   "cpus": os.cpu_count(), "data": data, "steps": runs[0]["steps"] if runs else [],
                   # other work on the machine: the 1/5/15-minute load averages before and after
                   "load_average": {"start": load_start, "end": os.getloadavg()},
                   "summary": summary, "scaling": scaling(summary), "table": table(summary),
                   "memory_table": memory_table(summary), "runs": runs}, f, indent=2)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    sys.exit(main())
