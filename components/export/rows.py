"""Eval rows as the raw-feature signature takes them: one ``[n]`` array per raw feature.

Numbers are float64 (INT) or float32 (FLOAT) with NaN where the value is missing; strings are
bytes with ``b""`` where missing, as the SavedModel's ``serving_default`` signature expects.
"""

from typing import Dict, Mapping

import numpy as np

from prodml.components.common import dataio, keys
from prodml.components.common.errors import InputDataError

NUMPY_DTYPES = {keys.INT: np.float64, keys.FLOAT: np.float32, keys.BYTES: object}


def read_eval_rows(examples_dir: str, raw_features: Mapping[str, str], limit: int) -> Dict[str, np.ndarray]:
    """The first ``limit`` rows of the eval split of ``examples_dir``, one array per raw feature."""
    import tensorflow as tf

    parsed_dtypes = {keys.INT: tf.int64, keys.FLOAT: tf.float32, keys.BYTES: tf.string}
    spec = {name: tf.io.RaggedFeature(parsed_dtypes[kind]) for name, kind in raw_features.items()}
    files = dataio.split_files(examples_dir, keys.EVAL)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit).batch(limit)
    try:
        batch = next(iter(dataset), None)
        if batch is None:
            raise InputDataError(f"The eval split of {examples_dir} has no example: export checks parity on eval "
                                 "rows. Give the examples artifact that ingest wrote.")
        parsed = tf.io.parse_example(batch, spec)
    except tf.errors.InvalidArgumentError as e:
        raise InputDataError(f"The eval examples of {examples_dir} do not match the model's raw features "
                             f"({e.message.splitlines()[0]}). Give the examples the model was trained on.") from e
    return {name: _first_values(parsed[name], kind) for name, kind in sorted(raw_features.items())}


def _first_values(ragged, kind: str) -> np.ndarray:
    present = ragged.row_lengths().numpy() > 0
    first = ragged.to_tensor(default_value=b"" if kind == keys.BYTES else 0, shape=[None, 1]).numpy()[:, 0]
    if kind == keys.BYTES:
        return np.array([value if has else b"" for value, has in zip(first, present)], dtype=object)
    return np.where(present, first.astype(NUMPY_DTYPES[kind]), np.nan).astype(NUMPY_DTYPES[kind])


def row_count(rows: Mapping[str, np.ndarray]) -> int:
    """How many rows ``rows`` holds."""
    return len(next(iter(rows.values()))) if rows else 0


def take(rows: Mapping[str, np.ndarray], start: int, stop: int) -> Dict[str, np.ndarray]:
    """Rows ``start`` to ``stop`` (exclusive) of every feature."""
    return {name: values[start:stop] for name, values in rows.items()}
