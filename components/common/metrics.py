"""Evaluation metrics of one set of predictions, computed with scikit-learn (evaluate, monitor).

Labels are encoded as in the model contract: a class index for classification, a number for
regression. Predictions are the ``predictions`` output of the serving signatures: P(classes[1])
for binary, one probability per class for multiclass, the value for regression.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

from prodml.components.common import keys

# The metric each problem type is judged on, against the baseline and the pushed model.
KEY_METRIC = {keys.BINARY: "auc", keys.MULTICLASS: "accuracy", keys.REGRESSION: "rmse"}
METRICS = {
    keys.BINARY: ("auc", "accuracy", "log_loss", "precision", "recall"),
    keys.MULTICLASS: ("auc", "accuracy", "log_loss", "precision", "recall"),
    keys.REGRESSION: ("rmse", "mae", "r2"),
}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
EXAMPLE_COUNT = "example_count"
MAX_ROC_POINTS = 200


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def is_better(metric: str, value: float, than: float) -> bool:
    """Whether ``value`` is strictly better than ``than`` on ``metric``."""
    return value < than if metric in LOWER_IS_BETTER else value > than


def predicted_classes(problem_type: str, predictions: np.ndarray) -> np.ndarray:
    """Class indices: P(positive) ≥ 0.5 for binary, the most probable class for multiclass."""
    if problem_type == keys.BINARY:
        return (predictions >= 0.5).astype(np.int64)
    return np.argmax(predictions, axis=1).astype(np.int64)


def compute(problem_type: str, labels: np.ndarray, predictions: np.ndarray, n_classes: int = 0) -> Dict[str, float]:
    """Flat metrics of ``predictions`` against ``labels``.

    A metric that is undefined on these labels (AUC when only one class occurs, r2 with one
    example) is left out rather than reported as NaN. ``example_count`` is always there.
    """
    from sklearn import metrics as skm

    result: Dict[str, float] = {EXAMPLE_COUNT: int(len(labels))}
    if len(labels) == 0:
        return result
    if problem_type == keys.REGRESSION:
        y, p = np.asarray(labels, np.float64), np.asarray(predictions, np.float64)
        result["rmse"] = float(np.sqrt(skm.mean_squared_error(y, p)))
        result["mae"] = float(skm.mean_absolute_error(y, p))
        if len(y) > 1 and np.var(y) > 0:
            result["r2"] = float(skm.r2_score(y, p))
        return result

    y = np.asarray(labels, np.int64)
    probs = _probabilities(problem_type, predictions)
    predicted = predicted_classes(problem_type, probs)
    result["accuracy"] = float(skm.accuracy_score(y, predicted))
    if problem_type == keys.BINARY:
        result["log_loss"] = float(skm.log_loss(y, probs, labels=[0, 1]))
        result["precision"] = float(skm.precision_score(y, predicted, zero_division=0))
        result["recall"] = float(skm.recall_score(y, predicted, zero_division=0))
        if len(np.unique(y)) == 2:
            result["auc"] = float(skm.roc_auc_score(y, probs))
        return result

    n_classes = n_classes or probs.shape[1]
    result["log_loss"] = float(skm.log_loss(y, probs, labels=list(range(n_classes))))
    result["precision"] = float(skm.precision_score(y, predicted, average="macro", zero_division=0))
    result["recall"] = float(skm.recall_score(y, predicted, average="macro", zero_division=0))
    auc = _macro_ovr_auc(y, probs)
    if auc is not None:
        result["auc"] = auc
    return result


def baseline_predictions(problem_type: str, labels: np.ndarray, n_classes: int = 0) -> np.ndarray:
    """The trivial model's predictions on ``labels``: the class prior, or the mean for regression.

    Its accuracy is the majority class share, its AUC 0.5, its log loss the entropy of the prior.
    """
    n = len(labels)
    if problem_type == keys.REGRESSION:
        return np.full(n, float(np.mean(labels)) if n else 0.0)
    counts = np.bincount(np.asarray(labels, np.int64), minlength=max(n_classes, 2)).astype(np.float64)
    prior = counts / max(counts.sum(), 1.0)
    if problem_type == keys.BINARY:
        return np.full(n, prior[1])
    return np.tile(prior, (n, 1))


def confusion_matrix(problem_type: str, labels: np.ndarray, predictions: np.ndarray,
                     classes: Sequence[str]) -> Dict[str, object]:
    """Rows are true classes, columns predicted classes, both in the order of ``classes``."""
    from sklearn import metrics as skm

    predicted = predicted_classes(problem_type, _probabilities(problem_type, predictions))
    matrix = skm.confusion_matrix(np.asarray(labels, np.int64), predicted, labels=list(range(len(classes))))
    return {"labels": [str(c) for c in classes], "matrix": matrix.astype(int).tolist()}


def roc_curve(labels: np.ndarray, scores: np.ndarray,
              max_points: int = MAX_ROC_POINTS) -> Optional[List[Dict[str, float]]]:
    """Binary ROC curve points ``{"fpr", "tpr", "threshold"}``, thinned to ``max_points``.

    None when only one class occurs. The first point's threshold, infinite in scikit-learn
    (nothing predicted positive), is reported as 1.0 so the curve stays valid JSON.
    """
    from sklearn import metrics as skm

    y = np.asarray(labels, np.int64)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, thresholds = skm.roc_curve(y, np.asarray(scores, np.float64), drop_intermediate=True)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr, thresholds = fpr[keep], tpr[keep], thresholds[keep]
    thresholds = np.minimum(thresholds, 1.0)
    return [{"fpr": float(f), "tpr": float(t), "threshold": float(h)} for f, t, h in zip(fpr, tpr, thresholds)]


def _probabilities(problem_type: str, predictions: np.ndarray) -> np.ndarray:
    probs = np.asarray(predictions, np.float64)
    if problem_type == keys.MULTICLASS:
        # float32 softmax rows sum to 1 only within float32 precision; scikit-learn checks float64.
        probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return probs


def _macro_ovr_auc(labels: np.ndarray, probs: np.ndarray) -> Optional[float]:
    """Macro one-vs-rest AUC over the classes that occur; scikit-learn's when all of them do."""
    from sklearn import metrics as skm

    aucs = [skm.roc_auc_score(labels == k, probs[:, k]) for k in range(probs.shape[1])
            if 0 < np.sum(labels == k) < len(labels)]
    return float(np.mean(aucs)) if aucs else None
