"""Edge formats against the SavedModel: per-row latency side by side in one run, plus size and parity.

The model is prodml's default model on the taxi sample with the transform embedded, exactly what
the export step converts. In one process, for every eval row (one row per call, as an edge device
calls it) the SavedModel's ``serving_default`` (TF 2.16, eager signature call), the TFLite file
(``tf.lite.Interpreter`` with the Flex delegate) and the ONNX file (onnxruntime, CPU) are called one
after the other, so a slow moment of the machine hits all of them alike; ``--repeat`` passes over
the rows are pooled. The same code times the export step's figures for the model card
(``components/export/parity.per_row_latency``). Also reported: one batch of all rows per format,
conversion time, file size, and the largest difference from the SavedModel.

    python benchmarks/edge_export.py [--model-dir DIR --examples-dir DIR] [--rows 500] [--repeat 3]
        [--workdir /tmp/prodml-edge-bench] [--json benchmarks/results/edge_export.json]

Without ``--model-dir`` a model is trained first on ``tests/testdata/taxi_small.csv`` (3 epochs, a minute
or two). Prints a Markdown table and writes the JSON results.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from typing import List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(REPO, "tests", "testdata", "taxi_small.csv")


def train_model(workdir: str) -> str:
    if not os.path.exists(os.path.join(workdir, "model", "saved_model.pb")):
        subprocess.run([sys.executable, os.path.join(REPO, "tests", "serving", "build_model.py"), SOURCE, workdir,
                        os.path.join(workdir, "registry"), "bench", "3"], check=True, stdout=subprocess.DEVNULL)
    return workdir


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir")
    parser.add_argument("--examples-dir")
    parser.add_argument("--rows", type=int, default=500, help="Eval rows, each timed one row per call.")
    parser.add_argument("--repeat", type=int, default=3, help="Passes over the rows (pooled).")
    parser.add_argument("--workdir", default="/tmp/prodml-edge-bench")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "edge_export.json"))
    args = parser.parse_args(argv)

    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    import numpy as np
    import tensorflow as tf

    from prodml.components.common import artifacts, keys
    from prodml.components.export import onnx_format, parity, saved_model, tflite_format
    from prodml.components.export import rows as r

    os.makedirs(args.workdir, exist_ok=True)
    if not args.model_dir:
        train_model(args.workdir)
    model_dir = args.model_dir or os.path.join(args.workdir, "model")
    examples_dir = args.examples_dir or os.path.join(args.workdir, "examples")
    info = artifacts.ModelInfo.read(model_dir)
    rows = r.read_eval_rows(examples_dir, info.raw_features, args.rows)
    n = r.row_count(rows)

    predictors = {"saved_model": saved_model.load(model_dir)}
    formats = {}
    for module in (tflite_format, onnx_format):
        start = time.perf_counter()
        blob = module.convert(model_dir)
        convert_s = time.perf_counter() - start
        path = os.path.join(args.workdir, keys.EDGE_FILES[module.FORMAT])
        with open(path, "wb") as f:
            f.write(blob)
        predictors[module.FORMAT] = module.load(path)
        formats[module.FORMAT] = {"size_bytes": len(blob), "convert_seconds": round(convert_s, 2),
                                  "runtime": module.versions()}

    pooled = {name: [] for name in predictors}
    predictions = {}
    for _ in range(args.repeat):
        timed = parity.per_row_latency(predictors, rows, n, warmup=5)
        for name, figures in timed.items():
            pooled[name].append(figures["per_call_ms"])
            predictions[name] = figures["predictions"]
    batch_ms = {}
    for name, predict in predictors.items():
        predict(rows)
        start = time.perf_counter()
        predict(rows)
        batch_ms[name] = (time.perf_counter() - start) * 1000

    results = {"rows": n, "repeat": args.repeat, "formats": {}, "setup": {
        "model": model_dir, "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(), "tensorflow": tf.__version__}}
    base = np.percentile(np.concatenate(pooled["saved_model"]), 50)
    for name, samples in pooled.items():
        times = np.concatenate(samples)
        entry = {"p50_ms": round(float(np.percentile(times, 50)), 4),
                 "p90_ms": round(float(np.percentile(times, 90)), 4),
                 "p99_ms": round(float(np.percentile(times, 99)), 4),
                 "p50_vs_saved_model": round(float(np.percentile(times, 50) / base), 3),
                 f"batch_{n}_rows_ms": round(batch_ms[name], 2),
                 "max_difference": parity.max_difference(predictions["saved_model"], predictions[name])}
        entry.update(formats.get(name, {}))
        results["formats"][name] = entry

    print(f"| format | p50 per row | p90 | p99 | p50 vs SavedModel | batch of {n} | size | largest difference |")
    print("|---|---|---|---|---|---|---|---|")
    for name, e in results["formats"].items():
        size = f"{e['size_bytes'] / 1e6:.2f} MB" if "size_bytes" in e else ""
        print(f"| {name} | {e['p50_ms']:.2f} ms | {e['p90_ms']:.2f} ms | {e['p99_ms']:.2f} ms | "
              f"{e['p50_vs_saved_model']:.2f}x | {e[f'batch_{n}_rows_ms']:.1f} ms | {size} | "
              f"{e['max_difference']:.2g} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, sort_keys=True)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
