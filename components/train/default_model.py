"""The model prodml trains when the user gives no trainer module.

Integer features with a vocabulary (an IntDomain from 0, as ``tft.compute_and_apply_vocabulary``
annotates) go through embeddings; every other feature goes in as its number plus, for a number
with more than two distinct values, its piecewise-linear encoding over ``bins`` quantile bins of
the train split. Then an MLP with dropout: sigmoid + binary cross-entropy for binary, softmax +
cross-entropy for multiclass, linear + mean squared error for regression.

It works on any tabular data without tuning:

- **Scale-free regression.** The network learns the label standardised with the train split's
  mean and standard deviation; a final ``Rescaling`` layer maps it back, so the model (and the
  exported SavedModel, online and in batch) predicts in the label's own units.
- **Class priors.** The output bias starts at the log-odds (binary) or log-frequencies
  (multiclass) of the train classes, so training starts from the base rate.
- **Numbers by rank.** The bins make the network see where a value stands among the train
  values, whatever its scale, skew and outliers, as gradient-boosted trees do.
- **Training length by data size.** Up to ``epochs`` rounds, each ending with an evaluation on
  the eval split. A round is one pass over the train split, or ``min_round_steps`` steps when
  the split is smaller, so 150 rows get as many steps as 15,000; on a big split a round is
  ``max_round_rows`` rows (of the shuffled, repeated split) and its evaluation the first
  ``max_validation_rows`` eval rows, so a million rows train in minutes, not a quarter of an
  hour. Early stopping on the eval loss restores the best round's weights; the learning rate
  halves when the eval loss stalls.
"""

import dataclasses
import math
from typing import Any, Dict, List, Optional

from prodml.components.common import keys
from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import RowProgress
from prodml.components.train import progress

HYPERPARAMETERS = {
    "hidden_units": [128, 64],
    "dropout": 0.1,
    "learning_rate": 0.005,
    "max_embedding_dim": 16,
    "early_stopping_patience": 4,
    "min_round_steps": 60,
    # Both bounds leave training on up to ~130k train rows (~160k rows in all) as it was.
    "max_round_rows": 131_072,
    "max_validation_rows": 65_536,
    "bins": 16,
}

# Rows of the train split whose numeric values give the bins' edges.
QUANTILE_ROWS = 200_000
# Rows per batch of the train statistics pass.
STATS_BATCH_SIZE = 8192

# Keep a class frequency away from 0 so that its log (the initial bias) stays finite.
_MIN_FREQUENCY = 1e-4


@dataclasses.dataclass(frozen=True)
class TrainStats:
    """What one pass over the train split tells about the label and the numeric features.

    Attributes:
        rows: train examples.
        mean: the label's mean (regression), else 0.
        std: the label's standard deviation (regression; 1 when it is constant), else 1.
        class_counts: examples per class index (classification), else None.
        bin_edges: per numeric feature, the ascending quantiles that bound its bins.
    """

    rows: int
    mean: float = 0.0
    std: float = 1.0
    class_counts: Optional[List[int]] = None
    bin_edges: Dict[str, List[float]] = dataclasses.field(default_factory=dict)


def run_fn(fn_args):
    """Builds and fits the default model; see ``FnArgs`` for the contract."""
    import tf_keras

    hp = hyperparameters(fn_args.hyperparameters)
    stats = train_stats(fn_args, int(hp["bins"]))  # KFP passes hyperparameters as floats
    plan = schedule(stats.rows, fn_args.batch_size, fn_args.epochs, hp)
    model = build_model(fn_args, hp, stats)
    callbacks = [
        tf_keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True,
                                         patience=hp["early_stopping_patience"]),
        # min_delta 0: the eval loss is in the label's units, whose scale is anyone's.
        tf_keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, min_delta=0,
                                             patience=max(1, hp["early_stopping_patience"] // 2)),
        progress.round_logger(plan["rounds"]),
    ]
    train = fn_args.dataset(fn_args.train_files, shuffle=True).repeat()
    validation = fn_args.dataset(fn_args.eval_files, rows=plan["validation_rows"])
    model.fit(train, steps_per_epoch=plan["round_steps"], epochs=plan["rounds"],
              validation_data=validation, callbacks=callbacks, verbose=0)
    return model


def hyperparameters(given: Dict[str, Any]) -> Dict[str, Any]:
    """The defaults updated with ``given``; an unknown name is a ConfigError."""
    unknown = sorted(set(given or {}) - set(HYPERPARAMETERS))
    if unknown:
        raise ConfigError(f"Unknown hyperparameters {unknown} for the default model; known: "
                          f"{sorted(HYPERPARAMETERS)}. Give a trainer module to use others.")
    return {**HYPERPARAMETERS, **(given or {})}


