"""The SavedModel's raw-feature signature: the reference every edge format must reproduce."""

from typing import Callable, Mapping

import numpy as np

from prodml.components.common import keys

Predict = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def load(model_dir: str) -> Predict:
    """``predict(rows) -> predictions`` through ``keys.RAW_SIGNATURE`` of the SavedModel in ``model_dir``."""
    import tensorflow as tf

    signature = tf.saved_model.load(model_dir).signatures[keys.RAW_SIGNATURE]

    def predict(rows: Mapping[str, np.ndarray]) -> np.ndarray:
        return signature(**{name: tf.constant(values) for name, values in rows.items()})[keys.PREDICTIONS].numpy()

    return predict
