"""The JSON files inside artifact folders, typed: one class per file, read and written only here.

| file (in folder)                       | class        | written by | read by                          |
|----------------------------------------|--------------|------------|----------------------------------|
| ``data_version.json`` (examples)       | DataVersion  | ingest     | validate, transform, evaluate, push |
| ``label_info.json`` (transform graph)  | Label        | transform  | train                            |
| ``prodml_model.json`` (model)          | ModelInfo    | train      | evaluate, push, serving          |
| ``evaluation.json`` (evaluation)       | Evaluation   | evaluate   | push, the run summary            |
| ``blessing.json`` (blessing)           | Blessing     | evaluate   | push, the run summary            |
| ``infra_blessing.json`` (infra blessing) | InfraBlessing | infra_validate | push, the run summary      |
| ``edge_export.json`` (edge models)     | EdgeExport   | export     | push                             |
| ``model_card.json`` (registry version) | ModelCard    | push       | evaluate (re-run check)          |
| ``monitoring.json`` (monitoring)       | Monitoring   | monitor    | ``prodml monitor``, the monitoring pipeline |
| ``inferenceservice.yaml`` (version)    | read_inferenceservice / write_inferenceservice | push | deploy |

The label (name, problem type, classes) lives in ``data_version.json`` (ingest decides it),
``label_info.json`` (train reads only the transform graph) and ``prodml_model.json`` (a model
folder must say what it predicts on its own, for serving and the registry).

``X.read(folder)`` checks every field and raises :class:`InputDataError` with one paragraph
naming the file, the field and what to do; ``x.write(folder)`` writes the file atomically.
Fields a newer writer adds are kept in ``extra`` and written back unchanged.
"""

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar

from prodml.components.common import dataio, keys
from prodml.components.common.errors import InputDataError

T = TypeVar("T", bound="_JsonFile")

_NUMBER = (int, float)
PROBLEM_TYPES = (keys.BINARY, keys.MULTICLASS, keys.REGRESSION)
FEATURE_KINDS = (keys.INT, keys.FLOAT, keys.BYTES)


class _Fields:
    """Reads the fields of one JSON object, naming the file and field in every error."""

    def __init__(self, data: Any, path: str, producer: str, prefix: str = ""):
        self.path, self.producer, self.prefix = path, producer, prefix
        if not isinstance(data, dict):
            self.fail("", f"is {_kind(data)}, not an object")
        self.data = data

    def fail(self, name: str, problem: str):
        field = f"field '{self.prefix}{name}'" if name or self.prefix else "the top level"
        raise InputDataError(
            f"{self.path} is malformed: {field} {problem}. This file is written by {self.producer}: "
            f"re-run {self.producer}, or give the artifact folder that it wrote.")

    def get(self, name: str, types, optional: bool = False, default: Any = None) -> Any:
        if name not in self.data or (optional and self.data[name] is None):
            if optional:
                return default
            self.fail(name, "is missing")
        value = self.data[name]
        if not _is(value, types):
            self.fail(name, f"is {_kind(value)}{_preview(value)}, expected {_names(types)}")
        return value

    def choice(self, name: str, allowed: Tuple[str, ...]) -> str:
        value = self.get(name, str)
        if value not in allowed:
            self.fail(name, f"is '{value}', expected one of {', '.join(allowed)}")
        return value

    def mapping(self, name: str, value_types, optional: bool = False, allowed: Tuple = ()) -> Dict[str, Any]:
        value = self.get(name, dict, optional, {})
        for key, item in value.items():
            if not _is(item, value_types) or (allowed and item not in allowed):
                expected = f"one of {', '.join(allowed)}" if allowed else _names(value_types)
                self.fail(f"{name}.{key}", f"is {_kind(item)}{_preview(item)}, expected {expected}")
        return dict(value)

    def sequence(self, name: str, item_types, optional: bool = False) -> Optional[List[Any]]:
        value = self.get(name, list, optional, None)
        for i, item in enumerate(value or []):
            if not _is(item, item_types):
                self.fail(f"{name}[{i}]", f"is {_kind(item)}{_preview(item)}, expected {_names(item_types)}")
        return value if value is None else list(value)

    def nested(self, name: str) -> "_Fields":
        return _Fields(self.get(name, dict), self.path, self.producer, f"{self.prefix}{name}.")

    def extra(self, known) -> Dict[str, Any]:
        names = {f.name for f in known}
        return {k: v for k, v in self.data.items() if k not in names}


def _is(value: Any, types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool) and bool not in types:
        return False  # JSON true is not a number
    return isinstance(value, types)


