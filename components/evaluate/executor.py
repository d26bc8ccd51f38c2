"""Evaluate: scores the candidate model on the raw eval split and decides whether to bless it.

The eval examples go through the candidate's ``serving_examples`` signature, the exact path
that serves requests, so what is measured is what is served. The currently pushed model is
scored on the same examples the same way, and the blessing records every check as a sentence.
"""

import dataclasses
import math
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from prodml.components.common import artifacts, dataio, defaults, keys, names, registry
from prodml.components.common import metrics as m
from prodml.components.common.errors import ConfigError, InputDataError, RegistryError
from prodml.components.common.logs import get_logger, step
from prodml.components.common.saved_models import load_examples_signature
from prodml.components.evaluate import blessing as checks
from prodml.components.evaluate import report, slices

log = get_logger(__name__)

BASELINE_NAME = {keys.BINARY: "majority class", keys.MULTICLASS: "majority class", keys.REGRESSION: "mean"}


@dataclasses.dataclass
class _Pushed:
    """The model currently in the registry, scored beside the candidate."""

    version: int
    uri: str
    predict: Optional[object] = None
    not_comparable: str = ""   # why its predictions cannot be compared, if they cannot


def run_evaluate(model_dir: str, examples_dir: str, evaluation_dir: str, blessing_dir: str,
                 registry_uri: str = "", model_name: str = "", slice_feature: str = "",
                 thresholds: Optional[dict] = None, tolerance: float = defaults.TOLERANCE,
                 batch_size: int = 1024, report_path: str = "") -> dict:
    """Evaluates the model in ``model_dir`` on the eval split of ``examples_dir`` and blesses it or not.

    Writes ``<evaluation_dir>/evaluation.json``, ``<blessing_dir>/blessing.json`` and, when
    ``report_path`` is given, the evaluation as Markdown there. ``thresholds`` maps metric names
    to a minimum (higher-is-better metrics) or maximum (lower-is-better ones); ``tolerance`` is
    how far the key metric may trail the latest version of ``model_name`` in ``registry_uri``.
    Returns ``{"metrics", "blessed", "reasons", "confusion_matrix", "roc", "slices"}``.
    """
    model_info = artifacts.ModelInfo.read(model_dir)
    label, raw_features = model_info.label, model_info.raw_features
    problem_type, classes = label.problem_type, list(label.classes or [])
    thresholds = checks.validate_thresholds(problem_type, thresholds)
    tolerance = checks.validate_tolerance(tolerance)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be ≥ 1, got {batch_size}.")
    if slice_feature and slice_feature not in raw_features:
        raise ConfigError(f"Unknown slice feature '{slice_feature}'. The model's raw features are: "
                          f"{', '.join(sorted(raw_features))}.")
    if bool(registry_uri) != bool(model_name):
        raise ConfigError("Give both registry_uri and model_name to compare with the pushed model, or neither "
                          f"(got registry_uri='{registry_uri}', model_name='{model_name}').")
    data_version = artifacts.DataVersion.read(examples_dir)
    label_kind = _label_kind(data_version, examples_dir, label.name)

    candidate = load_examples_signature(model_dir)
    pushed = _find_pushed(registry_uri, model_name, label)
    with step(log, f"evaluating {model_dir} on {keys.EVAL} of {examples_dir}"):
        data = _score(examples_dir, label.name, label_kind, slice_feature, raw_features.get(slice_feature),
                      candidate, pushed, batch_size)
    labels = _encode_labels(data.labels, label, label_kind, model_dir)
    n_classes = len(classes)

    key = m.KEY_METRIC[problem_type]
    metrics = m.compute(problem_type, labels, data.candidate, n_classes)
    baseline = m.compute(problem_type, labels, m.baseline_predictions(problem_type, labels, n_classes), n_classes)
    results = [checks.against_baseline(key, metrics, baseline, BASELINE_NAME[problem_type])]
    results += [checks.against_threshold(name, metrics, value) for name, value in sorted(thresholds.items())]
    comparison, check = _compare_with_pushed(pushed, data.pushed, problem_type, key, labels, metrics, tolerance,
                                             n_classes)
    results.append(check)
    if pushed is not None and data.pushed is not None:
        rerun = _rerun_check(pushed, data_version, model_info, key, metrics, comparison["pushed_metrics"],
                             tolerance)
        if not rerun.passed:
            results.append(rerun)
    blessed = all(c.passed for c in results)
    reasons = [c.reason for c in results]

    slice_results = {}
    if slice_feature:
        names = slices.slice_names(data.slice_values)
        slice_results = {slice_feature: slices.slice_metrics(problem_type, labels, data.candidate, names, n_classes)}
    confusion = roc = None
    if problem_type != keys.REGRESSION:
        confusion = m.confusion_matrix(problem_type, labels, data.candidate, classes)
    if problem_type == keys.BINARY:
        roc = m.roc_curve(labels, data.candidate)

    artifacts.Evaluation(
        metrics=metrics, key_metric=key, baseline={"name": BASELINE_NAME[problem_type], "metrics": baseline},
        slices=slice_results, candidate_vs_pushed=comparison, confusion_matrix=confusion, roc=roc,
        model_uri=model_dir, examples_uri=examples_dir).write(evaluation_dir)
    artifacts.Blessing(blessed=blessed, reasons=reasons, compared_to=comparison.get("version")).write(blessing_dir)
    log.info("%s: %s", "blessed" if blessed else "not blessed", "; ".join(reasons))
    result = {"metrics": metrics, "blessed": blessed, "reasons": reasons, "confusion_matrix": confusion,
              "roc": roc, "slices": slice_results}
    if report_path:
        dataio.write_text_atomic(report_path, report.render_markdown(result))
    return result


