"""Train: fits a tf_keras model on the transformed examples and exports it for serving.

The model comes from the user's trainer module (``run_fn(fn_args) -> tf_keras.Model``) or from
``default_model``. Training is seeded and deterministic on CPU. The exported SavedModel embeds
the transform graph (see ``export``); ``prodml_model.json`` beside it describes it.

The final metrics (``metrics`` in ``prodml_model.json``) are computed the same way whatever
the model: ``eval_loss`` and the eval key metric over the whole eval split, ``train_loss``
over the first ``TRAIN_LOSS_ROWS`` rows of the train split (all of it when smaller), so their
cost stays bounded on big data. The pass is compiled (``tf.function``), in big batches.
"""

import contextlib
import time
from typing import Any, Dict, Optional

from prodml.components.common import artifacts, dataio, defaults, keys, schemas
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, step
from prodml.components.common.user_modules import load_function

log = get_logger(__name__)

# Train rows (the first ones, in file order) whose loss is the reported ``train_loss``.
TRAIN_LOSS_ROWS = 131_072
# Rows per batch of the final metrics pass (a multiple of which TRAIN_LOSS_ROWS is).
METRICS_BATCH_SIZE = 4096
# The final metrics pass says how long it took when it took longer than this.
METRICS_LOG_SECONDS = 5.0