def _names(types) -> str:
    types = types if isinstance(types, tuple) else (types,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "an object"}
    if set(types) == {int, float}:
        return "a number"
    return " or ".join(names.get(t, t.__name__) for t in types)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def _preview(value: Any) -> str:
    """`` ('text')`` after a value's kind in messages; nothing for null, lists and objects."""
    if isinstance(value, (dict, list)) or value is None:
        return ""
    text = repr(value)
    return f" ({text[:40]}{'...' if len(text) > 40 else ''})"


def _read_json(folder: str, file_name: str, what: str, producer: str) -> Tuple[Any, str]:
    path = dataio.join(folder, file_name)
    if not dataio.exists(path):
        raise InputDataError(f"{path} is missing: {folder} is not {what}. Give the folder that {producer} "
                             f"wrote, or re-run {producer}.")
    try:
        return json.loads(dataio.read_text(path)), path
    except json.JSONDecodeError as e:
        raise InputDataError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                             f"{producer} writes it whole, so the file was changed or cut short. "
                             f"Re-run {producer}.") from e
    except UnicodeDecodeError as e:
        raise InputDataError(f"{path} is not UTF-8 text ({e.reason}); re-run {producer}.") from e


class _JsonFile:
    """One JSON file of an artifact folder: ``FILE``, what the folder is, and which step writes it."""

    FILE = ""
    WHAT = ""
    PRODUCER = ""

    @classmethod
    def path(cls, folder: str) -> str:
        """Where the file is in ``folder``."""
        return dataio.join(folder, cls.FILE)

    @classmethod
    def exists(cls, folder: str) -> bool:
        return dataio.exists(cls.path(folder))

    @classmethod
    def read(cls: Type[T], folder: str) -> T:
        """Reads and checks the file in ``folder``; InputDataError names the file and field."""
        data, path = _read_json(folder, cls.FILE, cls.WHAT, cls.PRODUCER)
        return cls._parse(_Fields(data, path, cls.PRODUCER))

    @classmethod
    def from_dict(cls: Type[T], data: Mapping[str, Any], where: str = "") -> T:
        """Checks a dict with the file's content (``where`` names it in errors)."""
        return cls._parse(_Fields(dict(data), where or cls.FILE, cls.PRODUCER))

    @classmethod
    def _parse(cls: Type[T], fields: _Fields) -> T:
        raise NotImplementedError

    def to_dict(self) -> Dict[str, Any]:
        raise NotImplementedError

    def write(self, folder: str) -> str:
        """Writes the file into ``folder`` atomically; returns its path."""
        path = self.path(folder)
        dataio.write_json(path, self.to_dict())
        return path


@dataclasses.dataclass(frozen=True)
class Label(_JsonFile):
    """What the model predicts: the label column, the problem type and, for classification, the classes.

    ``classes`` are the label's distinct values as strings, sorted (numerically when the label
    is numeric); for binary, ``classes[1]`` is the positive class. None for regression.
    """

    name: str
    problem_type: str
    classes: Optional[List[str]] = None

    FILE = keys.LABEL_INFO_FILE
    WHAT = "a transform graph folder written by transform"
    PRODUCER = "transform"

    @classmethod
    def _parse(cls, fields: _Fields) -> "Label":
        name = fields.get("name", str)
        if not name:
            fields.fail("name", "is empty")
        problem_type = fields.choice("problem_type", PROBLEM_TYPES)
        classes = fields.sequence("classes", str, optional=True)
        if problem_type != keys.REGRESSION and (classes is None or len(classes) < 2):
            found = "is missing" if classes is None else f"has {len(classes)} entries"
            fields.fail("classes", f"{found}; a {problem_type} label needs its list of classes (at least two)")
        if problem_type == keys.BINARY and len(classes) != 2:
            fields.fail("classes", f"has {len(classes)} entries; a binary label has exactly two")
        return cls(name, problem_type, classes if problem_type != keys.REGRESSION else None)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "problem_type": self.problem_type,
                "classes": list(self.classes) if self.classes is not None else None}

    def describe(self) -> str:
        """E.g. ``'big_tipper' (binary, classes ['0', '1'])``, for messages."""
        classes = f", classes {self.classes}" if self.classes else ""
        return f"'{self.name}' ({self.problem_type}{classes})"


