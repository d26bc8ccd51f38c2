"""``python -m prodml.serving.demo --rows CSV -- <server flags>``: start the predictor, make one
V1 and one V2 prediction from raw CSV rows, print them, and stop the server.

The V2 request is built from the model's V2 metadata alone (input names and datatypes), as any
client could. Rows are sent raw: empty cells become ``null`` and extra columns (an ID, the
label) ride along, which the server ignores.
"""

import argparse
import csv
import json
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

import httpx

READY_TIMEOUT_SECONDS = 180


def raw_rows(path: str, count: int) -> List[Dict[str, Optional[str]]]:
    """The first ``count`` rows with a missing value in them if possible, else the first rows."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for _, row in zip(range(200), csv.DictReader(f))]
    with_holes = [r for r in rows if any(v == "" for v in r.values())]
    return (with_holes + [r for r in rows if r not in with_holes])[:count]


def typed(value: Optional[str], datatype: str):
    """A CSV cell as the JSON value a V2 input of ``datatype`` takes; empty is null."""
    if value is None or value == "":
        return None
    if datatype == "BYTES":
        return value
    number = float(value)
    return int(number) if datatype.startswith(("INT", "UINT")) else number


def wait_ready(base: str, model: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the model server exited with code {server.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/v2/models/{model}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the model server was not ready after {READY_TIMEOUT_SECONDS}s")


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(prog="python -m prodml.serving.demo")
    parser.add_argument("--rows", required=True, help="CSV file with raw rows")
    parser.add_argument("--count", type=int, default=2)
    args = parser.parse_args(argv[:split])
    server_args = argv[split + 1:]
    model = server_args[server_args.index("--model_name") + 1]
    port = server_args[server_args.index("--http_port") + 1] if "--http_port" in server_args else "8080"
    base = f"http://127.0.0.1:{port}"

    # On SIGTERM, exit through the finally below, which stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    server = subprocess.Popen([sys.executable, "-m", "prodml.serving", *server_args])
    try:
        wait_ready(base, model, server)
        metadata = httpx.get(f"{base}/v2/models/{model}").json()
        inputs = {i["name"]: i["datatype"] for i in metadata["inputs"]}
        rows = raw_rows(args.rows, args.count)
        instances = [{k: typed(v, inputs.get(k, "BYTES")) for k, v in row.items()} for row in rows]
        print(f"\nServing {model} version {metadata.get('versions', ['?'])[-1]} at {base}")
        print("Raw rows sent (empty cells as null, label and extra columns included and ignored):")
        for row in instances:
            print("  " + json.dumps(row))

        v1 = httpx.post(f"{base}/v1/models/{model}:predict", json={"instances": instances}, timeout=30)
        print(f"V1 POST /v1/models/{model}:predict → {v1.status_code} {v1.text}")

        v2_inputs = [{"name": name, "datatype": datatype, "shape": [len(instances)],
                      "data": [row.get(name) for row in instances]} for name, datatype in inputs.items()]
        v2 = httpx.post(f"{base}/v2/models/{model}/infer", json={"inputs": v2_inputs}, timeout=30)
        outputs = v2.json().get("outputs", v2.text) if v2.status_code == 200 else v2.text
        print(f"V2 POST /v2/models/{model}/infer → {v2.status_code} outputs {json.dumps(outputs)}")
        return 0 if v1.status_code == 200 and v2.status_code == 200 else 1
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