@dataclasses.dataclass
class _Scored:
    labels: List[object]            # raw label values, missing labels dropped
    slice_values: List[Optional[str]]
    candidate: np.ndarray
    pushed: Optional[np.ndarray]


def _score(examples_dir: str, label_name: str, label_kind: str, slice_feature: str, slice_kind: Optional[str],
           candidate, pushed: Optional[_Pushed], batch_size: int) -> _Scored:
    """Runs the candidate (and the pushed model) over the eval split, batch by batch."""
    import tensorflow as tf

    labels: List[object] = []
    slice_values: List[Optional[str]] = []
    candidate_out: List[np.ndarray] = []
    pushed_out: List[np.ndarray] = []
    missing_labels = 0
    for batch, batch_labels, batch_slices in _batches(examples_dir, label_name, label_kind, slice_feature,
                                                      slice_kind, batch_size):
        present = np.array([v is not None for v in batch_labels])
        missing_labels += int((~present).sum())
        labels += [v for v in batch_labels if v is not None]
        slice_values += [v for v, p in zip(batch_slices, present) if p]
        try:
            candidate_out.append(_predict(candidate, batch)[present])
        except tf.errors.InvalidArgumentError as e:
            raise InputDataError(f"The candidate's '{keys.EXAMPLES_SIGNATURE}' signature cannot read the eval "
                                 f"examples of {examples_dir}: {e.message.splitlines()[0]}. Evaluate on examples "
                                 "with the columns and types the model was trained on.") from e
        if pushed is not None and pushed.predict is not None:
            try:
                pushed_out.append(_predict(pushed.predict, batch)[present])
            except tf.errors.InvalidArgumentError as e:
                pushed.predict = None
                pushed.not_comparable = f"it cannot read the eval examples ({e.message.splitlines()[0]})"
                log.warning("pushed v%d %s", pushed.version, pushed.not_comparable)
    if missing_labels:
        log.warning("%d eval examples have no label '%s' and are not evaluated", missing_labels, label_name)
    if not labels:
        raise InputDataError(f"The eval split of {examples_dir} has no example with the label '{label_name}'. "
                             "Check the examples artifact and the label name.")
    return _Scored(labels, slice_values, np.concatenate(candidate_out),
                   np.concatenate(pushed_out) if pushed is not None and pushed.predict is not None else None)


def _batches(examples_dir: str, label_name: str, label_kind: str, slice_feature: str,
             slice_kind: Optional[str], batch_size: int) -> Iterator[Tuple[object, list, list]]:
    """Yields (serialized examples, raw label per example, slice name per example); None is missing."""
    import tensorflow as tf

    spec = {label_name: tf.io.RaggedFeature(_dtype(label_kind))}
    if slice_feature:
        spec[slice_feature] = tf.io.RaggedFeature(_dtype(slice_kind))
    files = dataio.split_files(examples_dir, keys.EVAL)
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size)
    try:
        for batch in dataset:
            parsed = tf.io.parse_example(batch, spec)
            batch_labels = _first_values(parsed[label_name])
            if label_kind == keys.FLOAT:
                batch_labels = [None if v is None or math.isnan(v) else v for v in batch_labels]
            batch_slices = [None] * len(batch_labels)
            if slice_feature:
                batch_slices = [None if v is None else slices.format_value(v, slice_kind)
                                for v in _first_values(parsed[slice_feature])]
            yield batch, batch_labels, batch_slices
    except tf.errors.DataLossError as e:
        raise InputDataError(f"Cannot read the eval examples {files}: {e.message}. They must be gzipped "
                             "TFRecord files of tf.Example, as ingest writes them.") from e
    except tf.errors.InvalidArgumentError as e:
        raise InputDataError(f"Cannot parse '{label_name}'{' or ' + repr(slice_feature) if slice_feature else ''} "
                             f"in the eval examples {files}: {e.message}. Check data_version.json's columns "
                             "against the examples.") from e