@dataclasses.dataclass(frozen=True)
class DataVersion(_JsonFile):
    """``data_version.json`` of an examples folder: what ingest read, and the label it decided."""

    source_uri: str
    sha256: str
    size_bytes: int
    row_counts: Dict[str, int]
    split_ratios: Dict[str, float]
    columns: Dict[str, str]
    dropped_columns: List[str]
    label: Label
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    FILE = keys.DATA_VERSION_FILE
    WHAT = "an examples folder written by ingest"
    PRODUCER = "ingest"

    @classmethod
    def _parse(cls, fields: _Fields) -> "DataVersion":
        label = Label._parse(_Fields(fields.get("label", dict), fields.path, cls.PRODUCER, "label."))
        columns = fields.mapping("columns", str, allowed=FEATURE_KINDS)
        if label.name not in columns:
            fields.fail("columns", f"does not list the label '{label.name}' (it lists {', '.join(sorted(columns))})")
        return cls(source_uri=fields.get("source_uri", str), sha256=fields.get("sha256", str),
                   size_bytes=fields.get("size_bytes", int), row_counts=fields.mapping("row_counts", int),
                   split_ratios=fields.mapping("split_ratios", _NUMBER), columns=columns,
                   dropped_columns=fields.sequence("dropped_columns", str, optional=True) or [],
                   label=label, extra=fields.extra(dataclasses.fields(cls)))

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "source_uri": self.source_uri, "sha256": self.sha256, "size_bytes": self.size_bytes,
                "row_counts": dict(self.row_counts), "split_ratios": dict(self.split_ratios),
                "columns": dict(self.columns), "dropped_columns": list(self.dropped_columns),
                "label": self.label.to_dict()}

    def summary(self) -> Dict[str, Any]:
        """The part a run summary shows: fingerprint, source and rows per split."""
        return {"sha256": self.sha256, "source_uri": self.source_uri, "row_counts": dict(self.row_counts)}


@dataclasses.dataclass(frozen=True)
class ModelInfo(_JsonFile):
    """``prodml_model.json`` of a model folder: what the SavedModel predicts, from which inputs, how trained."""

    label: Label
    raw_features: Dict[str, str]
    signatures: Dict[str, Any] = dataclasses.field(default_factory=dict)
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    history: Dict[str, List[float]] = dataclasses.field(default_factory=dict)
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    FILE = keys.MODEL_INFO_FILE
    WHAT = "a model folder written by prodml's train"
    PRODUCER = "train"

    @classmethod
    def _parse(cls, fields: _Fields) -> "ModelInfo":
        label = Label._parse(_Fields(fields.get("label", dict), fields.path, cls.PRODUCER, "label."))
        return cls(label=label, raw_features=fields.mapping("raw_features", str, allowed=FEATURE_KINDS),
                   signatures=fields.get("signatures", dict, optional=True, default={}),
                   params=fields.get("params", dict, optional=True, default={}),
                   history=fields.get("history", dict, optional=True, default={}),
                   metrics=fields.mapping("metrics", _NUMBER, optional=True),
                   extra=fields.extra(dataclasses.fields(cls)))

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "label": self.label.to_dict(), "raw_features": dict(self.raw_features),
                "signatures": self.signatures, "params": self.params, "history": self.history,
                "metrics": self.metrics}

    def training_config(self) -> Dict[str, Any]:
        """What makes two trainings the same: parameters, label and raw features."""
        return {"params": self.params, "label": self.label.to_dict(), "raw_features": self.raw_features}


@dataclasses.dataclass(frozen=True)
class Evaluation(_JsonFile):
    """``evaluation.json``: metrics on the eval split, per slice, the baseline and the pushed model."""

    metrics: Dict[str, float]
    key_metric: str
    baseline: Dict[str, Any] = dataclasses.field(default_factory=dict)
    slices: Dict[str, Dict[str, Dict[str, float]]] = dataclasses.field(default_factory=dict)
    candidate_vs_pushed: Dict[str, Any] = dataclasses.field(default_factory=dict)
    confusion_matrix: Optional[Dict[str, Any]] = None
    roc: Optional[List[Dict[str, float]]] = None
    model_uri: str = ""
    examples_uri: str = ""
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    FILE = keys.EVALUATION_FILE
    WHAT = "an evaluation folder written by evaluate"
    PRODUCER = "evaluate"

    @classmethod
    def _parse(cls, fields: _Fields) -> "Evaluation":
        return cls(metrics=fields.mapping("metrics", _NUMBER), key_metric=fields.get("key_metric", str),
                   baseline=fields.get("baseline", dict, optional=True, default={}),
                   slices=fields.get("slices", dict, optional=True, default={}),
                   candidate_vs_pushed=fields.get("candidate_vs_pushed", dict, optional=True, default={}),
                   confusion_matrix=fields.get("confusion_matrix", dict, optional=True),
                   roc=fields.sequence("roc", dict, optional=True),
                   model_uri=fields.get("model_uri", str, optional=True, default=""),
                   examples_uri=fields.get("examples_uri", str, optional=True, default=""),
                   extra=fields.extra(dataclasses.fields(cls)))

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "metrics": self.metrics, "key_metric": self.key_metric, "baseline": self.baseline,
                "slices": self.slices, "candidate_vs_pushed": self.candidate_vs_pushed,
                "confusion_matrix": self.confusion_matrix, "roc": self.roc, "model_uri": self.model_uri,
                "examples_uri": self.examples_uri}


