"""The prediction core shared by every engine: raw cells → model columns → prediction columns.

Beam, Spark, the in-process runner and the tests all score through :func:`score_chunk`, so the
numbers cannot differ between engines. A raw cell is text (or None when absent), whatever the
input format. It becomes the column the SavedModel's ``serving_default`` signature takes, by the
rules of training and online serving:

- a missing cell (empty, or exactly one of ``na_values``, spaces and case included, as ingest
  matches them) is ``NaN`` for INT and FLOAT features and ``""`` for BYTES features; the
  signature turns those into absent values, exactly as ingest's ``tf.Example`` without the feature;
- INT features are ``float64`` and must hold whole numbers; FLOAT features are ``float32`` and
  must hold finite numbers within float32's range (the predictor answers 400 for the same
  values); BYTES features take the text as it is.

A row whose cell breaks these rules is not scored: it becomes a dead letter with the reason.
"""

import dataclasses
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from prodml.components.common import artifacts, keys, registry, saved_models
from prodml.components.common.errors import ConfigError

FLOAT32_MAX = float(np.finfo(np.float32).max)
VERSION_COLUMN = "model_version"
REQUEST_ID_COLUMN = "request_id"
# Rows per call of the signature: large enough that TF's per-call cost vanishes, small enough
# to bound memory.
PREDICT_BATCH_ROWS = 32768
_NUMPY_DTYPE = {keys.INT: np.float64, keys.FLOAT: np.float32}


def prediction_columns(label: artifacts.Label) -> List[str]:
    """The prediction columns written for a label, in output order.

    binary: ``probability_<positive class>``, ``predicted_<label>``; multiclass:
    ``probability_<class>`` per class, ``predicted_<label>``; regression: ``predicted_<label>``.
    """
    predicted = f"predicted_{label.name}"
    if label.problem_type == keys.REGRESSION:
        return [predicted]
    classes = label.classes if label.problem_type == keys.MULTICLASS else label.classes[1:]
    return [f"probability_{c}" for c in classes] + [predicted]


def output_columns(label: artifacts.Label, carried: Sequence[str]) -> List[str]:
    """Carried columns, then the prediction columns, then ``model_version`` and ``request_id``.

    A ConfigError names a carried column that would collide with a prediction column.
    """
    added = prediction_columns(label) + [VERSION_COLUMN, REQUEST_ID_COLUMN]
    clash = [c for c in carried if c in added]
    if clash:
        raise ConfigError(f"The input column '{clash[0]}' has the name of an output column that batch "
                          f"prediction adds ({', '.join(added)}). Carry only ID columns (--id-columns) "
                          "that do not use these names, or rename the column.")
    return list(carried) + added


@dataclasses.dataclass
class Chunk:
    """Consecutive input rows as raw text.

    ``cells`` maps each column to an object array of str or None (absent); ``raw`` is each row's
    text as read (for dead letters); ``rows`` are 1-based row numbers in ``file``; ``lines``
    (CSV only) the line each row starts on; ``broken`` maps a row index to why the row could not
    even be split into cells (wrong number of fields, bytes that are not UTF-8).
    """

    file: str
    cells: Dict[str, np.ndarray]
    raw: List[str]
    rows: np.ndarray
    lines: Optional[np.ndarray] = None
    broken: Dict[int, str] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.raw)


@dataclasses.dataclass
class Scored:
    """The result of one chunk: output columns of the scored rows, and the dead letters."""

    columns: Dict[str, np.ndarray]
    dead_letters: List[dict]

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


