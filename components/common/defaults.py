"""Default parameter values, written once.

The CLI, ``run_training()``, the pipeline signature, the component signatures and the
executors take their defaults from here; ``tests/test_defaults.py`` fails when a copy drifts.
"""

from prodml.components.common import keys

EPOCHS = 10
BATCH_SIZE = 256
SEED = 42
TOLERANCE = 0.01
SPLIT_RATIOS = dict(keys.DEFAULT_SPLIT_RATIOS)
# infra_validate: the candidate served by the predictor must be ready (import, load and warm-up)
# within this many seconds, and answer single-row requests at INFRA_CONCURRENCY with a p99
# latency within this many milliseconds. Loose enough for a busy 2-core CI machine: tighten both
# for production.
INFRA_MAX_LOAD_SECONDS = 300.0
INFRA_MAX_P99_MS = 2000.0
INFRA_CONCURRENCY = 8
INFRA_LATENCY_REQUESTS = 200   # single-row requests of the latency check
INFRA_ROWS = 32                # eval rows sent to each protocol (plus their missing-value variants)
INFRA_MAX_DIFFERENCE = 1e-5    # served vs. evaluated prediction, absolute (relative above 1)
# export: an edge format is written only when it predicts every parity row within this absolute
# difference of the SavedModel; per-row latency is the median over the latency rows, one row a call.
EXPORT_MAX_DIFFERENCE = 1e-4
EXPORT_PARITY_ROWS = 256
EXPORT_LATENCY_ROWS = 100
PIPELINE_NAME = "prodml-training"
BATCH_PIPELINE_NAME = "prodml-batch-prediction"  # the ML Metadata pipeline context of batch runs

# Cells read as missing in CSV files, wherever they appear: pandas 2's default NA set
# (pandas 1.5, which TFDV pins, lacks "None").
# ``--na-values`` / the ``na_values`` pipeline parameter replaces it.
NA_VALUES = sorted([
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
])

# monitor: when the served model is retrained, and how its traffic is read. Drift scores are TFDV's
# (Jensen-Shannon divergence for numeric features, L-infinity distance for categorical ones) and the
# population stability index over PSI_BINS training quantile bins; PSI above 0.2 is the usual
# "significant shift" rule of thumb, 0.1 a moderate one.
MONITOR_JS_THRESHOLD = 0.1         # numeric feature drift (TFDV's Jensen-Shannon divergence) above this is drift
MONITOR_LINF_THRESHOLD = 0.1       # categorical feature drift (TFDV's L-infinity distance) above this is drift
MONITOR_PSI_THRESHOLD = 0.2        # population stability index above this is drift too
MONITOR_PSI_BINS = 10
MONITOR_QUALITY_TOLERANCE = 0.02   # live key metric worse than evaluation's by more than this: retrain
MONITOR_MIN_LABELLED_ROWS = 200    # labelled rows needed before live quality decides anything
MONITOR_MIN_LABEL_MATCH_RATE = 0.05  # labels given but fewer traffic rows than this share matched: refuse
MONITOR_NULL_RATE_CHANGE = 0.1     # a feature's missing share moved by more than this (absolute): skew
MONITOR_MALFORMED_NAMED = 5        # malformed log lines named in the report (all are counted)
MONITOR_CHUNK_ROWS = 65536         # rows per streamed Arrow batch: memory stays bounded by this
MONITOR_PIPELINE_NAME = "prodml-monitoring"  # the ML Metadata pipeline context of monitor runs
