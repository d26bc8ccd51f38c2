"""The driver JVM of a local Spark job: quick to start, with Spark's classes shared between runs.

A local job's JVM only hands task descriptions to Python workers, so it needs neither the
optimising JIT compiler nor a parallel collector, whose start-up work competes with the workers'
for the cores. Most of its remaining start-up is loading and verifying Spark's classes: Java's
application class-data sharing (AppCDS) maps them from an archive instead, which takes about
a second off every local run here (``benchmarks/batch_predict.py``).

The archive is specific to the JDK and to Spark's jars, so it is made on this machine: the first
local job's JVM writes it when it exits (``-XX:ArchiveClassesAtExit``, to a name holding the job's
process id), and the next job renames it into place (:func:`_promote_finished`). Jobs after that
map it with ``-XX:SharedArchiveFile``, checking its checksum (``-XX:+VerifySharedSpaces``, a few
milliseconds). A JDK that cannot use the archive (another build, a damaged file) runs without it;
JVM logging is off, so nothing is printed on the job's output either way.
"""

import hashlib
import os
import shutil
from typing import Optional

FAST_START = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
QUIET = "-Xshare:auto -Xlog:disable -Xlog:all=off"
CACHE_ENV = "PRODML_SPARK_CDS_DIR"  # empty turns the archive off
SETTLE_SECONDS = 10
_PENDING = ".tmp-"


def archive_path() -> Optional[str]:
    """Where this JDK and Spark's archive is kept (None when the cache is turned off or no Java is found)."""
    folder = os.environ.get(CACHE_ENV)
    if folder is None:
        folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                              "prodml", "spark-cds")
    if not folder:
        return None
    java = _java()
    if not java:
        return None
    import pyspark

    jars = os.path.join(os.path.dirname(pyspark.__file__), "jars")
    stamp = f"{os.path.realpath(java)}|{os.stat(java).st_mtime_ns}|{pyspark.__version__}|{os.path.realpath(jars)}"
    return os.path.join(folder, f"spark-{pyspark.__version__}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}.jsa")


def driver_options(make_archive: bool = False) -> str:
    """The driver JVM's options.

    ``make_archive``: when there is no archive yet, this JVM writes one when it exits (for a job
    that runs to the end and exits, not a session kept for other work: the archive would miss its
    classes).
    """
    plain = f"{FAST_START} {QUIET}"
    archive = archive_path()
    if archive is None:
        return plain
    folder = os.path.dirname(archive)
    if make_archive:
        try:
            os.makedirs(folder, exist_ok=True)
            _promote_finished(folder)
        except OSError:
            return plain
    if os.path.exists(archive):
        return f"{FAST_START} -XX:SharedArchiveFile={archive} -XX:+VerifySharedSpaces {QUIET}"
    if not make_archive or any(_PENDING in name for name in os.listdir(folder)):
        return plain  # or another job's JVM has written one, not yet published
    return f"{FAST_START} -XX:ArchiveClassesAtExit={archive}{_PENDING}{os.getpid()} {QUIET}"


def _promote_finished(folder: str) -> None:
    """Publishes archives whose JVM has exited; removes those of JVMs that cannot have finished writing.

    A first job's JVM writes its archive when it exits, after the job's process has ended, so
    the next job publishes it: once the process named in the file is gone and the file has not
    changed for a while. An archive that is still incomplete then (a JVM killed while writing)
    is refused by the JVM that maps it, which then runs without one.
    """
    import time

    for name in sorted(os.listdir(folder)):
        if _PENDING not in name:
            continue
        path = os.path.join(folder, name)
        final, pid = path.rsplit(_PENDING, 1)
        try:
            age = time.time() - os.path.getmtime(path)
            if _alive(int(pid)) or age < SETTLE_SECONDS:
                continue
            if os.path.getsize(path) > 0 and not os.path.exists(final):
                os.replace(path, final)
            else:
                os.remove(path)
        except (OSError, ValueError):
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _java() -> Optional[str]:
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return os.path.join(home, "bin", "java")
    return shutil.which("java")
