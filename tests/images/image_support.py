"""Helpers of the image tests: the images under test, podman, free ports.

The images are built by ``make test-images`` (on the stand-in base, tags ending in ``-standin``) or
``make images``; ``PRODML_TEST_IMAGE_SUFFIX`` says which tags to test. podman reads
``images/containers.conf`` (runc, no default ulimits) unless ``CONTAINERS_CONF`` names another file.
"""

import os
import pathlib
import shutil
import socket
import subprocess
from typing import List

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent.parent
CONTAINERS_CONF = REPO / "images" / "containers.conf"


def image(kind: str) -> str:
    """The tag of the ``runtime`` or ``serving`` image under test."""
    from prodml.components.common import images

    names = {"runtime": images.RUNTIME_IMAGE, "serving": images.SERVING_IMAGE}
    return names[kind] + os.environ.get("PRODML_TEST_IMAGE_SUFFIX", "")


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Runs ``podman ARGS``; on failure (with ``check``) fails the test with podman's output."""
    env = {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF))}
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}")
    return done


def require_image(tag: str) -> dict:
    """The image's ``podman image inspect`` record.

    Skips the test when podman is not installed (as the mysql tests skip without mysqld); fails it, saying
    what to run, when podman is there but the image was not built.
    """
    import json

    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (Debian: apt-get install podman runc iptables debootstrap); "
                    "`make test-images` needs it.")
    done = podman("image", "inspect", tag, check=False)
    if done.returncode != 0:
        pytest.fail(f"The image {tag} does not exist here: `make test-images` builds it on the stand-in base "
                    "(or `make images` on the official one; then set PRODML_TEST_IMAGE_SUFFIX to '').")
    [record] = json.loads(done.stdout)
    return record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def logs(container: str) -> str:
    done = podman("logs", container, check=False)
    return (done.stdout + done.stderr)[-6000:]


def remove(containers: List[str]) -> None:
    for name in containers:
        podman("rm", "--force", "--time", "5", name, check=False)
