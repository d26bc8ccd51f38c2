"""The model prodml trains when the user gives no trainer module.

Integer features with a vocabulary (an IntDomain from 0, as ``tft.compute_and_apply_vocabulary``
annotates) go through embeddings, all other features are concatenated as numbers, then an
MLP with dropout: sigmoid + binary cross-entropy for binary, softmax + cross-entropy for
multiclass, linear + mean squared error for regression. Early stopping on the eval loss keeps
the best epoch's weights.
"""

import math
from typing import Any, Dict

from prodml.components.common import keys
from prodml.components.common.errors import ConfigError

HYPERPARAMETERS = {
    "hidden_units": [128, 64],
    "dropout": 0.1,
    "learning_rate": 0.005,
    "max_embedding_dim": 16,
    "early_stopping_patience": 3,
}


def run_fn(fn_args):
    """Builds and fits the default model; see ``FnArgs`` for the contract."""
    import tf_keras

    hp = hyperparameters(fn_args.hyperparameters)
    model = build_model(fn_args, hp)
    stop = tf_keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True,
                                            patience=hp["early_stopping_patience"])
    model.fit(fn_args.dataset(fn_args.train_files, shuffle=True),
              validation_data=fn_args.dataset(fn_args.eval_files),
              epochs=fn_args.epochs, callbacks=[stop], verbose=0)
    return model


def hyperparameters(given: Dict[str, Any]) -> Dict[str, Any]:
    """The defaults updated with ``given``; an unknown name is a ConfigError."""
    unknown = sorted(set(given or {}) - set(HYPERPARAMETERS))
    if unknown:
        raise ConfigError(f"Unknown hyperparameters {unknown} for the default model; known: "
                          f"{sorted(HYPERPARAMETERS)}. Give a trainer module to use others.")
    return {**HYPERPARAMETERS, **(given or {})}


def build_model(fn_args, hp: Dict[str, Any]):
    """The compiled, untrained default model for the transformed features of ``fn_args``."""
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
            numbers.append(tf_keras.layers.Reshape((math.prod(spec.shape),),
                                                   name=f"number_{name}")(inputs[name]))
    x = tf_keras.layers.Concatenate(name="features")(embedded + numbers)
    for i, units in enumerate(hp["hidden_units"]):
        x = tf_keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
        x = tf_keras.layers.Dropout(hp["dropout"], name=f"dropout_{i}")(x)
    output, loss = _head(fn_args.problem_type, fn_args.n_classes)
    model = tf_keras.Model(inputs=inputs, outputs=output(x))
    model.compile(optimizer=tf_keras.optimizers.Adam(hp["learning_rate"]), loss=loss)
    return model


def _head(problem_type: str, n_classes: int):
    import tf_keras

    if problem_type == keys.BINARY:
        return (tf_keras.layers.Dense(1, activation="sigmoid", name="probability"),
                tf_keras.losses.BinaryCrossentropy())
    if problem_type == keys.MULTICLASS:
        return (tf_keras.layers.Dense(n_classes, activation="softmax", name="probabilities"),
                tf_keras.losses.SparseCategoricalCrossentropy())
    return tf_keras.layers.Dense(1, name="value"), tf_keras.losses.MeanSquaredError()


def _vocabulary_size(tft_output, name: str):
    try:
        return tft_output.num_buckets_for_transformed_feature(name)
    except ValueError:  # no IntDomain from 0: an integer used as a number
        return None
