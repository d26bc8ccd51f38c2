"""Checks on a training run's parameters, done before any work starts.

``prodml run training`` and :func:`prodml.pipelines.local.run_training` call
:func:`check_training` before kfp.local runs the first step, so that a typo costs a second,
not a training run. Each check is a small function that returns the value it checked (or the
name it resolved) and raises a :class:`ConfigError` whose one paragraph names the value and the
allowed ones. A data file that cannot be read raises ingest's own ``InputDataError``.

What the checks read of the data is bounded: the header and the first :data:`SAMPLE_ROWS`
rows of the first input file, read by ingest's own reader. So the problem-type checks catch
what those rows already show (a text label for regression, a third class for binary, a decimal
label under a classification threshold); what only later rows show is still reported by ingest.
"""

import ast
import math
import numbers
import os
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import pandas as pd

from prodml.components.common import dataio, defaults, keys, metrics, names
from prodml.components.common.errors import ConfigError
from prodml.components.ingest import columns, labels, sources, splits

# The rows a check may read: the rows ingest decides a column's kind from.
SAMPLE_ROWS = columns.INFER_VALUES
ALL_PROBLEM_TYPES = (keys.BINARY, keys.MULTICLASS, keys.REGRESSION)
MAX_SEED = 2 ** 32 - 1  # numpy's seeds, which Keras' set_random_seed uses, are 32-bit

# The values each metric can take: a threshold outside them is always met or never met.
METRIC_RANGES = {
    "auc": (0.0, 1.0), "accuracy": (0.0, 1.0), "precision": (0.0, 1.0), "recall": (0.0, 1.0),
    "log_loss": (0.0, math.inf), "rmse": (0.0, math.inf), "mae": (0.0, math.inf), "r2": (-math.inf, 1.0),
    metrics.EXAMPLE_COUNT: (0.0, math.inf),
}

# The command-line flag of each run_training parameter, to name both in a message.
FLAGS = {
    "data_uri": "--data", "label": "--label", "model_name": "--model-name", "problem_type": "--problem",
    "preprocessing_module": "--preprocessing", "trainer_module": "--trainer", "drop_columns": "--drop-columns",
    "user_schema_uri": "--schema", "baseline_statistics_uri": "--baseline-statistics",
    "slice_feature": "--slice-feature", "thresholds": "--threshold", "tolerance": "--tolerance",
    "epochs": "--epochs", "batch_size": "--batch-size", "seed": "--seed", "na_values": "--na-values",
    "split_column": "--split-column",
}


def describe(parameter: str) -> str:
    """``parameter`` as a user may have given it: ``epochs (--epochs)``."""
    flag = FLAGS.get(parameter)
    return f"{parameter} ({flag})" if flag else parameter


# --- single values ------------------------------------------------------------------------------


def check_model_name(name: str, what: str = "model name") -> str:
    """A model name is a DNS-1123 label: one registry folder, and the InferenceService's name."""
    return names.check_model_name(name, what)


def check_version(version: Optional[int], what: str = "--version") -> Optional[int]:
    """``None`` (the latest) or a version number ≥ 1; 0 and negative numbers are not versions."""
    return names.check_version(version, what)


def check_positive_int(value: Any, parameter: str) -> int:
    """A whole number ≥ 1 (epochs, batch size)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigError(f"{describe(parameter)} must be a whole number ≥ 1, got {value!r}.")
    return int(value)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{describe('seed')} must be a whole number from 0 to {MAX_SEED}, got {seed!r}.")
    return int(seed)


def check_tolerance(tolerance: Any) -> float:
    """How far the key metric may fall behind the pushed model: a finite number ≥ 0."""
    if (isinstance(tolerance, bool) or not isinstance(tolerance, numbers.Real) or not math.isfinite(tolerance)
            or tolerance < 0):
        raise ConfigError(f"{describe('tolerance')} must be a number ≥ 0 (how far the key metric may fall "
                          f"behind the pushed model, e.g. 0.01), got {tolerance!r}.")
    return float(tolerance)


def check_problem_type(problem_type: str) -> str:
    if problem_type not in keys.PROBLEM_TYPES:
        raise ConfigError(f"{describe('problem_type')} {problem_type!r} is not one of: "
                          f"{', '.join(keys.PROBLEM_TYPES)}.")
    return problem_type


def check_split_ratios(ratios: Optional[Mapping[str, float]]) -> Dict[str, float]:
    """Ingest's own rule: ``train`` and ``eval`` > 0, names of letters, digits, _ and -; returns them as given."""
    if ratios is not None and not isinstance(ratios, Mapping):
        raise ConfigError(f"split_ratios must map split names to ratios, e.g. {defaults.SPLIT_RATIOS}; "
                          f"got {ratios!r}.")
    splits.normalise_ratios(ratios)
    return dict(defaults.SPLIT_RATIOS if ratios is None else ratios)


