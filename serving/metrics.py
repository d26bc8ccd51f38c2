"""Prometheus metrics of the predictor, exported on KServe's ``/metrics`` endpoint.

They sit beside KServe's own ``request_{preprocess,predict,postprocess}_seconds`` histograms
in the default registry (which requests on the fast paths skip: see ``fast_path.py``).
"""

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "prodml_requests_total", "Inference requests by protocol and outcome (ok, invalid, error).",
    ["model_name", "protocol", "outcome"])
LATENCY = Histogram(
    "prodml_request_latency_seconds", "Time from decoded request to encoded response, by protocol.",
    ["model_name", "protocol"],
    buckets=(0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
BATCH_SIZE = Histogram(
    "prodml_batch_size_rows", "Rows per model call (micro-batch size).", ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
BATCH_REQUESTS = Histogram(
    "prodml_batch_requests", "Requests served by one model call.", ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128))
PREDICTIONS = Counter(
    "prodml_predictions_total", "Rows predicted, by model version.", ["model_name", "model_version"])
LOG_DROPPED = Counter(
    "prodml_request_log_dropped_total", "Request log records dropped because the sink fell behind.",
    ["model_name"])