@dataclasses.dataclass(frozen=True)
class Blessing(_JsonFile):
    """``blessing.json``: whether the candidate may be pushed, every check as a sentence, and the
    pushed version it was compared to (None when nothing was pushed yet)."""

    blessed: bool
    reasons: List[str]
    compared_to: Optional[int] = None

    FILE = keys.BLESSING_FILE
    WHAT = "a blessing folder written by evaluate"
    PRODUCER = "evaluate"

    @classmethod
    def _parse(cls, fields: _Fields) -> "Blessing":
        return cls(blessed=fields.get("blessed", bool), reasons=fields.sequence("reasons", str),
                   compared_to=fields.get("compared_to", int, optional=True))

    def to_dict(self) -> Dict[str, Any]:
        return {"blessed": self.blessed, "reasons": list(self.reasons), "compared_to": self.compared_to}


@dataclasses.dataclass(frozen=True)
class InfraBlessing(_JsonFile):
    """``infra_blessing.json``: whether the candidate loads and answers in the serving runtime.

    ``reasons`` say every check as a sentence; ``figures`` are what was measured (start-to-ready
    seconds, load and warm-up seconds, the largest prediction difference per protocol, latency
    percentiles at the tested concurrency) and ``bounds`` the limits they were held to.
    """

    blessed: bool
    reasons: List[str]
    figures: Dict[str, Any] = dataclasses.field(default_factory=dict)
    bounds: Dict[str, float] = dataclasses.field(default_factory=dict)
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    FILE = keys.INFRA_BLESSING_FILE
    WHAT = "an infra blessing folder written by infra_validate"
    PRODUCER = "infra_validate"

    @classmethod
    def _parse(cls, fields: _Fields) -> "InfraBlessing":
        return cls(blessed=fields.get("blessed", bool), reasons=fields.sequence("reasons", str),
                   figures=fields.get("figures", dict, optional=True, default={}),
                   bounds=fields.mapping("bounds", _NUMBER, optional=True),
                   extra=fields.extra(dataclasses.fields(cls)))

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "blessed": self.blessed, "reasons": list(self.reasons), "figures": self.figures,
                "bounds": dict(self.bounds)}


@dataclasses.dataclass(frozen=True)
class EdgeExport(_JsonFile):
    """``edge_export.json``: what export did for each requested edge format.

    ``formats`` maps a format (``keys.EDGE_FILES``) to ``{"written": bool, "file": "edge/<name>" or
    null, "size_bytes", "max_difference" (largest absolute difference from the SavedModel on
    ``parity_rows`` eval rows), "parity_rows", "p50_ms", "saved_model_p50_ms" (per-row latency of
    the format and of the SavedModel, measured side by side), "reason"}``; a format is written only
    when its difference is within ``tolerance``, and ``reason`` says why it was or was not.
    """

    formats: Dict[str, Dict[str, Any]]
    tolerance: float
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    FILE = keys.EDGE_EXPORT_FILE
    WHAT = "an edge models folder written by export"
    PRODUCER = "export"

    @classmethod
    def _parse(cls, fields: _Fields) -> "EdgeExport":
        formats = fields.mapping("formats", dict)
        for name, entry in formats.items():
            nested = _Fields(entry, fields.path, fields.producer, f"formats.{name}.")
            nested.get("written", bool)
            nested.get("reason", str)
            nested.get("file", str, optional=True)
        return cls(formats=formats, tolerance=fields.get("tolerance", _NUMBER),
                   extra=fields.extra(dataclasses.fields(cls)))

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "formats": self.formats, "tolerance": self.tolerance}

    def written(self) -> Dict[str, str]:
        """Format → its file, relative to the folder, for the formats that passed parity."""
        return {name: entry["file"] for name, entry in sorted(self.formats.items())
                if entry["written"] and entry.get("file")}