def check_canary_percent(percent: Any) -> int:
    if isinstance(percent, bool) or not isinstance(percent, numbers.Integral) or not 0 <= percent <= 100:
        raise ConfigError(f"canary_traffic_percent must be a whole number from 0 to 100, got {percent!r}.")
    return int(percent)


def check_namespace(namespace: str, parameter: str = "deploy_namespace") -> str:
    """Empty (no deployment) or a Kubernetes namespace name (a DNS-1123 label)."""
    if namespace and not names.is_dns1123_label(namespace):
        raise ConfigError(f"{parameter} '{namespace}' is not a Kubernetes namespace name: use at most 63 lowercase "
                          "letters, digits and '-', starting and ending with a letter or digit; or leave it empty "
                          "to skip deployment.")
    return namespace


def check_string_list(values: Any, parameter: str) -> List[str]:
    if isinstance(values, str) or not isinstance(values, (list, tuple)) or \
            not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{describe(parameter)} must be a list of strings, got {values!r}.")
    return list(values)


def check_hyperparameters(hyperparameters: Any) -> Dict[str, float]:
    if not isinstance(hyperparameters, Mapping):
        raise ConfigError(f"hyperparameters must map names to numbers, e.g. {{'learning_rate': 0.001}}; "
                          f"got {hyperparameters!r}.")
    for name, value in hyperparameters.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"hyperparameters['{name}'] must be a number, got {value!r}.")
    return dict(hyperparameters)


def check_threshold_values(thresholds: Any) -> Dict[str, float]:
    """Each threshold is a number inside the range its metric can take (auc from 0 to 1, ...)."""
    if not isinstance(thresholds, Mapping):
        raise ConfigError(f"{describe('thresholds')} must map metric names to numbers, e.g. {{'auc': 0.9}}; "
                          f"got {thresholds!r}.")
    result = {}
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise ConfigError(f"The threshold for '{name}' must be a finite number, got {value!r}.")
        low, high = METRIC_RANGES.get(name, (-math.inf, math.inf))
        if not low <= value <= high:
            span = (f"from {low:g} to {high:g}" if math.isfinite(low) and math.isfinite(high)
                    else f"≥ {low:g}" if math.isfinite(low) else f"≤ {high:g}")
            hint = " (a fraction: 0.9 means 90%)" if (low, high) == (0.0, 1.0) else ""
            raise ConfigError(f"The threshold {name}={value:g} is outside the values {name} can take, {span}"
                              f"{hint}, so it would decide every blessing alone. Give a value in that range.")
        result[name] = float(value)
    return result


def check_threshold_names(thresholds: Mapping[str, float], problem_types: Sequence[str], why: str = "") -> None:
    """Each threshold names a metric that evaluate computes for one of ``problem_types``.

    ``why`` says how the problem types were decided (e.g. from the label's first values).
    """
    known = [name for problem_type in problem_types for name in metrics.METRICS[problem_type]]
    known = list(dict.fromkeys(known + [metrics.EXAMPLE_COUNT]))
    for name in thresholds:
        if name not in known:
            kind = " or ".join(problem_types)
            raise ConfigError(f"Unknown metric '{name}' in {describe('thresholds')}: a {kind} model{why} is "
                              f"judged on {', '.join(known)}.")