def schedule(rows: int, batch_size: int, epochs: int, hp: Dict[str, Any]) -> Dict[str, int]:
    """``{"round_steps", "rounds", "validation_rows"}``: the training length for ``rows`` train examples.

    Up to ``epochs`` rounds, each ending with an evaluation on the first ``validation_rows``
    eval rows (``max_validation_rows``: the whole eval split unless it is bigger). A round is
    one pass over the train split, but at least ``min_round_steps`` steps, so small data
    trains for enough steps without a bigger ``epochs``, and at most ``max_round_rows`` rows,
    so a round on a huge split takes a bounded time (the shuffled split repeats: the next
    round goes on where this one stopped).
    """
    round_rows = min(rows, int(hp["max_round_rows"]))
    steps = max(1, math.ceil(round_rows / batch_size))
    return {"round_steps": max(steps, int(hp["min_round_steps"])), "rounds": epochs,
            "validation_rows": int(hp["max_validation_rows"])}


def train_stats(fn_args, bins: int) -> TrainStats:
    """Row count, label statistics and numeric bin edges of the train split, in one pass.

    Bin edges come from the first ``QUANTILE_ROWS`` rows (rounded up to whole batches of
    ``STATS_BATCH_SIZE``); label sums are float64, per batch then across batches in order.
    """
    import numpy as np

    numeric = numeric_features(fn_args)
    rows, total, squares = 0, 0.0, 0.0
    counts = np.zeros(fn_args.n_classes, np.int64)
    samples: Dict[str, list] = {name: [] for name in numeric}
    read = RowProgress(progress.log, "train statistics", progress.PASS_LOG_SECONDS, done="rows read")
    # Parsing every feature costs as much as reading the records: the rows past the sample
    # parse only the label (the second pass re-reads the sample's records, unparsed, to skip them).
    sample_rows = math.ceil(QUANTILE_ROWS / STATS_BATCH_SIZE) * STATS_BATCH_SIZE
    files = fn_args.train_files
    passes = (fn_args.dataset(files, batch_size=STATS_BATCH_SIZE, rows=sample_rows, features=numeric),
              fn_args.dataset(files, batch_size=STATS_BATCH_SIZE, skip=sample_rows, features=[]))
    for sampled, batches in zip((True, False), passes):
        if not sampled and rows < sample_rows:
            break  # the sample held the whole split
        for features, label in batches:
            values = label.numpy()
            read.add(len(values))
            for name in features if sampled else ():
                samples[name].append(features[name].numpy().reshape(-1))
            rows += len(values)
            if fn_args.problem_type == keys.REGRESSION:
                values = values.astype(np.float64)
                total, squares = total + values.sum(), squares + np.square(values).sum()
            else:
                counts += np.bincount(values.astype(np.int64), minlength=fn_args.n_classes)
    edges = {name: bin_edges(np.concatenate(parts), bins) for name, parts in samples.items() if parts}
    edges = {name: e for name, e in edges.items() if len(e) > 2}
    if fn_args.problem_type != keys.REGRESSION:
        return TrainStats(rows=rows, class_counts=[int(c) for c in counts], bin_edges=edges)
    mean = total / max(rows, 1)
    std = math.sqrt(max(squares / max(rows, 1) - mean * mean, 0.0))
    return TrainStats(rows=rows, mean=float(mean), bin_edges=edges,
                      std=float(std) if std > 1e-12 * max(1.0, abs(mean)) else 1.0)


def bin_edges(values, bins: int) -> List[float]:
    """Up to ``bins + 1`` distinct quantiles of ``values`` (finite ones), ascending.

    Quantiles are values that occur, so a feature with few distinct values (a flag, a count)
    gets bins only between them.
    """
    import numpy as np

    values = values[np.isfinite(values)].astype(np.float64)
    if not len(values):
        return []
    levels = np.linspace(0.0, 1.0, bins + 1)
    return [float(q) for q in np.unique(np.quantile(values, levels, method="nearest"))]


def numeric_features(fn_args) -> List[str]:
    """Transformed features (label excluded) that the model reads as one number each."""
    import tensorflow as tf

    tft_output = fn_args.tft_output()
    return [name for name, spec in sorted(fn_args.transformed_feature_spec.items())
            if name != fn_args.label and isinstance(spec, tf.io.FixedLenFeature)
            and math.prod(spec.shape) == 1
            and not (spec.dtype.is_integer and _vocabulary_size(tft_output, name))]


