"""Live quality: labels that arrived later, joined to the predictions they grade.

Labels are a CSV or Parquet file (or folder/glob of them) with the join key and the label column
(the model's label name). The join key is a pass-through key logged with each row (``--log-passthrough
trip_id``) or ``request_id``; with ``request_id``, a ``row`` column in the labels (the row's index
inside its request, as logged) makes the key exact for requests of several rows. The labels are
held in memory as one index (they are the small side); the traffic streams past it and only the
matched rows' predictions are kept. Metrics are evaluate's (``components/common/metrics.py``).
"""

import dataclasses
import io
import math
import re
from typing import Dict, List, Optional

import numpy as np

from prodml.components.common import artifacts, dataio, keys
from prodml.components.common import metrics as m
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.monitor.traffic import REQUEST_ID, ROW, Chunk

# A time bucket of the live-quality chart needs this many labelled rows to be drawn.
MIN_BUCKET_ROWS = 20
_INTEGRAL = re.compile(r"^([+-]?[0-9]+)\.0*$")


@dataclasses.dataclass
class Labels:
    """The labels, indexed by join key."""

    uri: str
    join_key: str
    by_row: bool                       # the key is request_id + row
    index: object                      # pandas Index of keys (unique)
    values: np.ndarray                 # encoded labels, aligned with index
    rows: int
    duplicates: int
    unusable: int                      # rows whose label is missing or not one of the model's classes


def load(labels_uri: str, join_key: str, label: artifacts.Label) -> Labels:
    """Reads and encodes the labels; ConfigError/InputDataError name the file and the column."""
    import pandas as pd

    from prodml.components.monitor import traffic

    files = traffic.list_files(labels_uri)
    frames = []
    for path in files:
        with dataio.gfile().GFile(path, "rb") as f:
            data = io.BytesIO(f.read())
        try:
            frames.append(pd.read_parquet(data) if path.lower().endswith(".parquet")
                          else pd.read_csv(data, dtype=str, keep_default_na=False, na_values=[""]))
        except (ValueError, OSError, pd.errors.ParserError) as e:
            raise InputDataError(f"Cannot read the labels {path}: {e}. Labels are a CSV file with a header, or "
                                 "Parquet, holding the join key and the label.") from e
    table = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    join_key = join_key or (REQUEST_ID if REQUEST_ID in table.columns else "")
    if not join_key:
        raise ConfigError(f"The labels {labels_uri} have no '{REQUEST_ID}' column and no join key was given: name "
                          f"the column that identifies a row in both the labels and the logged traffic (a "
                          f"pass-through key logged with --log-passthrough, or {REQUEST_ID}). Columns: "
                          f"{', '.join(map(str, table.columns))}.")
    for column in (join_key, label.name):
        if column not in table.columns:
            raise InputDataError(f"The labels {labels_uri} have no column '{column}' (columns: "
                                 f"{', '.join(map(str, table.columns))}). Labels need the join key "
                                 f"'{join_key}' and the label '{label.name}'.")
    by_row = join_key == REQUEST_ID and ROW in table.columns
    key = _key(table[join_key].map(_text), table[ROW].map(_text) if by_row else None)
    values, usable = _encode(table[label.name].tolist(), label)
    frame = pd.DataFrame({"key": key[usable], "value": values[usable]}).dropna(subset=["key"])
    deduped = frame.drop_duplicates("key", keep="last")
    return Labels(labels_uri, join_key, by_row, pd.Index(deduped["key"]), deduped["value"].to_numpy(),
                  len(table), len(frame) - len(deduped), int((~usable).sum()))


def _key(keys_, rows=None):
    import pandas as pd

    keys_ = pd.Series(keys_, dtype=object)
    if rows is None:
        return keys_.to_numpy(dtype=object)
    rows = pd.Series(rows, dtype=object)
    joined = keys_.astype(str) + "#" + rows.astype(str)
    return joined.where(keys_.notna() & rows.notna(), None).to_numpy(dtype=object)