def _first_values(ragged) -> list:
    values = ragged.values.numpy().tolist()
    return [values[s] if n else None
            for s, n in zip(ragged.row_starts().numpy().tolist(), ragged.row_lengths().numpy().tolist())]


def _predict(predict, batch) -> np.ndarray:
    return predict(batch)[keys.PREDICTIONS].numpy()


def _encode_labels(values: list, label: artifacts.Label, kind: str, model_dir: str) -> np.ndarray:
    """Raw label values → float targets (regression) or indices into the model's classes."""
    if label.problem_type == keys.REGRESSION:
        return np.asarray(values, np.float64)
    classes = list(label.classes)
    if kind == keys.BYTES:
        index = {c: i for i, c in enumerate(classes)}
        keyed = [v.decode("utf-8", errors="replace") for v in values]
    else:
        # Numeric classes are compared as numbers: "1" and 1.0 are the same class.
        index = {float(c): i for i, c in enumerate(classes)}
        keyed = [float(v) for v in values]
    unknown = sorted({v for v in keyed if v not in index}, key=str)
    if unknown:
        raise InputDataError(f"Eval label '{label.name}' has values {unknown[:10]} that are not among the "
                             f"model's classes {classes} ({artifacts.ModelInfo.path(model_dir)}). "
                             "Train on data that holds every class, or drop those rows.")
    return np.array([index[v] for v in keyed], np.int64)


def _compare_with_pushed(pushed: Optional[_Pushed], predictions: Optional[np.ndarray], problem_type: str, key: str,
                         labels: np.ndarray, metrics: Dict[str, float], tolerance: float,
                         n_classes: int) -> Tuple[dict, checks.Check]:
    if pushed is None:
        return {"version": None}, checks.Check(True, "no pushed model yet")
    comparison = {"version": pushed.version, "uri": pushed.uri, "key_metric": key, "tolerance": tolerance}
    if predictions is None:
        reason = f"pushed v{pushed.version} not compared: {pushed.not_comparable}"
        return {**comparison, "not_comparable": pushed.not_comparable}, checks.Check(True, reason)
    pushed_metrics = m.compute(problem_type, labels, predictions, n_classes)
    check = checks.against_pushed(key, metrics, pushed_metrics, pushed.version, tolerance)
    return {**comparison, "candidate": metrics.get(key), "pushed": pushed_metrics.get(key),
            "pushed_metrics": pushed_metrics, "within_tolerance": check.passed}, check


def _rerun_check(pushed: "_Pushed", data_version: artifacts.DataVersion, model_info: artifacts.ModelInfo,
                 key: str, metrics: Dict[str, float], pushed_metrics: Dict[str, float],
                 tolerance: float) -> checks.Check:
    sha256 = data_version.sha256
    pushed_sha = (artifacts.ModelCard.read(pushed.uri).data_sha256
                  if artifacts.ModelCard.exists(pushed.uri) else None)
    same_config = artifacts.ModelInfo.read(pushed.uri).training_config() == model_info.training_config()
    return checks.not_a_rerun(pushed_sha == sha256, same_config, key, metrics, pushed_metrics, pushed.version,
                              tolerance, sha256)


def _find_pushed(registry_uri: str, model_name: str, label: artifacts.Label) -> Optional[_Pushed]:
    """The latest pushed version, loaded, or None if nothing is pushed yet."""
    if not registry_uri:
        return None
    names.check_model_name(model_name, "model_name")  # no path separator or '..' reaches the registry
    version = registry.latest_version(registry_uri, model_name)
    if version is None:
        return None
    uri = registry.version_uri(registry_uri, model_name, version)
    pushed_label = artifacts.ModelInfo.read(uri).label if artifacts.ModelInfo.exists(uri) else label
    if pushed_label != label:
        why = f"it predicts {pushed_label.describe()}, the candidate {label.describe()}"
        log.warning("pushed v%d %s", version, why)
        return _Pushed(version, uri, None, why)
    try:
        return _Pushed(version, uri, load_examples_signature(uri))
    except ConfigError as e:
        raise RegistryError(f"Pushed version {uri} cannot be loaded: {e}") from e


def _label_kind(data_version: artifacts.DataVersion, examples_dir: str, label_name: str) -> str:
    path = artifacts.DataVersion.path(examples_dir)
    columns = data_version.columns
    if label_name not in columns:
        raise InputDataError(f"The label '{label_name}' is not among the columns of {path} "
                             f"({', '.join(sorted(columns))}). Evaluate on examples with the model's label.")
    return columns[label_name]


def _dtype(kind: str):
    import tensorflow as tf

    return {keys.INT: tf.int64, keys.FLOAT: tf.float32, keys.BYTES: tf.string}[kind]
