"""The lock files: production locks are exact closures, test tooling lives only in the dev locks.

Each environment's installed package metadata is the reference: ``<env>.lock`` (what the image
installs with ``--no-deps``) must pin exactly what ``<env>.in`` needs, and ``<env>-dev.lock``
exactly what ``<env>-dev.in`` adds on top. The serving environment is checked with its own python.
"""

import json
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TEST_ONLY = {"pytest", "nbclient", "nbformat", "ipykernel", "nbmake", "ruff", "jupyter-client", "pyzmq",
             "tornado", "debugpy"}
PYTHONS = {"runtime": sys.executable, "serving": str(REPO / ".venv" / "serving" / "bin" / "python")}


def pins(path: pathlib.Path) -> set:
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.sub(r"[-_.]+", "-", line.split("==", 1)[0]).lower())
    return names


@pytest.mark.parametrize("env", ["runtime", "serving"])
def test_production_lock_is_the_exact_closure_and_dev_lock_adds_only_tooling(env):
    python = PYTHONS[env]
    if not pathlib.Path(python).exists():
        pytest.skip(f"the {env} environment is not set up ({python}); run `make setup`")
    done = subprocess.run([python, str(REPO / "tests" / "lock_closure.py"), f"requirements/{env}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"prod_extra": [], "prod_missing": [], "dev_extra": [], "dev_missing": [], "overlap": []}


@pytest.mark.parametrize("env", ["runtime", "serving"])
def test_test_tooling_is_not_in_the_production_lock(env):
    prod, dev = pins(REPO / "requirements" / f"{env}.lock"), pins(REPO / "requirements" / f"{env}-dev.lock")
    assert "pytest" in dev
    assert not prod & TEST_ONLY


@pytest.mark.parametrize("name, env", [("Dockerfile.runtime", "runtime"), ("Dockerfile.serving", "serving")])
def test_images_install_only_the_production_lock(name, env):
    lines = [line for line in (REPO / name).read_text(encoding="utf-8").splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    installs = [line for line in lines if "pip install" in line]
    assert f"-r requirements/{env}.lock" in installs[0]
    assert not any("-dev.lock" in line or "-dev.in" in line for line in lines)