def check_parameter_names(params: Iterable[str], known: Iterable[str]) -> None:
    """Every parameter is one the pipeline takes (a typo such as ``epoch`` is named)."""
    known = sorted(known)
    for name in params:
        if name not in known:
            raise ConfigError(f"The training pipeline has no parameter '{name}'. Its parameters are: "
                              f"{', '.join(known)}.")


def check_file(uri: str, parameter: str, what: str) -> str:
    """Empty, or a file or folder that exists."""
    if uri and not dataio.exists(uri):
        raise ConfigError(f"The {what} {uri} given as {describe(parameter)} does not exist. Check the path.")
    return uri


def check_user_module(uri: str, parameter: str, function: str) -> str:
    """Empty, or a Python file that parses and binds ``function`` at its top level.

    The file is parsed, not imported: importing runs the user's code (and TensorFlow), which is
    the step's job. A remote file is only checked to exist.
    """
    if not uri:
        return uri
    check_file(uri, parameter, "Python file")
    if not dataio.is_local(uri):
        return uri
    path = dataio.local_path(uri)
    if not os.path.isfile(path):
        raise ConfigError(f"{describe(parameter)} {uri} is a folder: give the Python file that defines "
                          f"{function}().")
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except SyntaxError as e:
        raise ConfigError(f"{describe(parameter)} {uri} is not valid Python: {e.msg} on line {e.lineno}. "
                          "Fix the file and run again.") from e
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{describe(parameter)} {uri} is not a UTF-8 Python file ({e}).") from e
    bound = _top_level_names(tree)
    if function not in bound and "*" not in bound:
        raise ConfigError(f"{describe(parameter)} {uri} does not define {function}() at its top level. "
                          f"Add a function named {function}.")
    return uri


def _top_level_names(tree: ast.Module) -> set:
    bound = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        else:  # definitions under if/try: accept what any branch binds
            bound.update(n.name for n in ast.walk(node) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
            bound.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return bound


# --- the data's header and first rows ----------------------------------------------------------


def read_sample(data_uri: str, rows: int = SAMPLE_ROWS,
                na_values: Optional[Iterable[str]] = None) -> Optional[sources.Chunk]:
    """The header and first ``rows`` rows of the first input file, as ingest reads them.

    Cells in ``na_values`` (default: ingest's) are missing. Returns None when the file has a
    header but no rows (ingest reports that). Raises ingest's ``InputDataError`` when the data
    does not exist or cannot be read.
    """
    files = sources.resolve(data_uri)
    chunks = sources.read_chunks(files[:1], rows, sources.Fingerprint(), na_values=na_values)
    try:
        return next(iter(chunks), None)
    finally:
        close = getattr(chunks, "close", None)
        if close:
            close()


def find_column(name: str, column_names: Sequence[str], parameter: str) -> str:
    """The column ``name`` refers to: itself, or its sanitised form (as ingest names columns)."""
    noun = {"drop_columns": "column to drop", "slice_feature": "slice feature"}.get(parameter, parameter)
    flag = FLAGS.get(parameter, parameter)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"The {noun} ({flag}) is empty: give a column name. Columns: {', '.join(column_names)}.")
    for candidate in (name, columns.sanitise(name.strip())):
        if candidate in column_names:
            return candidate
    raise ConfigError(f"The {noun} '{name}' ({flag}) is not a column of the data. Columns: "
                      f"{', '.join(column_names)}.")


def check_columns(column_names: Sequence[str], label: str, drop_columns: Sequence[str] = (),
                  slice_feature: str = "") -> Tuple[str, List[str], str]:
    """(label, dropped columns, slice feature) as the data names them; each must be a column.

    The label cannot be dropped or sliced by, the slice feature cannot be dropped, and at least
    one feature must remain.
    """
    label_name = find_column(label, column_names, "label")
    dropped = [find_column(name, column_names, "drop_columns") for name in drop_columns]
    if label_name in dropped:
        raise ConfigError(f"The columns to drop {list(drop_columns)} (--drop-columns) include the label "
                          f"'{label_name}'; the label cannot be dropped.")
    if not [n for n in column_names if n != label_name and n not in dropped]:
        raise ConfigError(f"No feature is left: the data has only the label '{label_name}' and the dropped "
                          f"columns {dropped}. Drop fewer columns.")
    slice_name = ""
    if slice_feature:
        slice_name = find_column(slice_feature, column_names, "slice_feature")
        if slice_name == label_name:
            raise ConfigError(f"The slice feature '{slice_feature}' (--slice-feature) is the label; slice the "
                              "metrics by a feature instead.")
        if slice_name in dropped:
            raise ConfigError(f"The slice feature '{slice_feature}' (--slice-feature) is also a column to drop "
                              "(--drop-columns); a dropped column cannot slice the metrics.")
    return label_name, dropped, slice_name


