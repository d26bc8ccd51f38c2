"""Retraining the served model on new labelled data, after the monitor decides to (``prodml monitor``).

The new labelled data is ``--retrain-data`` (CSV or Parquet with the model's raw features and its
label), or, without it, the logged traffic joined with the late labels: every logged row whose
join key has a label, once per key (the first time it was served), with the features as the
server logged them and the label from the labels file. The retraining run then gets one prepared
CSV under ``<root>/retrain/<model>/<UTC time>/``, holding exactly the served version's raw features
and label, so that lineage leads from the new version to these bytes.

With ``with_old_data``, the rows the served version was trained on (its ingest's source, found
through ML Metadata, checked against the SHA-256 recorded then) are added with the split column
set to ``train``; the new rows are left to ingest's hash split. The eval split is therefore new
data only, and evaluate compares the candidate with the pushed version on the new data: the
candidate is pushed only if it is at least as good there.

The retraining run takes the served version's training configuration from ML Metadata (problem
type, missing-value markers, split ratios, preprocessing and trainer modules, epochs, batch size,
seed, hyperparameters, slice feature, thresholds, tolerance, infra bounds, export formats), so it
differs from the served version's run only in its data and in what the caller overrides.
"""

import csv
import dataclasses
import json
import os
import sys
import time
import uuid
from typing import Any, Dict, Iterable, List, Mapping, Optional, TextIO, Tuple

from prodml.components.common import artifacts, defaults, keys, lineage, registry
from prodml.components.common.errors import ConfigError, InputDataError, RegistryError
from prodml.components.common.logs import get_logger

log = get_logger(__name__)

# The prepared file's column that pins the old rows to the train split (ingest's split_column).
SPLIT_COLUMN = "prodml_split"
# Training-pipeline parameters that describe the data or the destination rather than how to train:
# the retraining run sets these itself.
_NOT_CARRIED = ("data_uri", "label", "model_name", "registry_uri", "metadata_connection", "drop_columns",
                "split_column", "user_schema_uri", "baseline_statistics_uri", "fail_on_drift",
                "deploy_namespace", "canary_traffic_percent")


@dataclasses.dataclass
class ServedVersion:
    """The version the monitor watched: its model info, its training data and how it was trained."""

    model_name: str
    version: int
    uri: str
    model: artifacts.ModelInfo
    data_version: Optional[artifacts.DataVersion]   # its ingest's data_version.json (None: not recorded)
    params: Dict[str, Any]                          # training-pipeline parameters of its run


def served_version(registry_uri: str, model_name: str, version: int, metadata_connection: str) -> ServedVersion:
    """The version's ModelInfo, and through ML Metadata its training data and training parameters.

    A version without a record in ML Metadata still retrains on new data alone (no old data, the
    default configuration); ``with_old_data`` then fails naming the reason.
    """
    uri = registry.version_uri(registry_uri, model_name, version)
    model = artifacts.ModelInfo.read(uri)
    params: Dict[str, Any] = {}
    data_version = None
    found = lineage.find_artifacts(metadata_connection, uri, lineage.MODEL) if metadata_connection else []
    if found:
        known = _pipeline_parameters()
        store = lineage.connect(metadata_connection)
        for step in reversed(lineage.upstream(metadata_connection, found[0].id)):  # oldest first
            [execution] = store.get_executions_by_id([step["execution_id"]])
            for name, value in lineage.properties_of(execution).items():
                if name in known and name not in _NOT_CARRIED:
                    params[name] = _typed(value, known[name])
            if step["component"] == "ingest" and keys.EXAMPLES_KEY in step["outputs"]:
                data_version = artifacts.DataVersion.read(step["outputs"][keys.EXAMPLES_KEY]["uri"])
    if data_version is not None:
        params["problem_type"] = data_version.label.problem_type
        params["split_ratios"] = dict(data_version.split_ratios)
        if "na_values" in data_version.extra:
            params["na_values"] = [m for m in data_version.extra["na_values"] if m != ""]
    if params.get("trainer_module") == "default":
        params.pop("trainer_module")
    return ServedVersion(model_name, version, uri, model, data_version, params)


def _pipeline_parameters() -> Dict[str, str]:
    """The training pipeline's parameter names and KFP types."""
    from prodml.pipelines.training import training_pipeline

    return {name: spec.type for name, spec in training_pipeline.component_spec.inputs.items()}


