"""Ingest: a CSV or Parquet dataset becomes hash-split, gzipped tf.Example files.

Reads the data in chunks (never the whole file at once) and decides each column's kind from
every row (see ``columns``: the same cell is treated the same on row 5 and on row 500,000).
The examples are written while the data is read, with the kinds the rows so far allow; when a
later row changes a kind that was already written (an integer column meets its first decimal),
the rest is only counted and the data is read a second time to write the examples with the final
kinds. ``data_version.json`` is written last: a failed ingest leaves no ``data_version.json``.
"""

import itertools
from typing import Dict, Iterable, List, Mapping, Optional

from prodml.components.common import artifacts, dataio, keys
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, step
from prodml.components.ingest import columns, labels, sources, splits

log = get_logger(__name__)

CHUNK_ROWS = 50_000
LOG_EVERY_ROWS = 200_000


def run_ingest(data_uri: str, output_dir: str, label: str, problem_type: str = keys.AUTO,
               drop_columns: Iterable[str] = (), split_ratios: Optional[Mapping[str, float]] = None,
               na_values: Optional[Iterable[str]] = None, chunk_rows: int = CHUNK_ROWS,
               split_column: str = "") -> Dict[str, object]:
    """Writes ``<output_dir>/Split-<name>/data-*.tfrecord.gz`` and ``data_version.json``.

    Args:
        data_uri: a CSV or Parquet file, a glob, or a folder of files of one format (local path
            or any ``tf.io.gfile`` URI). Files are read in sorted order.
        output_dir: the examples artifact folder.
        label: the label column (its name in the file, or its sanitised name).
        problem_type: ``auto``, ``binary``, ``multiclass`` or ``regression``.
        drop_columns: columns to leave out (not the label).
        split_ratios: ``{split: ratio}`` with at least ``train`` and ``eval``; normalised.
        na_values: CSV cells read as missing besides the empty cell (default
            ``defaults.NA_VALUES``, pandas' set); an empty list leaves only empty cells missing.
        chunk_rows: rows read at a time (memory bound); the result does not depend on it.
        split_column: a column naming each row's split (``train``, ``eval``, ...); rows where it
            is empty are split by hash as usual. It is not a feature. ``prodml monitor`` uses it to
            keep the old training data out of the eval split when it retrains.

    Returns:
        The data_version dict (see DEVELOPERS.md, "examples"). A column without any value is
        left out and listed in ``dropped_columns`` after the ones asked for.
    """
    if isinstance(drop_columns, str):
        drop_columns = [drop_columns] if drop_columns else []
    problem_type = labels.check_problem_type(problem_type)
    ratios = splits.normalise_ratios(split_ratios)
    markers = sources.missing_markers(na_values)
    files = sources.resolve(data_uri)
    version_file = artifacts.DataVersion.path(output_dir)
    if dataio.exists(version_file):
        dataio.gfile().remove(version_file)
    source = data_uri if len(files) > 1 else files[0]

    fingerprint = sources.Fingerprint()
    chunks = sources.read_chunks(files, chunk_rows, fingerprint, markers)
    with step(log, f"Ingesting {data_uri}"):
        first = next(chunks, None)
        if first is None:
            raise InputDataError(f"{data_uri} has a header but no rows. Ingest needs at least one row.")
        label_name, dropped, kept = _select_columns(list(first.table.column_names), label, drop_columns)
        split_name = _split_column(split_column, list(first.table.column_names), label_name, dropped)
        kept = [name for name in kept if name != split_name]
        profiles = {name: columns.ColumnProfile(name) for name in kept}
        attempt: Optional[_Attempt] = _Attempt(output_dir, ratios, label_name, source, split_column=split_name)
        try:
            for chunk in itertools.chain([first], chunks):
                cells = _cells(chunk)
                for name, profile in profiles.items():
                    profile.observe(cells[name], chunk.where)
                if attempt is not None and not attempt.accepts(
                        {n: p.provisional_kind() for n, p in profiles.items()}):
                    log.info("A column's kind changed on %s; the examples are written again once every "
                             "row is read.", chunk.where(0))
                    attempt.abort()
                    attempt = None
                if attempt is not None:
                    attempt.write(chunk, cells, {name: profile.parsed for name, profile in profiles.items()})
            kinds = {name: profile.kind(markers) for name, profile in profiles.items()}
            if attempt is None:
                attempt = _rewrite(files, chunk_rows, markers, fingerprint, data_uri,
                                   _Attempt(output_dir, ratios, label_name, source, kinds, split_name))
            label_block = attempt.finish(problem_type, data_uri)
        except BaseException:
            if attempt is not None:
                attempt.abort()
            raise

    empty = [name for name, kind in kinds.items() if kind is None]
    for name in empty:
        log.warning("Column '%s' has no value in any row; it is left out (see dropped_columns).", name)
    kinds = {name: kind for name, kind in kinds.items() if kind is not None}
    log.info("Columns: %s", ", ".join(f"{n}:{k}" for n, k in kinds.items()))
    data_version = artifacts.DataVersion(
        source_uri=data_uri, sha256=fingerprint.sha256, size_bytes=fingerprint.size_bytes,
        row_counts=dict(attempt.writer.row_counts), split_ratios=ratios, columns=kinds,
        dropped_columns=dropped + empty,  # asked for, then columns without any value
        label=artifacts.Label.from_dict(label_block),
        extra={"na_values": sorted(markers), **({"split_column": split_name} if split_name else {})})
    data_version.write(output_dir)
    log.info("Ingested %d rows %s; label '%s' (%s).", attempt.total, attempt.writer.row_counts, label_name,
             label_block["problem_type"])
    return data_version.to_dict()


