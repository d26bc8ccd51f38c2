"""Checks an environment's two locks against the package metadata installed in this interpreter.

Run by ``tests/test_locks.py`` with each environment's python::

    python tests/lock_closure.py requirements/runtime

It prints one JSON object: ``prod_extra`` (pinned in ``<env>.lock`` but needed by nothing in
``<env>.in``), ``prod_missing`` (needed by ``<env>.in`` but not pinned there, or pinned at another
version than the one installed), the same two for the dev lock (``<env>-dev.in`` less what the
production lock already holds) and ``overlap`` (pinned in both locks).
"""

import json
import re
import sys
from importlib import metadata
from typing import Dict, Iterable, List, Set, Tuple

from packaging.requirements import Requirement

# Installers pinned for reproducible builds, not required by any package.
TOOLING = {"pip"}


def canon(name: str) -> str:
    """The normalised distribution name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> Dict[str, str]:
    """``{name: version}`` of a lock file."""
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if line:
                name, version = line.split("==", 1)
                pins[canon(name)] = version.strip()
    return pins


def read_roots(path: str) -> List[str]:
    """The requirement lines of an ``.in`` file."""
    with open(path, encoding="utf-8") as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


def closure(roots: Iterable[str]) -> Tuple[Dict[str, str], List[str]]:
    """The installed distributions the roots need (extras and markers evaluated), and the missing ones."""
    needed: Dict[str, str] = {}
    missing: List[str] = []
    seen: Set[Tuple[str, Tuple[str, ...]]] = set()
    stack = [Requirement(r) for r in roots]
    while stack:
        req = stack.pop()
        key = (canon(req.name), tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            missing.append(str(req))
            continue
        needed[canon(req.name)] = dist.version
        for line in dist.requires or []:
            dep = Requirement(line)
            extras = sorted(req.extras) or [""]
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras):
                stack.append(dep)
    return needed, missing


def compare(pins: Dict[str, str], needed: Dict[str, str], missing: List[str]) -> Tuple[List[str], List[str]]:
    """(pinned but not needed, needed but not pinned at the installed version)."""
    extra = sorted(n for n in pins if n not in needed and n not in TOOLING)
    wrong = sorted(f"{n}=={v} (lock: {pins.get(n, 'absent')})" for n, v in needed.items() if pins.get(n) != v)
    return extra, wrong + [f"{m} (not installed)" for m in missing]


def check(env: str) -> dict:
    """The report described in the module docstring for ``requirements/<env>``."""
    prod, dev = read_pins(env + ".lock"), read_pins(env + "-dev.lock")
    prod_needed, prod_missing = closure(read_roots(env + ".in"))
    dev_needed, dev_missing = closure(read_roots(env + "-dev.in"))
    dev_needed = {n: v for n, v in dev_needed.items() if n not in prod}
    prod_extra, prod_wrong = compare(prod, prod_needed, prod_missing)
    dev_extra, dev_wrong = compare(dev, dev_needed, dev_missing)
    return {"prod_extra": prod_extra, "prod_missing": prod_wrong, "dev_extra": dev_extra,
            "dev_missing": dev_wrong, "overlap": sorted(set(prod) & set(dev))}


if __name__ == "__main__":
    print(json.dumps(check(sys.argv[1])))