def run_train(transform_graph_dir: str, transformed_examples_dir: str, model_dir: str,
              trainer_module: str = "", epochs: int = defaults.EPOCHS, batch_size: int = defaults.BATCH_SIZE,
              seed: int = defaults.SEED, hyperparameters: Optional[Dict[str, Any]] = None) -> dict:
    """Trains, exports the SavedModel to ``model_dir`` and writes ``prodml_model.json``.

    Args:
        transform_graph_dir: transform graph artifact (``tft.TFTransformOutput`` folder with
            ``label_info.json``).
        transformed_examples_dir: ``Split-train/`` and ``Split-eval/`` transformed examples.
        model_dir: output folder: SavedModel and ``prodml_model.json``.
        trainer_module: path or URI of a Python file defining ``run_fn(fn_args)`` (see
            ``fn_args.FnArgs``); empty for ``default_model``.
        epochs: maximal number of epochs.
        batch_size: examples per batch.
        seed: seed of every random choice; the same inputs give the same model.
        hyperparameters: given to ``run_fn`` as ``fn_args.hyperparameters``; for the default
            model, overrides of ``default_model.HYPERPARAMETERS``.

    Returns:
        ``{"metrics": {"train_loss", "eval_loss", ...}, "epochs_run": n, "train_seconds": s,
        "trainer": "default" or the module path}``; ``train_loss`` is over the first
        ``TRAIN_LOSS_ROWS`` train rows, the eval metrics over the whole eval split.
    """
    import tensorflow as tf
    import tensorflow_transform as tft
    import tf_keras

    from prodml.components.train import default_model, export
    from prodml.components.train.fn_args import FnArgs

    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs ({epochs}) and batch_size ({batch_size}) must be at least 1.")
    label = artifacts.Label.read(transform_graph_dir)
    tft_output = tft.TFTransformOutput(transform_graph_dir)
    fn_args = FnArgs(
        train_files=dataio.split_files(transformed_examples_dir, keys.TRAIN),
        eval_files=dataio.split_files(transformed_examples_dir, keys.EVAL),
        transform_output=transform_graph_dir,
        transformed_feature_spec=tft_output.transformed_feature_spec(),
        label=label.name, problem_type=label.problem_type,
        classes=label.classes, epochs=epochs, batch_size=batch_size, seed=seed,
        hyperparameters=dict(hyperparameters or {}))
    run_fn = load_function(trainer_module, "run_fn") if trainer_module else default_model.run_fn

    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    start = time.perf_counter()
    with _label_errors(fn_args.label, fn_args.classes, transformed_examples_dir):
        with step(log, f"train ({trainer_module or 'default model'}, up to {epochs} epochs)"):
            model = run_fn(fn_args)
        train_seconds = time.perf_counter() - start
        if not isinstance(model, tf_keras.Model):
            raise ConfigError(f"run_fn in {trainer_module} returned {type(model).__name__}; it "
                              "must return the trained tf_keras.Model.")
        metrics = _final_metrics(model, fn_args, export.predictions)
    history = _history(model)

    raw_kinds = {name: kind for name, kind in schemas.feature_kinds(tft_output.raw_metadata.schema).items()
                 if name != fn_args.label}
    with step(log, f"export to {model_dir}"):
        signatures = export.export_model(model, tft_output, raw_kinds, label.to_dict(), model_dir)
    params = {"trainer_module": trainer_module or "default", "epochs": epochs,
              "batch_size": batch_size, "seed": seed, "hyperparameters": fn_args.hyperparameters}
    artifacts.ModelInfo(label=label, raw_features=raw_kinds, signatures=signatures, params=params,
                        history=history, metrics=metrics).write(model_dir)
    log.info("trained in %.1fs: %s", train_seconds,
             ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return {"metrics": metrics, "epochs_run": len(history.get("loss", [])) or None,
            "train_seconds": round(train_seconds, 3), "trainer": trainer_module or "default"}


@contextlib.contextmanager
def _label_errors(label: str, classes, examples_dir: str):
    """Turns the input pipeline's label check failure into an error saying what to do."""
    import tensorflow as tf

    from prodml.components.train.fn_args import BAD_LABEL

    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        if BAD_LABEL.format(label=label) not in str(e):
            raise
        raise InputDataError(
            f"The transformed label '{label}' in {examples_dir} is missing on some rows or holds "
            f"a value outside the classes {classes} of data_version.json. Re-run ingest, "
            "transform and train on data whose every row has a label.") from e


def _history(model) -> Dict[str, list]:
    history = getattr(getattr(model, "history", None), "history", None) or {}
    return {name: [float(v) for v in values] for name, values in history.items()}


def _final_metrics(model, fn_args, predictions, train_rows: Optional[int] = TRAIN_LOSS_ROWS) -> Dict[str, float]:
    """Loss of the final model on train and eval, plus eval AUC or accuracy or RMSE.

    The same losses for every model, whatever the trainer module compiled, so runs compare.
    ``train_loss`` covers the first ``train_rows`` rows of the train split in file order (all
    of it when ``None`` or when the split is smaller); the eval metrics cover the whole eval
    split. The values are the Keras metrics' (``BinaryCrossentropy``,
    ``SparseCategoricalCrossentropy`` or ``MeanSquaredError``; AUC with 1000 thresholds),
    averaged over rows; predictions come from one compiled function, in big batches.
    """
    import tf_keras

    problem_type = fn_args.problem_type
    losses = {keys.BINARY: tf_keras.metrics.BinaryCrossentropy,
              keys.MULTICLASS: tf_keras.metrics.SparseCategoricalCrossentropy,
              keys.REGRESSION: tf_keras.metrics.MeanSquaredError}[problem_type]
    extra = {keys.BINARY: ("eval_auc", lambda: tf_keras.metrics.AUC(num_thresholds=1000)),
             keys.MULTICLASS: ("eval_accuracy", tf_keras.metrics.SparseCategoricalAccuracy),
             keys.REGRESSION: ("eval_rmse", tf_keras.metrics.RootMeanSquaredError)}[problem_type]
    start, rows, result, predict = time.perf_counter(), 0, {}, None
    for split, files, limit in ((keys.TRAIN, fn_args.train_files, train_rows),
                                (keys.EVAL, fn_args.eval_files, None)):
        metrics = {f"{split}_loss": losses()}
        if split == keys.EVAL:
            metrics[extra[0]] = extra[1]()
        data = fn_args.dataset(files, batch_size=METRICS_BATCH_SIZE, rows=limit)
        predict = predict or _compiled_predictions(model, predictions, problem_type, data.element_spec[0])
        for features, label in data:
            predicted = predict(features)
            if problem_type != keys.MULTICLASS:  # Keras loss metrics average over the last axis
                label, predicted = label[:, None], predicted[:, None]
            for metric in metrics.values():
                metric.update_state(label, predicted)
            rows += int(label.shape[0])
        result.update({name: float(metric.result()) for name, metric in metrics.items()})
    seconds = time.perf_counter() - start
    if seconds > METRICS_LOG_SECONDS:
        log.info("final metrics on %d rows in %.1fs", rows, seconds)
    return result


def _compiled_predictions(model, predictions, problem_type: str, features_spec):
    """``predictions(model, features, problem_type)`` traced once for batches of ``features_spec``."""
    import tensorflow as tf

    # No autograph: nothing here branches on tensors (Keras converts its layers itself).
    @tf.function(input_signature=[features_spec], autograph=False)
    def predict(features):
        return predictions(model, features, problem_type)

    return predict
