"""Dead letters: the input rows that could not be scored, with where they are and why.

Each dead letter is one JSON line ``{"file", "row", "line" (CSV), "raw", "reason"}``: ``row`` is the
1-based data row of the file (the header is not a row), ``line`` the line of the file the row
starts on, ``raw`` the row's text as read (a Parquet or tf.Example row as a JSON object).
Workers write one ``dead-letters-<task>.jsonl`` per task that has any into the staging folder's
``_dead_letters/``; the driver publishes them to the dead-letter location, whether the job then
succeeds or fails on ``max_error_rate``.
"""

import json
from typing import Iterable, List, Mapping

from prodml.components.common import dataio

FOLDER = "_dead_letters"
# Dead letters quoted in a task summary (and so in the error message that names the first bad rows).
FIRST = 5


def task_file(staging_uri: str, task_index: int) -> str:
    return dataio.join(staging_uri, FOLDER, f"dead-letters-{task_index:05d}.jsonl")


def write(uri: str, letters: Iterable[Mapping]) -> None:
    """Writes dead letters as JSON lines, atomically."""
    dataio.write_text_atomic(uri, "".join(json.dumps(dict(letter), ensure_ascii=False) + "\n"
                                          for letter in letters))


def read(folder_uri: str) -> List[dict]:
    """Every dead letter under a dead-letter folder, in task order."""
    if not dataio.exists(folder_uri):
        return []
    letters = []
    for name in sorted(n for n in dataio.list_files(folder_uri) if n.endswith(".jsonl") and ".tmp-" not in n):
        letters += [json.loads(line) for line in dataio.read_text(dataio.join(folder_uri, name)).splitlines()
                    if line]
    return letters


def describe(letter: Mapping) -> str:
    """``row 12 (line 13) of data.csv: 'fare' 'abc' is not a number (FLOAT feature)``."""
    where = f"row {letter['row']}" + (f" (line {letter['line']})" if "line" in letter else "")
    return f"{where} of {letter['file']}: {letter['reason']}"