class Model:
    """A model version loaded for scoring: its ``serving_default`` signature and what it predicts."""

    def __init__(self, model_dir: str, version: Optional[int] = None):
        from prodml.components.common.heavy_imports import import_tensorflow

        tf = import_tensorflow()

        self.model_dir = model_dir
        self.version = version
        self.info = artifacts.ModelInfo.read(model_dir)
        self.label = self.info.label
        self.features: Dict[str, str] = dict(sorted(self.info.raw_features.items()))
        self._loaded, self._fn = saved_models.load_signature(
            model_dir, keys.RAW_SIGNATURE, "Give a registry version or the model folder that train wrote.")
        self._tf = tf
        self._warm_up()

    def _warm_up(self) -> None:
        """Calls the signature once on one row of missing values.

        TensorFlow instantiates and optimises a function's graph on its first call, which costs
        more than scoring tens of thousands of rows. Doing it here, once, under the loading lock
        (:func:`worker.load_model`), spares every worker thread from paying it again on its first
        batch. A model that cannot score missing values is left for the real rows to report.
        """
        row = {name: np.array([""], dtype=object) if kind == keys.BYTES
               else np.array([np.nan], dtype=_NUMPY_DTYPE[kind]) for name, kind in self.features.items()}
        try:
            self.predict(row)
        except (self._tf.errors.OpError, ValueError, TypeError):
            pass

    def predict(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The signature's ``predictions`` for model columns, in batches of PREDICT_BATCH_ROWS rows."""
        n = len(next(iter(columns.values())))
        out = []
        for start in range(0, n, PREDICT_BATCH_ROWS):
            tensors = {name: self._tf.constant(col[start:start + PREDICT_BATCH_ROWS])
                       for name, col in columns.items()}
            out.append(self._fn(**tensors)[keys.PREDICTIONS].numpy())
        return np.concatenate(out) if out else np.zeros((0,), np.float32)


def version_of(model_dir: str) -> Optional[int]:
    """The registry version a model folder is, from its completion marker; None for a training output."""
    version = registry.read_folder_marker(model_dir).get("version")
    return int(version) if isinstance(version, int) else None


def to_model_columns(cells: Mapping[str, Any], features: Mapping[str, str],
                     na_values: Iterable[str]) -> Tuple[Dict[str, np.ndarray], Dict[int, List[str]]]:
    """Raw cells → one signature column per feature, and the reasons of each row that cannot be scored.

    ``features`` maps feature names to INT, FLOAT or BYTES; every feature must be in ``cells``
    (Arrow string arrays, or object arrays of str/None). The work is done by Arrow's kernels, so no
    Python object is made per numeric cell.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    markers = pa.array(sorted(set(na_values) | {""}), type=pa.string())
    columns: Dict[str, np.ndarray] = {}
    problems: Dict[int, List[str]] = {}
    for name, kind in features.items():
        raw = as_arrow_text(cells[name])
        missing = pc.is_in(raw, value_set=markers)  # false, never null, for a null cell
        if raw.null_count:
            missing = pc.or_(pc.is_null(raw), missing)
        if kind == keys.BYTES:
            columns[name] = pc.if_else(missing, "", raw).to_numpy(zero_copy_only=False)
            continue
        present = pc.if_else(missing, pa.scalar(None, pa.string()), raw)
        numbers = _to_float64(present)
        missing_np = missing.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            unparsed = ~missing_np & np.isnan(numbers)
            infinite = ~missing_np & ~unparsed & ~np.isfinite(numbers)
            if kind == keys.INT:
                out_of_kind = ~missing_np & ~unparsed & ~infinite & (np.mod(numbers, 1) != 0)
                why_kind = "is not a whole number (an INT feature)"
            else:
                out_of_kind = ~missing_np & ~infinite & (np.abs(numbers) > FLOAT32_MAX)
                why_kind = f"is beyond float32's range (±{FLOAT32_MAX:.4g}, a FLOAT feature)"
        for mask, why in ((unparsed, f"is not a number ({kind} feature)"),
                          (infinite, "is not a finite number"), (out_of_kind, why_kind)):
            for i in np.flatnonzero(mask):
                problems.setdefault(int(i), []).append(f"'{name}' {raw[int(i)].as_py()!r:.60} {why}")
        with np.errstate(over="ignore"):  # values beyond float32 are bad rows, left out before scoring
            columns[name] = numbers.astype(_NUMPY_DTYPE[kind])
    return columns, problems


def as_arrow_text(values: Any):
    """Cells as an Arrow string array (an object array of str/None is converted; Arrow is kept)."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values if values.type == pa.string() else values.cast(pa.string())
    return pa.array(values, type=pa.string(), from_pandas=True)


def take_rows(values: Any, mask: np.ndarray) -> Any:
    """The cells of a column where ``mask`` is true (Arrow or numpy alike)."""
    import pyarrow as pa

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.filter(pa.array(mask))
    return values[mask]


def _to_float64(values) -> np.ndarray:
    """Text cells (null where missing) as float64, NaN where a cell is missing or not a number.

    Arrow's parser first (C speed, correctly rounded like Python's float()); it takes no spaces
    around a number, so it is tried again on trimmed text; when one cell still does not parse,
    pandas' per-cell parser finds which.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    for attempt in (values, None):
        try:
            if attempt is None:
                attempt = pc.utf8_trim_whitespace(values)
            return pc.cast(attempt, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            continue
    return pd.to_numeric(pd.Series(values.to_numpy(zero_copy_only=False), dtype=object),
                         errors="coerce").to_numpy(dtype=np.float64)


def prediction_values(predictions: np.ndarray, label: artifacts.Label) -> Dict[str, np.ndarray]:
    """The model's ``predictions`` as the output's prediction columns (see :func:`prediction_columns`)."""
    names = prediction_columns(label)
    if label.problem_type == keys.REGRESSION:
        return {names[0]: predictions.reshape(-1)}
    classes = np.array(label.classes, dtype=object)
    if label.problem_type == keys.BINARY:
        p = predictions.reshape(-1)
        # The same threshold evaluate's metrics use: P(positive) >= 0.5.
        return {names[0]: p, names[1]: classes[(p >= 0.5).astype(np.int64)]}
    values = {name: predictions[:, i] for i, name in enumerate(names[:-1])}
    values[names[-1]] = classes[np.argmax(predictions, axis=1)]
    return values


def request_id_prefix(data_sha256: str, file_index: int) -> str:
    """The ``request_id`` of every row of input file ``file_index`` starts with this.

    A batch prediction's ``request_id`` is ``<first 16 hex digits of the input's SHA-256>-<index
    of the file among the input's sorted files, from 0>-<row number in that file, from 1>``, e.g.
    ``3f2a9c0d11e4b7a8-0-17``: the same for the same input row in every run over the same data
    (whatever the engine, task split or model), different for different inputs, and never the
    shape of a server's generated id (32 hex digits), so the two cannot collide.
    """
    return f"{data_sha256[:16]}-{file_index}-"


def request_ids(prefix: str, rows: np.ndarray):
    """``prefix`` + each row number, as an Arrow string array (no Python object per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = pc.cast(pa.array(rows, type=pa.int64()), pa.string())
    return pc.binary_join_element_wise(pa.scalar(prefix), numbers, "")


def score_chunk(model: Model, chunk: Chunk, carried: Sequence[str], na_values: Iterable[str],
                id_prefix: str = "") -> Scored:
    """Scores the rows of a chunk that can be scored; the others become dead letters.

    ``id_prefix`` (from :func:`request_id_prefix`) makes each row's ``request_id``; without it
    (a Spark DataFrame scored by ``predict_frames``, which has no input fingerprint) it is null.
    """
    if any(name not in chunk.cells for name in (*model.features, *carried)):
        # tf.Example input: a feature absent from every row of the chunk is absent everywhere.
        absent = np.full(len(chunk), None, dtype=object)
        chunk.cells = {**dict.fromkeys((*model.features, *carried), absent), **chunk.cells}
    columns, problems = to_model_columns(chunk.cells, model.features, na_values)
    for i, why in chunk.broken.items():
        problems[i] = [why]
    bad = np.zeros(len(chunk), dtype=bool)
    bad[list(problems)] = True
    good = ~bad
    dead = [dead_letter(chunk, i, "; ".join(problems[i])) for i in sorted(problems)]
    if not good.any():
        return Scored({}, dead)
    columns = {name: col[good] for name, col in columns.items()}
    predictions = model.predict(columns)
    out: Dict[str, Any] = {name: take_rows(chunk.cells[name], good) for name in carried}
    out.update(prediction_values(predictions, model.label))
    # The registry version; null (None) for a model folder that is not a registry version.
    n = int(good.sum())
    out[VERSION_COLUMN] = (np.full(n, None, dtype=object) if model.version is None
                           else np.full(n, model.version, dtype=np.int64))
    out[REQUEST_ID_COLUMN] = (request_ids(id_prefix, chunk.rows[good]) if id_prefix
                              else np.full(n, None, dtype=object))
    return Scored(out, dead)


def dead_letter(chunk: Chunk, i: int, reason: str) -> dict:
    """One dead letter: where the row is, its raw text and why it was not scored."""
    letter = {"file": chunk.file, "row": int(chunk.rows[i]), "raw": chunk.raw[i], "reason": reason}
    if chunk.lines is not None:
        letter["line"] = int(chunk.lines[i])
    return letter
