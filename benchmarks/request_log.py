"""Request-log record throughput: issue 10's records (request id, row, pass-through) vs the records before.

The request log's background thread turns each served micro-batch into JSON lines
(``serving/request_log.py``); its CPU time per row is what logging costs the server (the thread
shares the GIL with the event loop). Measured in one run, on the same 64-row micro-batches of raw
taxi rows (``data/chicago_taxi/data.csv``, the taxi model's 16 raw features with their serving
dtypes), side by side and interleaved round by round:

  * baseline     — the record before issue 10, ``{"timestamp", "model_name", "model_version",
                   "features", "prediction"}``, built as the previous ``RequestLogger._lines`` did;
  * batch-1x64   — today's record, one 64-row request per batch;
  * batch-64x1   — today's record, 64 one-row requests per batch (the most per-request work:
                   each request has its own id);
  * passthrough  — as batch-64x1, with two ``--log_passthrough`` keys per row.

CPU time is this thread's (``time.thread_time``), so other load on the machine does not count.
Prints a Markdown table (min, median and p90 of the per-round microseconds per row, ratios of
the medians and of the minima to the baseline, bytes per row) and writes the JSON results. On a
busy machine the minimum is the steadiest figure.

    .venv/serving/bin/python benchmarks/request_log.py [--rounds 40] [--json benchmarks/results/request_log.json]
"""

import argparse
import csv
import datetime
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import orjson

from prodml.serving.request_ids import RequestTag, new_request_id
from prodml.serving.request_log import _records, _rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "data", "chicago_taxi", "data.csv")
MODEL_NAME = "chicago-taxi"
BATCH_ROWS = 64
# The taxi model's raw features and their kinds (prodml_model.json of the trained model).
FEATURES = {"company": "BYTES", "dropoff_census_tract": "INT", "dropoff_community_area": "INT",
            "dropoff_latitude": "FLOAT", "dropoff_longitude": "FLOAT", "fare": "FLOAT", "payment_type": "BYTES",
            "pickup_community_area": "INT", "pickup_latitude": "FLOAT", "pickup_longitude": "FLOAT",
            "trip_miles": "FLOAT", "trip_seconds": "INT", "trip_start_day": "INT", "trip_start_hour": "INT",
            "trip_start_month": "INT", "trip_start_timestamp": "INT"}
_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="Interleaved rounds; each formats every batch once.")
    parser.add_argument("--batches", type=int, default=32, help="Distinct 64-row batches per round.")
    parser.add_argument("--json", default=os.path.join(REPO, "benchmarks", "results", "request_log.json"))
    args = parser.parse_args(argv)

    batches = read_batches(args.batches)
    when = datetime.datetime.now(datetime.UTC)
    variants = make_variants(batches, when)
    per_round: Dict[str, List[float]] = {name: [] for name in variants}
    sizes: Dict[str, float] = {}
    for name, fn in variants.items():  # warm-up, and the bytes per row
        sizes[name] = sum(len(fn(i)) for i in range(len(batches))) / (len(batches) * BATCH_ROWS)
    for _ in range(args.rounds):
        for name, fn in variants.items():
            start = time.thread_time()
            for i in range(len(batches)):
                fn(i)
            per_round[name].append((time.thread_time() - start) / (len(batches) * BATCH_ROWS) * 1e6)

    base = statistics.median(per_round["baseline"])
    results = {}
    for name, values in per_round.items():
        ordered = sorted(values)
        median = statistics.median(ordered)
        results[name] = {"us_per_row_min": round(ordered[0], 3), "us_per_row_median": round(median, 3),
                         "us_per_row_p90": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
                         "ratio_to_baseline": round(median / base, 3),
                         "ratio_to_baseline_min": round(ordered[0] / min(per_round["baseline"]), 3),
                         "bytes_per_row": round(sizes[name], 1),
                         "rows_per_cpu_second": round(1e6 / median)}
    print("| records | µs/row (min) | µs/row (median) | µs/row (p90) | × baseline (median) | × baseline (min) "
          "| bytes/row |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['us_per_row_min']:.2f} | {r['us_per_row_median']:.2f} | {r['us_per_row_p90']:.2f} | "
              f"{r['ratio_to_baseline']:.2f} | {r['ratio_to_baseline_min']:.2f} | {r['bytes_per_row']:.0f} |")
    report = {"benchmark": "request_log", "rounds": args.rounds, "batches": args.batches, "batch_rows": BATCH_ROWS,
              "python": sys.version.split()[0], "machine": platform.machine(), "cpus": os.cpu_count(),
              "orjson": orjson.__version__, "results": results}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        print(f"results: {args.json}")
    return 0


def read_batches(count: int) -> List[tuple]:
    """``count`` batches of 64 taxi rows: (columns in serving dtypes, float32 predictions)."""
    rows = []
    with open(DATA, newline="", encoding="utf-8") as f:
        for record in csv.DictReader(f):
            rows.append(record)
            if len(rows) == count * BATCH_ROWS:
                break
    rng = np.random.default_rng(0)
    batches = []
    for b in range(count):
        chunk = rows[b * BATCH_ROWS:(b + 1) * BATCH_ROWS]
        columns = {}
        for name, kind in FEATURES.items():
            values = [r.get(name, "") for r in chunk]
            if kind == "BYTES":
                columns[name] = np.array(values, dtype=object)
            else:
                numbers = [float(v) if v not in ("", None) else np.nan for v in values]
                columns[name] = np.array(numbers, dtype=np.float64 if kind == "INT" else np.float32)
        batches.append((columns, rng.random(BATCH_ROWS).astype(np.float32)))
    return batches


def make_variants(batches: List[tuple], when) -> Dict[str, Callable[[int], bytes]]:
    stamp = when.isoformat(timespec="microseconds")
    whole = [[(RequestTag(new_request_id()), BATCH_ROWS)] for _ in batches]
    single = [[(RequestTag(new_request_id()), 1) for _ in range(BATCH_ROWS)] for _ in batches]
    passthrough = [[(RequestTag(new_request_id(), {"trip_id": [f"trip-{b}-{i}"], "order_ref": [i]}), 1)
                    for i in range(BATCH_ROWS)] for b in range(len(batches))]

    def records(requests):
        return lambda i: b"".join(_records(stamp, MODEL_NAME, 1, batches[i][0], batches[i][1], requests[i]))

    return {"baseline": lambda i: _baseline_lines(when, 1, *batches[i]), "batch-1x64": records(whole),
            "batch-64x1": records(single), "passthrough": records(passthrough)}


def _baseline_lines(when, version, columns, predictions) -> bytes:
    """The record before issue 10, as ``RequestLogger._lines`` built it then."""
    stamp = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = orjson.dumps({"timestamp": stamp, "model_name": MODEL_NAME, "model_version": version})[:-1]
    out = []
    for features, pred in zip(_rows(columns), list(predictions)):
        out.append(head + b',"features":' + orjson.dumps(features, option=_NUMPY) + b',"prediction":'
                   + orjson.dumps(pred, option=_NUMPY) + b"}\n")
    return b"".join(out)


if __name__ == "__main__":
    sys.exit(main())