def _typed(value: Any, kfp_type: str) -> Any:
    """An MLMD property back as the parameter's type: lists and dicts were stored as JSON text."""
    if isinstance(value, str) and ("List" in kfp_type or "Dict" in kfp_type):  # e.g. typing.Dict[str, float]
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class PreparedCsv:
    """The prepared retraining file: written under a temporary name, renamed when complete."""

    def __init__(self, path: str, columns: List[str]):
        self.path, self.columns = path, columns
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        self._file = open(self._tmp, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(columns)
        self.rows = 0

    def write(self, rows: Iterable[List[Any]]) -> None:
        for row in rows:
            self._writer.writerow(["" if v is None else v for v in row])
            self.rows += 1

    def commit(self) -> str:
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        self._file.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)


def write_labelled_traffic(out: PreparedCsv, traffic_uri: str, labels_uri: str, join_key: str,
                           served: ServedVersion, split: str = "",
                           window: Tuple[str, str] = ("", "")) -> Dict[str, int]:
    """Appends every logged row of ``served``'s model that has a label, once per join key.

    With a ``window`` (ISO start, end; either may be ""), only rows logged in [start, end) count,
    as the monitor counted them; rows without a time (batch outputs) always do.

    Returns the counts: traffic rows read, rows with a label, rows written, repeated keys skipped.
    Rows of another model in the same log are left out.
    """
    from prodml.components.monitor import quality, traffic
    from prodml.components.monitor.executor import parse_time

    start, end = parse_time(window[0], "window_start"), parse_time(window[1], "window_end")
    model = served.model
    labels = quality.load(labels_uri, join_key, model.label)
    joiner = quality.Joiner(labels)
    counts = traffic.Counts()
    features = list(model.raw_features)
    seen: set = set()
    labelled = repeated = 0
    files = traffic.list_files(traffic_uri)
    for chunk in traffic.read(files, model, defaults.MONITOR_CHUNK_ROWS, counts, defaults.MONITOR_MALFORMED_NAMED,
                              join_key=labels.join_key):
        keep = chunk.model_names == served.model_name
        inside = chunk.in_window(start, end) if start is not None or end is not None else None
        if inside is not None:
            keep &= inside
        chunk = chunk.take(keep)
        if not chunk.rows:
            continue
        values = joiner.add(chunk)
        row_keys = chunk.join_keys[labels.join_key]
        if labels.by_row:
            row_keys = [f"{k}#{r}" for k, r in zip(row_keys, chunk.join_keys.get(quality.ROW, [None] * chunk.rows))]
        columns = {name: chunk.features[name].to_pylist() for name in features}
        rows = []
        for i in range(chunk.rows):
            if values[i] != values[i]:  # NaN: no label for this row
                continue
            labelled += 1
            if row_keys[i] in seen:
                repeated += 1
                continue
            seen.add(row_keys[i])
            rows.append([columns[name][i] for name in features] + [_label_text(values[i], model.label)]
                        + ([split] if out.columns[-1] == SPLIT_COLUMN else []))
        out.write(rows)
    if counts.malformed:
        log.warning("%d malformed log lines were skipped, e.g. %s", counts.malformed,
                    "; ".join(counts.malformed_examples))
    return {"traffic_rows": joiner.rows, "labelled_rows": labelled, "written": labelled - repeated,
            "repeated_keys": repeated}


def _label_text(value: float, label: artifacts.Label) -> str:
    """An encoded label (class index, or the number for regression) as the training data writes it."""
    if label.problem_type == keys.REGRESSION:
        return repr(float(value))
    return label.classes[int(value)]


def write_rows_of(out: PreparedCsv, data_uri: str, served: ServedVersion, split: str = "",
                  expected_sha256: str = "", what: str = "the retraining data") -> int:
    """Appends the rows of a CSV or Parquet file (folder, glob), keeping the model's features and label.

    With ``expected_sha256``, the bytes must still be the ones the served version was trained on.
    """
    from prodml.components.ingest import columns as ingest_columns
    from prodml.components.ingest import sources

    wanted = list(served.model.raw_features) + [served.model.label.name]
    fingerprint = sources.Fingerprint()
    files = sources.resolve(data_uri)
    written = 0
    for chunk in sources.read_chunks(files, 50_000, fingerprint, served.params.get("na_values")):
        frame = chunk.frame
        missing = [name for name in wanted if name not in frame.columns]
        if missing:
            raise InputDataError(
                f"{what.capitalize()} {data_uri} lacks column(s) {', '.join(missing)} of {served.model_name} "
                f"v{served.version} (it has {', '.join(frame.columns)}). It needs the model's raw features and its "
                f"label '{served.model.label.name}' ({', '.join(ingest_columns.sanitise(n) for n in wanted)}).")
        frame = frame[wanted].astype(object).where(frame[wanted].notna(), None)
        out.write(row + ([split] if out.columns[-1] == SPLIT_COLUMN else []) for row in frame.values.tolist())
        written += len(frame)
    if expected_sha256 and fingerprint.sha256 != expected_sha256:
        raise InputDataError(
            f"{what.capitalize()} {data_uri} changed since {served.model_name} v{served.version} was trained on "
            f"it (SHA-256 {expected_sha256[:12]}... then, {fingerprint.sha256[:12]}... now), so it is not the old "
            "data any more. Retrain without --with-old-data, or give the data to train on with --retrain-data.")
    return written