def _text(value) -> Optional[str]:
    """Keys and labels compare as text: 7, 7.0 and "7.0" are all "7"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return _INTEGRAL.sub(r"\1", text) if text else None


def _encode(raw: List, label: artifacts.Label):
    """Labels as evaluate encodes them: the class index, or the number for regression."""
    values = np.full(len(raw), np.nan)
    if label.problem_type == keys.REGRESSION:
        for i, v in enumerate(raw):
            try:
                values[i] = float(v)
            except (TypeError, ValueError):
                pass
        return values, np.isfinite(values)
    index = {c: i for i, c in enumerate(label.classes or [])}
    for i, v in enumerate(raw):
        at = index.get(_text(v))
        if at is not None:
            values[i] = at
    return values, np.isfinite(values)


class Joiner:
    """Matches streamed traffic rows to labels, keeping only the matched rows' predictions."""

    def __init__(self, labels: Labels):
        self.labels = labels
        self.rows = 0
        self.matched_labels = np.zeros(len(labels.values), bool)
        self._predictions: List[np.ndarray] = []
        self._values: List[np.ndarray] = []
        self._times: List[np.ndarray] = []
        self.sample_traffic_keys: List[str] = []

    def add(self, chunk: Chunk) -> np.ndarray:
        """Labels for the chunk's rows (NaN where none); remembers the matched rows."""
        self.rows += chunk.rows
        keys_ = chunk.join_keys.get(self.labels.join_key)
        if keys_ is None:
            raise InputDataError(
                f"The traffic carries no '{self.labels.join_key}' to join the labels {self.labels.uri} on: it "
                f"carries {', '.join(sorted(chunk.join_keys)) or 'no key'}. Log the key with --log-passthrough "
                f"{self.labels.join_key} (request log) or carry it with --id-columns (batch predictions).")
        if self.labels.by_row:
            keys_ = _key([_text(k) for k in keys_], [_text(r) for r in chunk.join_keys.get(ROW, [None] * chunk.rows)])
        else:
            keys_ = np.array([_text(k) for k in keys_], dtype=object)
        if len(self.sample_traffic_keys) < 3:
            self.sample_traffic_keys += [str(k) for k in keys_[:3 - len(self.sample_traffic_keys)]]
        at = self.labels.index.get_indexer(keys_)
        hit = at >= 0
        values = np.full(chunk.rows, np.nan)
        values[hit] = self.labels.values[at[hit]]
        self.matched_labels[at[hit]] = True
        if hit.any():
            self._predictions.append(chunk.predictions[hit])
            self._values.append(values[hit])
            self._times.append(chunk.times[hit] if chunk.times is not None else np.full(int(hit.sum()),
                                                                                       np.datetime64("NaT")))
        return values

    @property
    def matched(self) -> int:
        return int(sum(len(v) for v in self._values))

    @property
    def match_rate(self) -> float:
        return self.matched / self.rows if self.rows else 0.0

    def arrays(self):
        """(predictions, labels, times) of the matched rows."""
        if not self._values:
            return np.zeros(0), np.zeros(0), np.zeros(0, "datetime64[ns]")
        return (np.concatenate(self._predictions), np.concatenate(self._values),
                np.concatenate(self._times).astype("datetime64[ns]"))


def check_match_rate(joiner: Joiner, minimum: float) -> None:
    """Refuses labels that match too few traffic rows: the join key is probably wrong."""
    if joiner.rows and joiner.match_rate < minimum:
        labels = joiner.labels
        sample_labels = ", ".join(repr(str(k)) for k in list(labels.index[:3]))
        raise InputDataError(
            f"Only {joiner.matched} of {joiner.rows} traffic rows ({joiner.match_rate:.1%}) found a label in "
            f"{labels.uri} by '{labels.join_key}'{' and row' if labels.by_row else ''}, below the minimum match "
            f"rate {minimum:.0%} (defaults.MONITOR_MIN_LABEL_MATCH_RATE; thresholds['min_label_match_rate']). "
            f"Label keys look like {sample_labels or 'nothing'}; traffic keys look like "
            f"{', '.join(repr(k) for k in joiner.sample_traffic_keys) or 'nothing'}. Check the join key and that "
            "the labels belong to this window of traffic.")


def live_metrics(problem_type: str, predictions: np.ndarray, labels: np.ndarray, n_classes: int) -> Dict[str, float]:
    """evaluate's metrics of the matched rows (rows whose prediction is missing are left out)."""
    keep = np.isfinite(predictions).all(axis=1) if predictions.ndim == 2 else np.isfinite(predictions)
    values = labels[keep] if problem_type == keys.REGRESSION else labels[keep].astype(np.int64)
    return m.compute(problem_type, values, predictions[keep], n_classes)


def over_time(problem_type: str, predictions: np.ndarray, labels: np.ndarray, times: np.ndarray,
              metric: str, n_classes: int) -> Dict[str, object]:
    """The key metric per hour (per day when the labelled rows span more than two days)."""
    import pandas as pd

    known = ~np.isnat(times)
    if not known.any():
        return {"x": [], "values": []}
    stamps = pd.DatetimeIndex(times[known])
    span = stamps.max() - stamps.min()
    unit = "D" if span > pd.Timedelta(days=2) else "H"
    buckets = stamps.floor(unit)
    x, values = [], []
    for bucket in sorted(set(buckets)):
        rows = np.flatnonzero(known)[np.asarray(buckets == bucket)]
        if len(rows) < MIN_BUCKET_ROWS:
            continue
        scored = live_metrics(problem_type, predictions[rows], labels[rows], n_classes)
        if metric in scored:
            x.append(bucket.strftime("%Y-%m-%d" if unit == "D" else "%Y-%m-%d %H:00"))
            values.append(scored[metric])
    return {"x": x, "values": values}
