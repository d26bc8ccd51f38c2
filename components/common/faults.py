"""Fault injection at named points, for tests that kill a step exactly where it hurts.

``PRODML_FAULT=push:after_publish`` makes the process that reaches that point kill itself
with SIGKILL (no cleanup, no ``finally``), as an OOM kill or a lost node would. Several points
may be given, comma-separated. Unset, a point costs one environment lookup.

Points: ``push:before_marker`` (a version's files are written, its completion marker is not),
``push:after_publish`` (the version is complete, its lineage not yet recorded).
"""

import os
import signal

FAULT_ENV = "PRODML_FAULT"


def point(name: str) -> None:
    """Kills this process with SIGKILL when ``name`` is listed in ``$PRODML_FAULT``."""
    wanted = os.environ.get(FAULT_ENV)
    if wanted and name in (p.strip() for p in wanted.split(",")):
        os.kill(os.getpid(), signal.SIGKILL)