def prepare_data(folder: str, served: ServedVersion, traffic_uri: str = "", labels_uri: str = "",
                 join_key: str = "", retrain_data: str = "", with_old_data: bool = False,
                 window: Tuple[str, str] = ("", "")) -> Dict[str, Any]:
    """Writes ``<folder>/retrain_data.csv``: the new labelled rows, and the old ones pinned to train.

    Returns ``{"path", "rows", "new_rows", "old_rows", "old_source", "split_column", "traffic": counts}``.
    """
    if not retrain_data and not (traffic_uri and labels_uri):
        raise ConfigError("Retraining needs new labelled data: give --retrain-data FILE, or the traffic "
                          "(--traffic) and its labels (--labels) to join.")
    old_source = ""
    if with_old_data:
        if served.data_version is None:
            raise RegistryError(
                f"{served.model_name} v{served.version} ({served.uri}) has no training run in ML Metadata, so the "
                "data it was trained on is unknown: retrain without --with-old-data, or put the old rows into "
                "--retrain-data yourself.")
        old_source = served.data_version.source_uri
    features = list(served.model.raw_features)
    if SPLIT_COLUMN in features or served.model.label.name == SPLIT_COLUMN:
        raise ConfigError(f"The model has a column named '{SPLIT_COLUMN}', which retraining uses to pin the old "
                          "rows to the train split. Rename that column.")
    columns = features + [served.model.label.name] + ([SPLIT_COLUMN] if old_source else [])
    out = PreparedCsv(os.path.join(folder, "retrain_data.csv"), columns)
    try:
        counts: Dict[str, int] = {}
        if retrain_data:
            new_rows = write_rows_of(out, retrain_data, served)
        else:
            counts = write_labelled_traffic(out, traffic_uri, labels_uri, join_key, served, window=window)
            new_rows = counts["written"]
        if not new_rows:
            raise InputDataError(
                f"No new labelled row to retrain {served.model_name} on: "
                + (f"{retrain_data} has no rows." if retrain_data else
                   f"none of the {counts['traffic_rows']} traffic rows found a label in {labels_uri}."))
        old_rows = 0
        if old_source:
            old_rows = write_rows_of(out, old_source, served, split=keys.TRAIN,
                                     expected_sha256=served.data_version.sha256,
                                     what=f"the training data of v{served.version}")
        path = out.commit()
    except BaseException:
        out.abort()
        raise
    return {"path": path, "rows": new_rows + old_rows, "new_rows": new_rows, "old_rows": old_rows,
            "old_source": old_source, "split_column": SPLIT_COLUMN if old_source else "", "traffic": counts}


def retrain(root: str, served: ServedVersion, prepared: Mapping[str, Any], overrides: Optional[Dict[str, Any]] = None,
            progress: TextIO = sys.stderr, verbose: bool = False) -> Dict[str, Any]:
    """Runs the training pipeline locally on the prepared data with the served version's configuration.

    Evaluate compares the candidate with the latest pushed version on the eval split, which holds
    new rows only; push publishes it only if it is blessed. Returns the run summary.
    """
    from prodml.pipelines.local import run_training

    params = {**served.params, **(overrides or {})}
    if prepared.get("split_column"):
        params["split_column"] = prepared["split_column"]
    return run_training(prepared["path"], label=served.model.label.name, model_name=served.model_name, root=root,
                        progress=progress, verbose=verbose, **params)


