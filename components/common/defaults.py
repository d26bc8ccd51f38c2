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