def label_problem_types(values: pd.Series, problem_type: str, label: str,
                        where: Callable[[int], str]) -> Tuple[Tuple[str, ...], str]:
    """The problem types the label's first values allow, and why, in words for a message.

    Raises ConfigError when ``problem_type`` contradicts them: regression on a text label, binary
    on a label with more than two classes, auto on a text label with more classes than auto takes.
    ``values`` are the label's raw strings, NaN where missing; ``where(i)`` names row ``i`` in its file.
    """
    values = values.reset_index(drop=True)
    present = values.dropna()
    if present.empty:
        return ALL_PROBLEM_TYPES if problem_type == keys.AUTO else (problem_type,), ""
    numbers_ = pd.to_numeric(present, errors="coerce")
    text = present[numbers_.isna()]
    classes = sorted(set(present.astype(str))) if len(text) else sorted(set(numbers_.tolist()))
    n, shown = len(classes), _preview(classes)
    counted = f"{n} distinct values in its first {len(values):,} rows ({shown})"
    if problem_type == keys.REGRESSION and len(text):
        raise ConfigError("The problem type regression (--problem) needs a numeric label, but "
                          f"the label '{label}' holds {text.iloc[0]!r} on {where(int(text.index[0]))}. Use "
                          "binary, multiclass or auto, or another label column.")
    if problem_type == keys.BINARY and n > 2:
        raise ConfigError("The problem type binary (--problem) needs a label with two classes, "
                          f"but the label '{label}' has {counted}. Use multiclass, or auto.")
    if problem_type != keys.AUTO:
        return (problem_type,), ""
    if len(text):
        if n > labels.MAX_AUTO_CLASSES:
            raise ConfigError(f"The label '{label}' is text with {counted}: more than the "
                              f"{labels.MAX_AUTO_CLASSES} classes the problem type auto accepts. Pass multiclass "
                              f"as {describe('problem_type')} if that many classes is intended, or check the "
                              "label name.")
        return ((keys.MULTICLASS,) if n > 2 else (keys.BINARY, keys.MULTICLASS)), \
            f" (label '{label}' holds text)"
    if not all(math.isfinite(v) and v == math.floor(v) for v in classes):
        return (keys.REGRESSION,), f" (label '{label}' holds decimals, so auto means regression)"
    if n > labels.MAX_AUTO_CLASSES:
        return (keys.REGRESSION,), f" (label '{label}' has {counted})"
    # Two integer values: auto makes it binary, or multiclass if later rows bring more classes;
    # regression would take more than MAX_AUTO_CLASSES distinct values after these two.
    return ((keys.MULTICLASS, keys.REGRESSION) if n > 2 else (keys.BINARY, keys.MULTICLASS)), ""


def _preview(classes: List[Any], n: int = 5) -> str:
    whole = [int(c) if isinstance(c, float) and math.isfinite(c) and c == int(c) else c for c in classes[:n]]
    shown = ", ".join(repr(c) for c in whole)
    return shown + (", ..." if len(classes) > n else "")


# --- everything a training run takes ------------------------------------------------------------