def retrain_folder(root_path: str, model_name: str) -> str:
    """A new folder for one retraining's prepared data: ``<root>/retrain/<model>/<UTC time>-<id>``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return os.path.join(root_path, "retrain", model_name, f"{stamp}-{uuid.uuid4().hex[:6]}")


def monitor(model_name: str, traffic_uri: str, root: Optional[str] = None, version: Any = "latest",
            labels_uri: str = "", join_key: str = "", business_module: str = "", window_start: str = "",
            window_end: str = "") -> Dict[str, Any]:
    """Runs the monitor on a window of traffic of a locally pushed model.

    Its artifacts go to ``<root>/monitoring/<model>/<UTC time>-<id>/`` and its execution to the
    root's ML Metadata. Returns ``{"monitoring": run_monitor's result, "monitoring_dir", "window"}``.
    """
    from prodml.components.monitor.executor import run_monitor
    from prodml.pipelines.local import prepare_root

    local_root = prepare_root(root)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    monitoring_dir = os.path.join(local_root.path, "monitoring", model_name, f"{stamp}-{uuid.uuid4().hex[:6]}")
    result = run_monitor(traffic_uri, local_root.registry, model_name, monitoring_dir, version=version,
                         metadata_connection=local_root.metadata_connection, labels_uri=labels_uri,
                         join_key=join_key, business_module=business_module, window_start=window_start,
                         window_end=window_end)
    return {"monitoring": result, "monitoring_dir": monitoring_dir, "window": (window_start, window_end)}


def why_not_retrain(monitored: Mapping[str, Any], retrain_data: str = "", labels_uri: str = "",
                    allow_retrain: bool = True) -> str:
    """Why a monitored window is not retrained on (a sentence), or "" when it is to be."""
    if not monitored["monitoring"].get("retrain"):
        return "the monitor did not decide to retrain"
    if not allow_retrain:
        return "--no-retrain was given"
    if not (retrain_data or labels_uri):
        return ("there is no new labelled data to retrain on: give the late labels with --labels (joined to the "
                "logged traffic) or a labelled file with --retrain-data")
    return ""


def retrain_after(monitored: Mapping[str, Any], model_name: str, traffic_uri: str, root: Optional[str] = None,
                  labels_uri: str = "", join_key: str = "", retrain_data: str = "", with_old_data: bool = False,
                  overrides: Optional[Dict[str, Any]] = None, progress: TextIO = sys.stderr,
                  verbose: bool = False) -> Dict[str, Any]:
    """Retrains the version the monitor watched: prepares the data, then runs the training pipeline.

    Returns ``{"prepared": what the retraining data holds, "retraining": the run's summary}``.
    """
    from prodml.pipelines.local import prepare_root

    local_root = prepare_root(root)
    served = served_version(local_root.registry, model_name, int(monitored["monitoring"]["version"]),
                            local_root.metadata_connection)
    prepared = prepare_data(retrain_folder(local_root.path, model_name), served, traffic_uri=traffic_uri,
                            labels_uri=labels_uri, join_key=join_key, retrain_data=retrain_data,
                            with_old_data=with_old_data, window=tuple(monitored.get("window", ("", ""))))
    log.info("Retraining %s on %d new labelled rows%s; the eval split holds new rows only.", model_name,
             prepared["new_rows"], f" and {prepared['old_rows']} rows v{served.version} was trained on"
             if prepared["old_rows"] else "")
    summary = retrain(local_root.path, served, prepared, overrides, progress=progress, verbose=verbose)
    return {"prepared": prepared, "retraining": summary}


def monitor_and_retrain(model_name: str, traffic_uri: str, root: Optional[str] = None, version: Any = "latest",
                        labels_uri: str = "", join_key: str = "", business_module: str = "",
                        window_start: str = "", window_end: str = "", retrain_data: str = "",
                        with_old_data: bool = False, allow_retrain: bool = True,
                        overrides: Optional[Dict[str, Any]] = None, progress: TextIO = sys.stderr,
                        verbose: bool = False) -> Dict[str, Any]:
    """What ``prodml monitor`` does, as a function (e.g. for a notebook): monitor, then retrain if it says so.

    Returns ``{"monitoring", "monitoring_dir", "not_retrained": the reason or "", "prepared", "retraining"}``
    (the last two None when nothing was retrained).
    """
    outcome = monitor(model_name, traffic_uri, root, version, labels_uri, join_key, business_module, window_start,
                      window_end)
    outcome.update(prepared=None, retraining=None,
                   not_retrained=why_not_retrain(outcome, retrain_data, labels_uri, allow_retrain))
    if not outcome["not_retrained"]:
        outcome.update(retrain_after(outcome, model_name, traffic_uri, root, labels_uri, join_key, retrain_data,
                                     with_old_data, overrides, progress, verbose))
    return outcome
