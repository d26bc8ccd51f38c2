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
PIPELINE_NAME = "prodml-training"
BATCH_PIPELINE_NAME = "prodml-batch-prediction"  # the ML Metadata pipeline context of batch runs

# Cells read as missing in CSV files, wherever they appear: pandas 2's default NA set
# (pandas 1.5, which TFDV pins, lacks "None").
# ``--na-values`` / the ``na_values`` pipeline parameter replaces it.
NA_VALUES = sorted([
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
])