def check_values(params: Mapping[str, Any]) -> None:
    """Checks each training parameter's value on its own, without reading any file.

    Missing parameters take their defaults. ``prodml submit`` runs these too, since the data and
    user modules of a cluster run may not be readable from where it is submitted.
    """
    if params.get("model_name") is not None:
        check_model_name(params["model_name"], "model name (model_name)")
    problem_type = check_problem_type(params.get("problem_type", keys.AUTO))
    check_positive_int(params.get("epochs", defaults.EPOCHS), "epochs")
    check_positive_int(params.get("batch_size", defaults.BATCH_SIZE), "batch_size")
    check_seed(params.get("seed", defaults.SEED))
    check_tolerance(params.get("tolerance", defaults.TOLERANCE))
    check_split_ratios(params.get("split_ratios"))
    thresholds = check_threshold_values(params.get("thresholds") or {})
    # Without the data, auto may still become any problem type.
    check_threshold_names(thresholds, (problem_type,) if problem_type != keys.AUTO else ALL_PROBLEM_TYPES)
    check_hyperparameters(params.get("hyperparameters") or {})
    canary = check_canary_percent(params.get("canary_traffic_percent", 100))
    from prodml.components.deploy.executor import check_deployment

    check_deployment(params.get("serving_protocol", "rest"), params.get("deployment_mode", ""), max(canary, 1))
    check_namespace(params.get("deploy_namespace", ""))
    check_string_list(params.get("drop_columns") or [], "drop_columns")
    check_string_list(params.get("beam_args") or [], "beam_args")
    if params.get("na_values") is not None:
        check_string_list(params["na_values"], "na_values")
    check_no_password(params.get("metadata_connection") or "")


def check_no_password(connection: str) -> None:
    """A password must not travel as a pipeline parameter: KFP stores, shows and records those."""
    from prodml.components.common import lineage

    if isinstance(connection, str) and lineage.redact(connection) != connection:
        raise ConfigError(
            f"metadata_connection '{lineage.redact(connection)}' carries a password, which Kubeflow "
            "Pipelines would store and show with the run's parameters. Drop it from the URL "
            "(mysql://USER@HOST:3306/DB) and give it as $PRODML_METADATA_PASSWORD, in the cluster "
            "from a Kubernetes Secret (compile or submit with PRODML_METADATA_SECRET=<secret name>).")


def check_training(data_uri: str, label: str, model_name: str, params: Mapping[str, Any],
                   known_parameters: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """Checks a training run's parameters and the data's header; returns ``params`` ready to run.

    ``params`` are the further ``training_pipeline`` parameters (``known_parameters``, when
    given, are their valid names). The returned copy names the slice feature as the data does
    (a raw header name becomes its sanitised form). Reads only the header and first
    :data:`SAMPLE_ROWS` rows of the first input file.
    """
    params = dict(params)
    if known_parameters is not None:
        check_parameter_names(params, known_parameters)
    check_model_name(model_name, "model name (--model-name)")
    check_values(params)
    problem_type = params.get("problem_type", keys.AUTO)
    thresholds = check_threshold_values(params.get("thresholds") or {})
    drop_columns = params.get("drop_columns") or []
    na_values = params.get("na_values")
    check_user_module(params.get("preprocessing_module", ""), "preprocessing_module", "preprocessing_fn")
    check_user_module(params.get("trainer_module", ""), "trainer_module", "run_fn")
    check_file(params.get("user_schema_uri", ""), "user_schema_uri", "schema file")
    check_file(params.get("baseline_statistics_uri", ""), "baseline_statistics_uri", "statistics artifact")

    sample = read_sample(data_uri, na_values=na_values)
    if sample is None:  # a header without rows: ingest says so
        return params  # check_values checked the threshold names against every problem type
    label_name, _, slice_name = check_columns(list(sample.frame.columns), label, drop_columns,
                                              params.get("slice_feature", ""))
    if slice_name:
        params["slice_feature"] = slice_name
    if params.get("split_column"):
        split_name = find_column(params["split_column"], list(sample.frame.columns), "split_column")
        if split_name == label_name or split_name in {find_column(c, list(sample.frame.columns), "drop_columns")
                                                      for c in drop_columns}:
            raise ConfigError(f"The split column '{params['split_column']}' (--split-column) is also the label or a "
                              "column to drop; name a column that only says which split each row goes to.")
    problem_types, why = label_problem_types(sample.frame[label_name], problem_type, label_name, sample.where)
    check_threshold_names(thresholds, problem_types, why)
    return params