class _Attempt:
    """Writes examples with fixed kinds; a column that had no value yet takes the first kind it gets.

    Until :meth:`finish`, nothing under its final name exists, so an attempt can be dropped.
    """

    def __init__(self, output_dir: str, ratios: Dict[str, float], label: str, source: str,
                 kinds: Optional[Dict[str, Optional[str]]] = None, split_column: str = ""):
        self.kinds: Dict[str, Optional[str]] = dict(kinds or {})
        self._ratios, self._label, self._source = ratios, label, source
        self._split_column = split_column
        self.writer = splits.SplitWriter(output_dir, list(ratios))
        self._tracker: Optional[labels.LabelTracker] = None
        self.total, self._next_log = 0, LOG_EVERY_ROWS

    def accepts(self, kinds: Dict[str, Optional[str]]) -> bool:
        """Whether rows of these kinds can join what is written (and adopts first kinds)."""
        for name, kind in kinds.items():
            if self.kinds.get(name) is None:
                self.kinds[name] = kind  # nothing written holds a value of this column yet
            elif kind != self.kinds[name]:
                return False
        return True

    def write(self, chunk: sources.Chunk, cells: Optional[Dict[str, columns.Cells]] = None,
              parsed: Optional[Dict[str, object]] = None) -> None:
        """Writes the chunk's rows; ``cells`` are its columns and ``parsed`` the numbers the profiles
        just read from them (both made here if not given)."""
        cells = _cells(chunk) if cells is None else cells
        parsed = parsed or {}
        if self._tracker is None:
            # A label without a kind yet has no value: the tracker names the first empty cell.
            self._tracker = labels.LabelTracker(self._label, self.kinds[self._label] or keys.BYTES,
                                                self._source)
        self._tracker.update(cells[self._label], chunk.where)
        records = splits.encode({name: (kind, cells[name], columns.typed_values(cells[name], kind, parsed.get(name)))
                                 for name, kind in self.kinds.items() if kind is not None})
        hashed = splits.assign([column for name, column in cells.items() if name != self._split_column],
                               self._ratios)
        if self._split_column:
            split_of_row = splits.pinned(cells[self._split_column], self._ratios, hashed, chunk.where,
                                         self._split_column)
        else:
            split_of_row = hashed
        for index, split in enumerate(self._ratios):
            self.writer.write(split, [records[i] for i in (split_of_row == index).nonzero()[0]])
        self.total += chunk.table.num_rows
        if self.total >= self._next_log:
            log.info("%d rows read", self.total)
            self._next_log += LOG_EVERY_ROWS

    def finish(self, problem_type: str, data_uri: str) -> Dict[str, object]:
        """Checks the label and the splits, gives the shards their final names; the label block."""
        self.writer.close()
        label_block = self._tracker.block(problem_type)
        _check_splits(self.writer.row_counts, self.total, data_uri)
        self.writer.commit()
        return label_block

    def abort(self) -> None:
        self.writer.abort()


def _rewrite(files: List[str], chunk_rows: int, markers: frozenset, fingerprint: sources.Fingerprint,
             data_uri: str, attempt: _Attempt) -> _Attempt:
    """Reads the data again and writes it with the final kinds; the bytes must not have changed."""
    again = sources.Fingerprint()
    for chunk in sources.read_chunks(files, chunk_rows, again, markers):
        attempt.write(chunk)
    if again.sha256 != fingerprint.sha256:
        raise InputDataError(f"{data_uri} changed while ingest read it (its SHA-256 differs between two "
                             "reads). Ingest a copy that nothing writes to.")
    return attempt


def _cells(chunk: sources.Chunk) -> Dict[str, columns.Cells]:
    """Every column of the chunk (in file order: the split hash covers them all) as Cells."""
    return {name: columns.Cells.of(column) for name, column in zip(chunk.table.column_names, chunk.table.columns)}


def _select_columns(names: List[str], label: str, drop_columns: Iterable[str]):
    """(label name, dropped columns, kept columns) of the header."""
    label_name = _find_column(label, names, "label")
    dropped = [_find_column(name, names, "drop_columns entry") for name in drop_columns]
    if label_name in dropped:
        raise ConfigError(f"drop_columns {list(drop_columns)} includes the label '{label_name}'; "
                          "the label cannot be dropped.")
    return label_name, dropped, [n for n in names if n not in dropped]


def _split_column(split_column: str, names: List[str], label_name: str, dropped: List[str]) -> str:
    """The split column as the header names it ("" for none); it can be neither the label nor dropped."""
    if not split_column:
        return ""
    name = _find_column(split_column, names, "split_column")
    if name == label_name or name in dropped:
        raise ConfigError(f"The split_column '{split_column}' is also the label or a column to drop; name a "
                          "column that only says which split each row goes to.")
    return name


def _find_column(name: str, names: List[str], what: str) -> str:
    for candidate in (name, columns.sanitise(str(name).strip())):
        if candidate in names:
            return candidate
    # A name given as a parameter that the file lacks is a usage error, as preflight reports it.
    raise ConfigError(f"The {what} '{name}' is not a column of the data. Columns: {', '.join(names)}.")


def _check_splits(row_counts: Dict[str, int], total: int, data_uri: str) -> None:
    for split in (keys.TRAIN, keys.EVAL):
        if row_counts[split] == 0:
            raise InputDataError(
                f"Split '{split}' got none of the {total} rows of {data_uri}: the data is too small for "
                f"the split ratios. Add rows or raise the '{split}' ratio.")