@dataclasses.dataclass(frozen=True)
class Monitoring(_JsonFile):
    """``monitoring.json``: one monitor run over a window of served traffic, and its decision.

    ``retrain`` and ``reasons`` are the decision (every check as a sentence); ``drift`` maps each raw
    feature to its scores (``{"js"|"linf": TFDV's number, "psi": population stability index}``) and
    ``drifted_features`` names those above a bound; ``quality`` holds the live metrics on the
    labelled rows (empty without labels), ``evaluation`` the same metrics at evaluation, and
    ``label_match_rate`` the share of traffic rows that found a label. ``skew``, ``prediction_drift``,
    ``operational``, ``business``, ``sources`` and ``thresholds`` are the rest of the run's figures.
    """

    model_name: str
    version: int
    rows: int
    retrain: bool
    reasons: List[str]
    drift: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)
    drifted_features: List[str] = dataclasses.field(default_factory=list)
    quality: Dict[str, float] = dataclasses.field(default_factory=dict)
    evaluation: Dict[str, float] = dataclasses.field(default_factory=dict)
    label_match_rate: Optional[float] = None
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    FILE = keys.MONITORING_FILE
    WHAT = "a monitoring folder written by monitor"
    PRODUCER = "monitor"

    @classmethod
    def _parse(cls, fields: _Fields) -> "Monitoring":
        return cls(model_name=fields.get("model_name", str), version=fields.get("version", int),
                   rows=fields.get("rows", int), retrain=fields.get("retrain", bool),
                   reasons=fields.sequence("reasons", str),
                   drift=fields.mapping("drift", dict, optional=True),
                   drifted_features=fields.sequence("drifted_features", str, optional=True) or [],
                   quality=fields.mapping("quality", _NUMBER, optional=True),
                   evaluation=fields.mapping("evaluation", _NUMBER, optional=True),
                   label_match_rate=fields.get("label_match_rate", _NUMBER, optional=True),
                   extra=fields.extra(dataclasses.fields(cls)))

    def to_dict(self) -> Dict[str, Any]:
        return {**self.extra, "model_name": self.model_name, "version": self.version, "rows": self.rows,
                "retrain": self.retrain, "reasons": list(self.reasons), "drift": self.drift,
                "drifted_features": list(self.drifted_features), "quality": dict(self.quality),
                "evaluation": dict(self.evaluation), "label_match_rate": self.label_match_rate}


@dataclasses.dataclass(frozen=True)
class ModelCard(_JsonFile):
    """``model_card.json`` of a pushed version (content built by push's ``model_card``).

    Only the field other steps rely on is checked: the SHA-256 of the training data, which
    evaluate compares to tell a re-run from new data.
    """

    content: Dict[str, Any]

    FILE = keys.MODEL_CARD_JSON
    WHAT = "a registry version written by push"
    PRODUCER = "push"

    @classmethod
    def _parse(cls, fields: _Fields) -> "ModelCard":
        fields.nested("data").get("sha256", str)
        return cls(dict(fields.data))

    def to_dict(self) -> Dict[str, Any]:
        return dict(self.content)

    @property
    def data_sha256(self) -> str:
        return self.content["data"]["sha256"]


def read_inferenceservice(version_folder: str) -> Dict[str, Any]:
    """The InferenceService manifest push wrote beside a registry version, checked enough to apply."""
    import yaml

    path = dataio.join(version_folder, keys.ISVC_FILE)
    producer = "push"
    if not dataio.exists(path):
        raise InputDataError(f"{path} is missing: {version_folder} is not a registry version written by push "
                             "(push writes the InferenceService beside the model). Push the model again.")
    try:
        manifest = yaml.safe_load(dataio.read_text(path))
    except yaml.YAMLError as e:
        raise InputDataError(f"{path} is not valid YAML ({e}); re-run push.") from e
    fields = _Fields(manifest, path, producer)
    if fields.get("kind", str) != "InferenceService":
        fields.fail("kind", f"is '{manifest['kind']}', expected InferenceService")
    metadata = fields.nested("metadata")
    metadata.get("name", str)
    version = metadata.nested("annotations").get(keys.ISVC_VERSION_ANNOTATION, str)
    if not version.isdigit():
        metadata.fail(f"annotations.{keys.ISVC_VERSION_ANNOTATION}", f"is '{version}', expected a version number")
    fields.nested("spec").get("predictor", dict)
    return manifest


def write_inferenceservice(folder: str, yaml_text: str) -> str:
    """Writes the rendered InferenceService YAML into ``folder`` atomically; returns its path."""
    path = dataio.join(folder, keys.ISVC_FILE)
    dataio.write_text_atomic(path, yaml_text)
    return path
