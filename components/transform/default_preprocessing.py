"""The preprocessing_fn prodml generates from the schema when the user gives none.

- numeric feature ``x``: missing values imputed with the mean of the present values, then
  z-scored over all rows (``x``, float32; the statistics are float64, from one analysis pass),
  plus ``x_missing`` (float32, 1.0 where the value was missing);
- string feature ``s``: vocabulary index (int64) of its ``VOCABULARY_SIZE`` most frequent
  values, plus ``OOV_BUCKETS`` buckets for the others; a missing value is ``MISSING_TOKEN``;
- the label keeps its name: int64 class index for classification, float32 for regression.

Raw features are optional (``VarLen``), so they arrive as ``SparseTensor``s where a missing
value is a row without a value. A feature holds one value per row; extra values are ignored.
"""

from typing import Callable, Dict, Mapping, Tuple

import tensorflow as tf
import tensorflow_transform as tft

from prodml.components.common import keys
from prodml.components.common.errors import ConfigError

MISSING_SUFFIX = "_missing"
MISSING_TOKEN = ""
OOV_BUCKETS = 1
VOCABULARY_SIZE = 10_000
UNKNOWN_CLASS = -1


def make_preprocessing_fn(feature_kinds: Mapping[str, str], label_info: Mapping) -> Callable:
    """Returns a ``preprocessing_fn(inputs)`` for raw features of the given kinds.

    ``feature_kinds`` maps every raw feature (label included) to INT, FLOAT or BYTES;
    ``label_info`` is the label block of ``data_version.json``.
    """
    label = label_info["name"]
    features = {name: kind for name, kind in sorted(feature_kinds.items()) if name != label}

    def preprocessing_fn(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        outputs = {}
        for name, kind in features.items():
            if kind == keys.BYTES:
                outputs[name] = tft.compute_and_apply_vocabulary(
                    first_value(inputs[name], MISSING_TOKEN)[0], top_k=VOCABULARY_SIZE,
                    num_oov_buckets=OOV_BUCKETS, vocab_filename=name, name=f"vocabulary_{name}")
            else:
                outputs[name], outputs[name + MISSING_SUFFIX] = _impute_and_scale(inputs[name], name)
        outputs[label] = encode_label(inputs[label], label_info)
        return outputs

    return preprocessing_fn


def encode_label(label: tf.Tensor, label_info: Mapping) -> tf.Tensor:
    """The label as the model learns it: class index (int64) or value (float32).

    A class index is the position of the value in ``label_info["classes"]``: strings and
    integers compare by their string form as ingest wrote it ("7"), floats by value ("7.0"
    is 7.0). A missing or unknown value becomes ``UNKNOWN_CLASS`` (-1), which training
    rejects. A missing regression label becomes NaN, which training rejects too.
    """
    if label_info["problem_type"] == keys.REGRESSION:
        return first_value(_values_as(label, tf.float32), float("nan"))[0]
    names = [str(c) for c in label_info["classes"]]
    if label.dtype.is_floating:
        value = first_value(_values_as(label, tf.float32), float("nan"))[0]
        classes = tf.constant([_as_float(c, label_info["name"]) for c in names], tf.float32)
    else:
        as_text = label if label.dtype == tf.string else _values_as_string(label)
        value = first_value(as_text, MISSING_TOKEN)[0]
        classes = tf.constant(names, dtype=tf.string)
    matches = tf.equal(tf.expand_dims(value, 1), tf.expand_dims(classes, 0))
    index = tf.argmax(tf.cast(matches, tf.int64), axis=1, output_type=tf.int64)
    return tf.where(tf.reduce_any(matches, axis=1), index, tf.constant(UNKNOWN_CLASS, tf.int64))


def _as_float(text: str, label: str) -> float:
    try:
        return float(text)
    except ValueError as e:
        raise ConfigError(f"The label '{label}' is a float feature but its class {text!r} in "
                          "data_version.json is not a number: re-run ingest.") from e


def _impute_and_scale(x: tf.Tensor, name: str) -> Tuple[tf.Tensor, tf.Tensor]:
    # float64 keeps large integers (timestamps, census tracts) exact while computing statistics.
    values = _values_as(x, tf.float64)
    value, present = first_value(values, 0.0)
    # Imputing the mean adds no deviation, so the imputed column's statistics follow from the
    # present values' and all come from one analysis pass. Imputing first and z-scoring after
    # needs a second pass, for which Beam's DirectRunner holds every train row in memory.
    mean = tft.mean(values, name=f"mean_{name}")
    variance = tft.var(values, name=f"var_{name}") * tft.mean(
        tf.cast(present, tf.float64), name=f"present_{name}")
    mean = tf.where(tf.math.is_nan(mean), tf.zeros_like(mean), mean)  # no value at all in train
    std = tf.sqrt(tf.where(tf.math.is_nan(variance), tf.zeros_like(variance), variance))
    deviation = tf.where(present, value - mean, tf.zeros_like(value))
    # As tft.scale_to_z_score: a column without spread keeps its (zero) deviation.
    scaled = tf.where(tf.not_equal(std, 0.0), deviation / std, deviation)
    return tf.cast(scaled, tf.float32), 1.0 - tf.cast(present, tf.float32)


def _values_as(x, dtype: tf.DType):
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.cast(x.values, dtype), x.dense_shape)
    return tf.cast(x, dtype)


def _values_as_string(x):
    if isinstance(x, tf.SparseTensor):
        return tf.SparseTensor(x.indices, tf.strings.as_string(x.values), x.dense_shape)
    return tf.strings.as_string(x)


def first_value(x, default) -> Tuple[tf.Tensor, tf.Tensor]:
    """``(value, present)`` of a raw feature: ``[batch]`` first value of each row or ``default``,
    and ``[batch]`` True where the row has a value. For user preprocessing_fns too."""
    if isinstance(x, tf.SparseTensor):
        batch = x.dense_shape[0]
        first = tf.sparse.slice(x, [0, 0], tf.stack([batch, 1]))
        first = tf.SparseTensor(first.indices, first.values, tf.stack([batch, 1]))
        value = tf.sparse.to_dense(first, default_value=tf.constant(default, x.dtype))
        present = tf.sparse.to_dense(
            tf.SparseTensor(first.indices, tf.ones_like(first.values, tf.bool), first.dense_shape),
            default_value=False)
        return value[:, 0], present[:, 0]
    batch = tf.shape(x)[0]
    value = tf.reshape(x, [batch, -1])[:, 0]
    return value, tf.ones_like(value, tf.bool)
