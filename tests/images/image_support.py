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
    """The tag of the ``runtime``, ``serving`` or ``infra_validate`` image under test."""
    from prodml.components.common import images

    names = {"runtime": images.RUNTIME_IMAGE, "serving": images.SERVING_IMAGE,
             "infra_validate": images.INFRA_VALIDATE_IMAGE}
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


def compiled_component(component_yaml: pathlib.Path):
    """(PipelineSpec, component name, ComponentSpec, container spec) of a published component YAML.

    Needs kfp (the runtime environment).
    """
    import yaml
    from google.protobuf import json_format
    from kfp.local import utils
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(yaml.safe_load(component_yaml.read_text()), pipeline_spec_pb2.PipelineSpec())
    [(component_name, component_spec)] = spec.components.items()
    executor = utils.struct_to_executor_spec(spec.deployment_spec["executors"][component_spec.executor_label])
    return spec, component_name, component_spec, executor.container


def run_component_in_image(tag: str, component_yaml: pathlib.Path, pipeline_root: pathlib.Path, arguments: dict,
                           volumes: List[pathlib.Path] = (), timeout: float = 900):
    """Runs a published component's resolved command in ``tag``; returns (podman result, task folder).

    The executor input is built and its placeholders resolved by kfp.local's own helpers, as
    kfp.local's DockerRunner does; input artifacts are ``dsl`` artifacts in ``arguments`` whose URIs
    are local paths. ``pipeline_root`` and each of ``volumes`` are mounted at the same path inside.
    """
    import uuid

    from kfp import dsl
    from kfp.local import executor_input_utils, placeholder_utils

    spec, component_name, component_spec, container = compiled_component(component_yaml)
    pipeline_resource_name = executor_input_utils.get_local_pipeline_resource_name(spec.pipeline_info.name)
    task_resource_name = executor_input_utils.get_local_task_resource_name(component_name)
    task_root = executor_input_utils.construct_local_task_root(str(pipeline_root), pipeline_resource_name,
                                                               task_resource_name)
    has_artifacts = any(isinstance(v, dsl.Artifact) for v in arguments.values())
    executor_input = executor_input_utils.construct_executor_input(component_spec, arguments, task_root,
                                                                   block_input_artifact=not has_artifacts)
    command = placeholder_utils.replace_placeholders(
        full_command=list(container.command) + list(container.args),
        executor_input_dict=executor_input_utils.executor_input_to_dict(executor_input, component_spec),
        pipeline_resource_name=pipeline_resource_name, task_resource_name=task_resource_name,
        pipeline_root=str(pipeline_root), unique_pipeline_id=placeholder_utils.make_random_id())
    mounts = []
    for folder in [pipeline_root, *volumes]:
        mounts += ["--volume", f"{folder}:{folder}"]
    name = f"prodml-component-test-{uuid.uuid4().hex[:8]}"
    done = podman("run", "--rm", "--name", name, *mounts, "--entrypoint", command[0], tag, *command[1:],
                  check=False, timeout=timeout)
    return done, pathlib.Path(task_root)