def build_model(fn_args, hp: Dict[str, Any], stats: Optional[TrainStats] = None):
    """The compiled, untrained default model for the transformed features of ``fn_args``.

    ``stats`` sets the regression output's scale, the classes' initial bias and the numeric
    features' bins; without it the output starts unscaled and unbiased, and numbers go in as
    they are.
    """
    import tensorflow as tf
    import tf_keras

    tft_output = fn_args.tft_output()
    inputs, embedded, numbers = {}, [], []
    for name, spec in sorted(fn_args.transformed_feature_spec.items()):
        if name == fn_args.label:
            continue
        if not isinstance(spec, tf.io.FixedLenFeature):
            raise ConfigError(f"Transformed feature '{name}' is {type(spec).__name__}; the default "
                              "model needs fixed-length features. Make preprocessing_fn return a "
                              "dense tensor for it, or give a trainer module.")
        buckets = _vocabulary_size(tft_output, name) if spec.dtype.is_integer else None
        if buckets:
            inputs[name] = tf_keras.Input(shape=spec.shape, dtype=spec.dtype, name=name)
            dim = min(hp["max_embedding_dim"], max(2, round(1.6 * buckets ** 0.56)))
            vector = tf_keras.layers.Embedding(buckets, dim, name=f"embed_{name}")(inputs[name])
            embedded.append(tf_keras.layers.Flatten(name=f"flat_{name}")(vector))
        else:
            # A float32 Input: Keras casts other numeric inputs to it.
            inputs[name] = tf_keras.Input(shape=spec.shape, dtype=tf.float32, name=name)
            number = tf_keras.layers.Reshape((math.prod(spec.shape),), name=f"number_{name}")(inputs[name])
            numbers.append(number)
            if stats and name in stats.bin_edges:
                numbers.append(_piecewise_linear(number, stats.bin_edges[name], name))
    x = tf_keras.layers.Concatenate(name="features")(embedded + numbers)
    for i, units in enumerate(hp["hidden_units"]):
        x = tf_keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        x = tf_keras.layers.Dropout(hp["dropout"], name=f"dropout_{i}")(x)
    output, loss = _head(fn_args.problem_type, fn_args.n_classes, stats or TrainStats(rows=0))
    model = tf_keras.Model(inputs=inputs, outputs=output(x))
    model.compile(optimizer=tf_keras.optimizers.Adam(hp["learning_rate"]), loss=loss)
    return model


def initial_bias(problem_type: str, stats: TrainStats) -> Optional[List[float]]:
    """The output bias that predicts the train classes' frequencies (None for regression).

    Binary: the log-odds of class 1; multiclass: the log of each class's frequency (softmax
    of it gives the frequencies back).
    """
    if problem_type == keys.REGRESSION or not stats.class_counts or not sum(stats.class_counts):
        return None
    total = sum(stats.class_counts)
    freq = [min(max(c / total, _MIN_FREQUENCY), 1 - _MIN_FREQUENCY) for c in stats.class_counts]
    if problem_type == keys.BINARY:
        return [math.log(freq[1] / freq[0])]
    return [math.log(f) for f in freq]


def _piecewise_linear(number, edges: List[float], name: str):
    """The piecewise-linear encoding of a ``[batch, 1]`` number over the bins between ``edges``.

    Component t is 0 below edge t, 1 above edge t+1 and linear between, so the network sees
    where a value stands among the train values whatever its scale and outliers (gradient
    boosting's strength). Fixed weights: ``clip(x * 1/width_t - edge_t/width_t, 0, 1)``.
    """
    import numpy as np
    import tf_keras

    lower, upper = np.array(edges[:-1]), np.array(edges[1:])
    scale = 1.0 / (upper - lower)
    encode = tf_keras.layers.Dense(len(lower), trainable=False, name=f"bins_{name}",
                                   kernel_initializer=tf_keras.initializers.Constant([scale.tolist()]),
                                   bias_initializer=tf_keras.initializers.Constant((-lower * scale).tolist()))
    return tf_keras.layers.ReLU(max_value=1.0, name=f"clip_{name}")(encode(number))


def _head(problem_type: str, n_classes: int, stats: TrainStats):
    """``(output(x), loss)`` for the problem type."""
    import tf_keras

    bias = initial_bias(problem_type, stats)
    bias_init = tf_keras.initializers.Constant(bias) if bias else "zeros"
    if problem_type == keys.BINARY:
        return (tf_keras.layers.Dense(1, activation="sigmoid", bias_initializer=bias_init,
                                      name="probability"),
                tf_keras.losses.BinaryCrossentropy())
    if problem_type == keys.MULTICLASS:
        return (tf_keras.layers.Dense(n_classes, activation="softmax", bias_initializer=bias_init,
                                      name="probabilities"),
                tf_keras.losses.SparseCategoricalCrossentropy())

    standardised = tf_keras.layers.Dense(1, name="standardised_value")
    # Back to label units: the loss (and Adam, which is invariant to the gradients' scale)
    # sees the same problem whatever the label's scale.
    to_units = tf_keras.layers.Rescaling(stats.std, offset=stats.mean, name="value")
    return (lambda x: to_units(standardised(x))), tf_keras.losses.MeanSquaredError()


def _vocabulary_size(tft_output, name: str):
    try:
        return tft_output.num_buckets_for_transformed_feature(name)
    except ValueError:  # no IntDomain from 0: an integer used as a number
        return None
