"""Ingest: a CSV or Parquet dataset becomes hash-split, gzipped tf.Example files.

Reads the data in chunks (never the whole file at once), decides each column's kind from its
first values and enforces it on every row, and records what was read in ``data_version.json``,
which is written last: a failed ingest leaves no ``data_version.json``.
"""

import itertools
from typing import Dict, Iterable, List, Mapping, Optional, Set, Tuple

from prodml.components.common import dataio, keys
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, silence_tensorflow, step
from prodml.components.ingest import columns, labels, sources, splits

log = get_logger(__name__)

CHUNK_ROWS = 50_000
LOG_EVERY_ROWS = 200_000


def run_ingest(data_uri: str, output_dir: str, label: str, problem_type: str = keys.AUTO,
               drop_columns: Iterable[str] = (), split_ratios: Optional[Mapping[str, float]] = None,
               chunk_rows: int = CHUNK_ROWS) -> Dict[str, object]:
    """Writes ``<output_dir>/Split-<name>/data-*.tfrecord.gz`` and ``data_version.json``.

    Args:
        data_uri: a CSV or Parquet file, a glob, or a folder of files of one format (local path
            or any ``tf.io.gfile`` URI). Files are read in sorted order.
        output_dir: the examples artifact folder.
        label: the label column (its name in the file, or its sanitised name).
        problem_type: ``auto``, ``binary``, ``multiclass`` or ``regression``.
        drop_columns: columns to leave out (not the label).
        split_ratios: ``{split: ratio}`` with at least ``train`` and ``eval``; normalised.
        chunk_rows: rows read at a time; the first present values of each column decide its kind.

    Returns:
        The data_version dict (see DEVELOPERS.md, "examples"). A column without any value is
        left out and listed in ``dropped_columns`` after the ones asked for.
    """
    silence_tensorflow()
    if isinstance(drop_columns, str):
        drop_columns = [drop_columns] if drop_columns else []
    problem_type = labels.check_problem_type(problem_type)
    ratios = splits.normalise_ratios(split_ratios)
    files = sources.resolve(data_uri)
    version_file = dataio.join(output_dir, keys.DATA_VERSION_FILE)
    if dataio.exists(version_file):
        dataio.gfile().remove(version_file)

    fingerprint = sources.Fingerprint()
    chunks = sources.read_chunks(files, chunk_rows, fingerprint)
    with step(log, f"Ingesting {data_uri}"):
        first = next(chunks, None)
        if first is None:
            raise InputDataError(f"{data_uri} has a header but no rows. Ingest needs at least one row.")
        label_name, dropped, kinds = _decide_columns(first.frame, label, drop_columns)
        source = data_uri if len(files) > 1 else files[0]
        tracker = labels.LabelTracker(label_name, kinds[label_name], source)
        writer = splits.SplitWriter(output_dir, list(ratios))
        try:
            total, filled = _write_chunks(itertools.chain([first], chunks), kinds,
                                          tracker, ratios, writer)
            writer.close()
            label_block = tracker.block(problem_type)
            _check_splits(writer.row_counts, total, data_uri)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    for name in [n for n in kinds if n not in filled]:
        log.warning("Column '%s' has no value in any row; it is left out (see dropped_columns).", name)
        del kinds[name]
        dropped.append(name)
    data_version = {
        "source_uri": data_uri,
        "sha256": fingerprint.sha256,
        "size_bytes": fingerprint.size_bytes,
        "row_counts": dict(writer.row_counts),
        "split_ratios": ratios,
        "columns": kinds,
        "dropped_columns": dropped,  # asked for, then columns without any value
        "label": label_block,
    }
    dataio.write_json(version_file, data_version)
    log.info("Ingested %d rows %s; label '%s' (%s).", total, writer.row_counts, label_name,
             label_block["problem_type"])
    return data_version


def _decide_columns(frame, label: str, drop_columns: Iterable[str]):
    """(label name, dropped columns, {kept column: kind}) from the first chunk."""
    names = list(frame.columns)
    label_name = _find_column(label, names, "label")
    dropped = [_find_column(name, names, "drop_columns entry") for name in drop_columns]
    if label_name in dropped:
        raise ConfigError(f"drop_columns {list(drop_columns)} includes the label '{label_name}'; "
                          "the label cannot be dropped.")
    kinds = {n: columns.infer_kind(frame[n]) for n in names if n not in dropped}
    log.info("Columns (kinds from their first values): %s",
             ", ".join(f"{n}:{k}" for n, k in kinds.items()))
    for name in kinds:
        if frame[name].isna().all():
            log.warning("Column '%s' has no value in the first %d rows; it is read as BYTES.",
                        name, len(frame))
    return label_name, dropped, kinds


def _write_chunks(chunks, kinds: Dict[str, str], tracker: labels.LabelTracker,
                  ratios: Dict[str, float], writer: splits.SplitWriter) -> Tuple[int, Set[str]]:
    """Writes every chunk; returns the number of rows and the columns that had a value."""
    split_names = list(ratios)
    total, next_log, filled = 0, LOG_EVERY_ROWS, set()
    for chunk in chunks:
        frame = chunk.frame
        arrays = {n: columns.to_arrow(frame[n], n, kind, chunk.where)
                  for n, kind in kinds.items()}
        tracker.update(frame[tracker.name], chunk.where)
        filled.update(n for n, array in arrays.items() if array.null_count < len(array))
        records = splits.encode(arrays)
        split_of_row = splits.assign(frame, ratios)
        for index, split in enumerate(split_names):
            writer.write(split, [records[i] for i in (split_of_row == index).nonzero()[0]])
        total += len(frame)
        if total >= next_log:
            log.info("%d rows read", total)
            next_log += LOG_EVERY_ROWS
    return total, filled


def _find_column(name: str, names: List[str], what: str) -> str:
    for candidate in (name, columns.sanitise(str(name).strip())):
        if candidate in names:
            return candidate
    error = InputDataError if what == "label" else ConfigError
    raise error(f"The {what} '{name}' is not a column of the data. Columns: {', '.join(names)}.")


def _check_splits(row_counts: Dict[str, int], total: int, data_uri: str) -> None:
    for split in (keys.TRAIN, keys.EVAL):
        if row_counts[split] == 0:
            raise InputDataError(
                f"Split '{split}' got none of the {total} rows of {data_uri}: the data is too small for "
                f"the split ratios. Add rows or raise the '{split}' ratio.")
