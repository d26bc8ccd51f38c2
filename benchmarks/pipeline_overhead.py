"""Pipeline orchestration overhead: kfp.local components vs the same stages called in one process.

For each repeat, in the same run and on the same data:
  * pipeline  — `prodml.pipelines.local.run_training`: seven kfp.local subprocesses, artifact
                plumbing and MLMD writes;
  * in-process — the same executors (TFDV, TFT, Keras, evaluation, push) called one after the
                other in a single fresh Python process, with no KFP and no MLMD.
Reports per-stage wall time (median over repeats) and the ratio pipeline / in-process.

    python benchmarks/pipeline_overhead.py [--data data/chicago_taxi/data.csv] [--repeats 2] [--json out.json]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("ingest", "validate", "transform", "train", "evaluate", "push")


def in_process(data: str, workdir: str, epochs: int) -> dict:
    """Runs the stages as direct calls in this process; returns seconds per stage and in total."""
    started = time.perf_counter()
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    from prodml.components.evaluate.executor import run_evaluate
    from prodml.components.ingest.executor import run_ingest
    from prodml.components.push.executor import run_push
    from prodml.components.train.executor import run_train
    from prodml.components.transform.executor import run_transform
    from prodml.components.validate.executor import run_validate

    p = lambda name: os.path.join(workdir, name)  # noqa: E731
    calls = {
        "ingest": lambda: run_ingest(data_uri=data, output_dir=p("examples"), label="big_tipper",
                                     drop_columns=["tips"]),
        "validate": lambda: run_validate(examples_dir=p("examples"), statistics_dir=p("statistics"),
                                         schema_dir=p("schema"), anomalies_md_path=p("anomalies.md"),
                                         statistics_html_path=p("statistics.html")),
        "transform": lambda: run_transform(examples_dir=p("examples"), schema_dir=p("schema"),
                                           transform_graph_dir=p("graph"),
                                           transformed_examples_dir=p("transformed")),
        "train": lambda: run_train(transform_graph_dir=p("graph"), transformed_examples_dir=p("transformed"),
                                   model_dir=p("model"), epochs=epochs),
        "evaluate": lambda: run_evaluate(model_dir=p("model"), examples_dir=p("examples"),
                                         evaluation_dir=p("evaluation"), blessing_dir=p("blessing"),
                                         registry_uri=p("registry"), model_name="taxi"),
        "push": lambda: run_push(model_dir=p("model"), blessing_dir=p("blessing"),
                                 evaluation_dir=p("evaluation"), examples_dir=p("examples"),
                                 registry_uri=p("registry"), model_name="taxi"),
    }
    seconds = {}
    for stage in STAGES:
        t = time.perf_counter()
        calls[stage]()
        seconds[stage] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    return seconds


def pipeline(data: str, root: str, epochs: int) -> dict:
    from prodml.pipelines.local import run_training

    with open(os.devnull, "w") as quiet:
        summary = run_training(data, label="big_tipper", model_name="taxi", root=root, progress=quiet,
                               drop_columns=["tips"], epochs=epochs)
    seconds = {stage: summary["step_seconds"][stage] for stage in STAGES}
    seconds["total"] = summary["total_seconds"]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.path.join(REPO, "data", "chicago_taxi", "data.csv"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--json", default="")
    parser.add_argument("--in-process-child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_process_child:
        print(json.dumps(in_process(args.data, args.in_process_child, args.epochs)))
        return

    runs = {"pipeline": [], "in_process": []}
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as work:
            # A fresh process per repeat, so the in-process figure pays its imports once, like a notebook.
            out = subprocess.run([sys.executable, __file__, "--data", args.data, "--epochs", str(args.epochs),
                                  "--in-process-child", work], capture_output=True, text=True, check=True)
            runs["in_process"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        with tempfile.TemporaryDirectory() as root:
            runs["pipeline"].append(pipeline(args.data, root, args.epochs))
        print(f"repeat {i + 1}/{args.repeats}: pipeline {runs['pipeline'][-1]['total']:.1f}s, "
              f"in-process {runs['in_process'][-1]['total']:.1f}s", file=sys.stderr)

    rows = []
    for stage in STAGES + ("total",):
        pipe = [r[stage] for r in runs["pipeline"]]
        direct = [r[stage] for r in runs["in_process"]]
        rows.append({"stage": stage, "pipeline_median_s": statistics.median(pipe),
                     "pipeline_min_s": min(pipe), "pipeline_max_s": max(pipe),
                     "in_process_median_s": statistics.median(direct),
                     "ratio": statistics.median(pipe) / statistics.median(direct)})
    print("| stage | kfp.local pipeline (median, min–max) | in-process (median) | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['stage']} | {r['pipeline_median_s']:.1f} s ({r['pipeline_min_s']:.1f}–{r['pipeline_max_s']:.1f}) "
              f"| {r['in_process_median_s']:.1f} s | {r['ratio']:.2f}× |")
    print(f"\n{args.repeats} repeats, {args.epochs} epochs, data {os.path.relpath(args.data, REPO)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "runs": runs, "repeats": args.repeats}, f, indent=2)


if __name__ == "__main__":
    main()
