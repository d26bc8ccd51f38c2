"""Prediction drift: the served score distribution against the one the evaluation saw.

evaluate does not keep its predictions, so the reference is recomputed: the served version's
``serving_examples`` signature over the eval split that evaluation.json names (``examples_uri``).
Scores are a numeric feature ``prediction`` (P(positive class) for binary, the value for
regression; TFDV's Jensen-Shannon divergence and PSI over the eval quantile bins) or, for
multiclass, the predicted class as a categorical feature (TFDV's L-infinity distance and PSI).
"""

import functools
from typing import Optional

import numpy as np
import pyarrow as pa

from prodml.components.common import dataio, keys
from prodml.components.common.saved_models import load_examples_signature

PREDICTION = "prediction"
_BATCH = 1024


def prediction_column(predictions: np.ndarray, problem_type: str) -> pa.Array:
    """The scores as one flat column: numbers, or the predicted class index as text (multiclass)."""
    if problem_type == keys.MULTICLASS:
        known = np.isfinite(predictions).all(axis=1)
        classes = np.argmax(np.nan_to_num(predictions, nan=-1.0), axis=1).astype(str).astype(object)
        return pa.array(np.where(known, classes, None), pa.string())
    values = np.asarray(predictions, np.float64)
    return pa.array(values, pa.float64(), mask=~np.isfinite(values))


@functools.lru_cache(maxsize=4)
def eval_predictions(version_uri: str, examples_uri: str) -> Optional[np.ndarray]:
    """The version's predictions on the eval split of ``examples_uri``; None when the split is gone.

    Kept per (version, examples) in the process: a scheduler or a test that monitors the same version
    again does not load the SavedModel again. The array is read-only.
    """
    import tensorflow as tf

    files = dataio.split_files(examples_uri, keys.EVAL) if examples_uri and dataio.exists(examples_uri) else []
    if not files:
        return None
    predict = load_examples_signature(version_uri)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_BATCH)
    values = np.concatenate([predict(batch)[keys.PREDICTIONS].numpy() for batch in dataset]).astype(np.float64)
    values.setflags(write=False)
    return values
