"""The Kubernetes manifests and Dockerfiles, checked against KServe's real CRD schemas.

Every InferenceService and ServingRuntime (the files in manifests/kserve/ and what
``render_inferenceservice`` produces) is validated against the ``openAPIV3Schema`` of the CRDs
vendored from kserve/kserve in manifests/crds/. Validation is strict as the API server's field
validation is: an unknown field is an error unless the schema preserves unknown fields. The
``x-kubernetes-*`` extensions are otherwise ignored. No cluster and no Docker engine are used.
"""

import functools
import hashlib
import pathlib
import re

import pytest
import yaml

# The runtime environment has jsonschema; the serving one (which only collects this file) does not.
jsonschema = pytest.importorskip("jsonschema")

from prodml.components.common import images, serving_runtimes  # noqa: E402 - after the importorskip above
from prodml.components.common.errors import ConfigError  # noqa: E402
from prodml.components.push import inferenceservice as isvc  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
CRDS = REPO / "manifests" / "crds"
KSERVE = REPO / "manifests" / "kserve"
ISVC_CRD = CRDS / "serving.kserve.io_inferenceservices.yaml"
SR_CRD = CRDS / "serving.kserve.io_servingruntimes.yaml"


def strict(schema: dict) -> dict:
    """A CRD structural schema as JSON Schema that rejects unknown fields, like the API server."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = strict(schema["additionalProperties"])
    if "items" in schema:
        out["items"] = strict(schema["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = [strict(s) for s in schema[key]]
    return out


@functools.cache
def crd(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


@functools.cache
def validator(kind: str, api_version: str) -> jsonschema.Draft7Validator:
    """The validator for ``kind`` at ``api_version`` from the vendored CRD that defines it."""
    for path in (ISVC_CRD, SR_CRD):
        spec = crd(path)["spec"]
        for version in spec["versions"]:
            if spec["names"]["kind"] == kind and f"{spec['group']}/{version['name']}" == api_version:
                return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    raise AssertionError(f"no vendored CRD defines {api_version} {kind}")


def errors(manifest: dict) -> list:
    found = validator(manifest["kind"], manifest["apiVersion"]).iter_errors(manifest)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def documents(path: pathlib.Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kserve_documents() -> list:
    return [(p.name, d) for p in sorted(KSERVE.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in documents(p)]


def of_kind(kind: str) -> list:
    return [(name, d) for name, d in kserve_documents() if d["kind"] == kind]


# --- the vendored CRDs -------------------------------------------------------------------------


def test_vendored_crds_are_the_recorded_upstream_files():
    readme = (CRDS / "README.md").read_text()
    for path in (ISVC_CRD, SR_CRD):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest in readme, f"{path.name} changed since it was vendored: update manifests/crds/README.md"
        assert path.name in readme


@pytest.mark.parametrize("path, kind, plural", [(ISVC_CRD, "InferenceService", "inferenceservices"),
                                                (SR_CRD, "ServingRuntime", "servingruntimes")])
def test_crd_defines_the_kserve_kind(path, kind, plural):
    doc = crd(path)
    assert doc["kind"] == "CustomResourceDefinition"
    assert doc["spec"]["group"] == "serving.kserve.io"
    assert doc["spec"]["names"]["kind"] == kind and doc["spec"]["names"]["plural"] == plural
    assert doc["spec"]["scope"] == "Namespaced"


def test_isvc_crd_has_the_fields_deploy_relies_on():
    schema = crd(ISVC_CRD)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    predictor = schema["properties"]["spec"]["properties"]["predictor"]["properties"]
    assert predictor["canaryTrafficPercent"]["type"] == "integer"
    assert {"modelFormat", "runtime", "storageUri", "protocolVersion", "args"} <= set(predictor["model"]["properties"])
    status = schema["properties"]["status"]["properties"]
    assert {"url", "conditions", "observedGeneration", "modelStatus"} <= set(status)


def test_strict_validation_catches_mistakes():
    good = isvc.render_inferenceservice("m", "gs://b/registry/m", 1)
    assert errors(good) == []
    typo = yaml.safe_load(yaml.safe_dump(good))
    typo["spec"]["predictor"]["model"]["storageURI"] = typo["spec"]["predictor"]["model"].pop("storageUri")
    assert any("storageURI" in e for e in errors(typo))
    wrong_type = yaml.safe_load(yaml.safe_dump(good))
    wrong_type["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert any("canaryTrafficPercent" in e for e in errors(wrong_type))
    no_predictor = {**good, "spec": {}}
    assert any("predictor" in e for e in errors(no_predictor))


# --- manifests/kserve ---------------------------------------------------------------------------


@pytest.mark.parametrize("name, doc", of_kind("InferenceService") + of_kind("ServingRuntime"),
                         ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_kserve_manifest_validates_against_crd(name, doc):
    assert errors(doc) == [], name


def test_every_manifest_is_a_known_kind():
    kinds = {d["kind"] for _, d in kserve_documents()}
    assert kinds == {"InferenceService", "ServingRuntime", "ServiceAccount", "Role", "RoleBinding"}


def test_kustomization_lists_every_manifest_and_only_existing_files():
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert all((KSERVE / f).is_file() for f in listed)
    assert set(listed) == {p.name for p in KSERVE.glob("*.yaml")} - {"kustomization.yaml"}
    # A manifest either leaves its namespace to kustomize or writes the one kustomize sets.
    namespaces = {d["metadata"].get("namespace") for _, d in kserve_documents()} - {None}
    assert namespaces <= {kustomization["namespace"]}


def test_example_inferenceservices_are_what_push_renders():
    for name, doc in of_kind("InferenceService"):
        header = (KSERVE / name).read_text()
        call = re.search(r"render_inferenceservice\((.*)\)\n", header).group(1)
        kwargs = eval(f"dict({call})")  # the file's own header comment, written by us
        assert doc == isvc.render_inferenceservice(**kwargs), name


def runtime_documents() -> dict:
    return {doc["metadata"]["name"]: (name, doc) for name, doc in of_kind("ServingRuntime")}


def test_the_servingruntime_files_are_the_runtimes_deploy_chooses_from():
    assert set(runtime_documents()) == set(serving_runtimes.RUNTIMES)
    for name, (file_name, _) in runtime_documents().items():
        assert file_name == serving_runtimes.RUNTIMES[name].manifest


@pytest.mark.parametrize("name", sorted(serving_runtimes.RUNTIMES))
def test_servingruntime_runs_the_prodml_predictor(name):
    _, runtime = runtime_documents()[name]
    expected = serving_runtimes.RUNTIMES[name]
    spec = runtime["spec"]
    assert isvc.MODEL_FORMAT in [f["name"] for f in spec["supportedModelFormats"]]
    assert tuple(spec["protocolVersions"]) == expected.protocol_versions
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(isvc.HTTP_PORT)
    assert spec["annotations"]["prometheus.kserve.io/path"] == "/metrics"
    [container] = spec["containers"]
    assert container["image"].endswith(f"/prodml-serving-python3.11:{images.VERSION}")
    args = container["args"]
    flags = dict(zip(args[::2], args[1::2]))
    assert flags == {"--model_name": "{{.Name}}", "--model_dir": isvc.MOUNT_PATH,
                     "--http_port": str(isvc.HTTP_PORT), "--grpc_port": str(isvc.GRPC_PORT)}
    assert container["securityContext"]["runAsNonRoot"] is True
    # The declared ports are the ones deploy relies on (tests/images/test_serving_image.py sends
    # requests to exactly these).
    assert container["ports"] == [dict(p) for p in expected.ports]
    # The variants differ from the REST runtime in their ports and protocols only.
    _, rest = runtime_documents()[isvc.SERVING_RUNTIME]
    [rest_container] = rest["spec"]["containers"]
    assert {k: v for k, v in container.items() if k != "ports"} == \
        {k: v for k, v in rest_container.items() if k != "ports"}


def test_one_runtime_auto_selects_the_model_format():
    """Two auto-selecting runtimes for prodml-tf would leave KServe's choice to priority ties."""
    auto = [name for name, (_, doc) in runtime_documents().items()
            for f in doc["spec"]["supportedModelFormats"] if f["name"] == isvc.MODEL_FORMAT and f.get("autoSelect")]
    assert auto == [isvc.SERVING_RUNTIME]


@pytest.mark.parametrize("name", sorted(serving_runtimes.RUNTIMES))
def test_a_runtime_for_serverless_declares_exactly_one_port(name):
    """Knative accepts one container port per revision, and routes gRPC to it only when it is named h2c."""
    runtime = serving_runtimes.RUNTIMES[name]
    _, doc = runtime_documents()[name]
    [container] = doc["spec"]["containers"]
    if set(runtime.modes) & set(serving_runtimes.KNATIVE_MODES):
        [port] = container["ports"]
        if "grpc-v2" in doc["spec"]["protocolVersions"]:
            assert port["name"] == "h2c" and port["containerPort"] == isvc.GRPC_PORT
        else:
            assert port["containerPort"] == isvc.HTTP_PORT
    else:
        assert len(container["ports"]) > 1, f"{name} is for RawDeployment only: it exists to publish both protocols"
    # A port a protocol version needs is declared.
    declared = {p["containerPort"] for p in container["ports"]}
    assert ("grpc-v2" in doc["spec"]["protocolVersions"]) == (isvc.GRPC_PORT in declared)
    assert bool({"v1", "v2"} & set(doc["spec"]["protocolVersions"])) == (isvc.HTTP_PORT in declared)


@pytest.mark.parametrize("name", sorted(serving_runtimes.RUNTIMES))
def test_servingruntime_flags_are_flags_of_the_predictor(name):
    """Every flag the runtime passes exists in prodml.serving's parser (read from its source)."""
    source = (REPO / "serving" / "__main__.py").read_text()
    _, runtime = runtime_documents()[name]
    flags = runtime["spec"]["containers"][0]["args"][::2]
    own = set(re.findall(r'add_argument\("(--\w+)"', source))
    kserve_parser_flags = {"--model_name", "--http_port", "--grpc_port"}  # kserve.model_server's parser
    assert set(flags) <= own | kserve_parser_flags
    assert "--model_dir" in own and "--version" in own


# --- protocol and deployment mode (what deploy applies) -----------------------------------------

MODES = list(serving_runtimes.DEPLOYMENT_MODES)
RENDERINGS = {"prodml": {}, "custom-container": {"image": images.SERVING_IMAGE}}


@pytest.mark.parametrize("rendering", sorted(RENDERINGS))
@pytest.mark.parametrize("protocol", serving_runtimes.PROTOCOLS)
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m or "cluster-default")
def test_each_protocol_and_mode_gets_a_manifest_kserve_accepts(rendering, protocol, mode):
    pushed = isvc.render_inferenceservice("chicago-taxi", "gs://b/registry/chicago-taxi", 3, **RENDERINGS[rendering])
    manifest = serving_runtimes.for_deployment(pushed, protocol, mode)
    assert errors(manifest) == []
    assert pushed == isvc.render_inferenceservice("chicago-taxi", "gs://b/registry/chicago-taxi", 3,
                                                  **RENDERINGS[rendering])  # a copy, not an edit
    predictor = manifest["spec"]["predictor"]
    if rendering == "prodml":
        _, runtime = runtime_documents()[predictor["model"]["runtime"]]
        ports = runtime["spec"]["containers"][0]["ports"]
    else:
        [container] = predictor["containers"]
        ports = container["ports"]
        probe = container["readinessProbe"]
        probed = probe.get("httpGet", probe.get("tcpSocket"))["port"]
        assert probed in [p["containerPort"] for p in ports], "Knative probes the declared port only"
    names = [p["name"] for p in ports]
    if serving_runtimes.is_standard(mode):
        assert names == ["http1", "grpc-port"]  # REST first: the Service's port 80
    else:
        # Serverless, or the cluster's default (either mode): one port, h2c for gRPC.
        assert names == (["h2c"] if protocol == "grpc" else ["http1"])
    annotations = manifest["metadata"]["annotations"]
    assert annotations.get(serving_runtimes.DEPLOYMENT_MODE_ANNOTATION) == (mode or None)
    assert annotations[isvc.VERSION_ANNOTATION] == "3"


def test_kserve_own_tensorflow_runtime_is_deployed_for_rest_only():
    pushed = isvc.render_inferenceservice("chicago-taxi", "gs://b/registry/chicago-taxi", 3, runtime="tensorflow")
    assert serving_runtimes.for_deployment(pushed, "rest", "Serverless")["spec"] == pushed["spec"]
    with pytest.raises(ConfigError, match="tensorflow.*REST only.*prodml runtime"):
        serving_runtimes.for_deployment(pushed, "grpc", "Serverless")


@pytest.mark.parametrize("protocol, mode, words", [
    ("http", "Serverless", ["protocol 'http'", "rest", "grpc"]),
    ("rest", "serverless", ["deployment_mode 'serverless'", "Serverless", "RawDeployment", "Knative", "Standard"]),
])
def test_unknown_protocol_or_mode_is_refused_with_the_choices(protocol, mode, words):
    with pytest.raises(ConfigError) as e:
        serving_runtimes.select(protocol, mode)
    assert all(w in str(e.value) for w in words), str(e.value)


# --- RBAC ---------------------------------------------------------------------------------------


def _deploy_api_verbs() -> set:
    """The Kubernetes verbs of every custom-object call the deploy component makes, read from its source.

    A call ``<verb>_namespaced_custom_object`` is the verb itself, except ``replace`` (``update``)
    and ``list_..._object`` / watches (``list``, ``watch``).
    """
    import ast

    verbs, callers = set(), set()
    for path in (REPO / "components").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and "_custom_object" in node.attr:
                verb = node.attr.split("_namespaced_")[0].split("_cluster_")[0]
                verbs.add({"replace": "update"}.get(verb, verb))
                callers.add(path.relative_to(REPO).as_posix())
            if isinstance(node, ast.keyword) and node.arg == "watch":
                verbs.add("watch")
    assert callers == {"components/deploy/kube.py"}, callers  # one module talks to the API server
    return verbs


def test_rbac_role_grants_exactly_the_verbs_deploy_calls():
    [(_, role)] = of_kind("Role")
    [rule] = role["rules"]
    assert rule["apiGroups"] == ["serving.kserve.io"]
    assert rule["resources"] == ["inferenceservices"]
    assert set(rule["verbs"]) == _deploy_api_verbs() == {"get", "create", "patch"}
    assert len(rule["verbs"]) == len(set(rule["verbs"]))


def test_rbac_is_least_privilege_and_namespace_scoped():
    [(_, role)] = of_kind("Role")
    [(_, binding)] = of_kind("RoleBinding")
    [(_, account)] = of_kind("ServiceAccount")
    assert not of_kind("ClusterRole") and not of_kind("ClusterRoleBinding")
    [rule] = role["rules"]
    assert "resourceNames" not in rule
    assert "*" not in str(role["rules"])
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    # No namespace is hard-coded: kustomize (or kubectl -n) sets it, and a ServiceAccount subject
    # without one means the RoleBinding's own namespace.
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    for doc in (role, binding, account):
        assert "namespace" not in doc["metadata"], doc["metadata"]
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    assert kustomization["namespace"] and "rbac.yaml" in kustomization["resources"]


# --- render_inferenceservice --------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {},
    {"runtime": "tensorflow"},
    {"image": "ghcr.io/prodml/prodml-serving-python3.11:0.1.0"},
    {"canary_traffic_percent": 10},
    {"canary_traffic_percent": 0, "runtime": "tensorflow"},
    {"namespace": ""},
], ids=["prodml", "tensorflow", "custom-container", "canary", "canary-zero", "no-namespace"])
def test_rendered_inferenceservice_validates_against_crd(kwargs):
    manifest = isvc.render_inferenceservice("chicago-taxi", "gs://b/registry/chicago-taxi/3", 3, **kwargs)
    assert errors(manifest) == []
    assert manifest["metadata"]["annotations"][isvc.VERSION_ANNOTATION] == "3"
    # Round-trips through the YAML helper that push writes inferenceservice.yaml with.
    assert yaml.safe_load(isvc.to_yaml(manifest)) == manifest


def test_render_points_storage_at_the_model_folder_and_pins_the_version():
    for uri in ("gs://b/registry/chicago-taxi", "gs://b/registry/chicago-taxi/3/"):
        model = isvc.render_inferenceservice("chicago-taxi", uri, 3)["spec"]["predictor"]["model"]
        assert model["storageUri"] == "gs://b/registry/chicago-taxi"
        assert model["args"] == ["--version", "3"]
        assert model["modelFormat"] == {"name": "prodml-tf"} and model["runtime"] == isvc.SERVING_RUNTIME
    tf = isvc.render_inferenceservice("chicago-taxi", "gs://b/registry/chicago-taxi/3", 3, runtime="tensorflow")
    assert tf["spec"]["predictor"]["model"] == {"modelFormat": {"name": "tensorflow"},
                                                "storageUri": "gs://b/registry/chicago-taxi",
                                                "protocolVersion": "v1"}


def test_render_canary_only_below_100():
    predictor = isvc.render_inferenceservice("m", "s3://b/m", 2, canary_traffic_percent=25)["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 25
    full = isvc.render_inferenceservice("m", "s3://b/m", 2, canary_traffic_percent=100)["spec"]["predictor"]
    assert "canaryTrafficPercent" not in full


@pytest.mark.parametrize("kwargs, words", [
    ({"runtime": "sklearn"}, ["sklearn", "prodml", "tensorflow"]),
    ({"runtime": "tensorflow", "image": "x"}, ["image", "prodml"]),
    ({"version": 0}, ["version", "0"]),
    ({"canary_traffic_percent": 101}, ["canary_traffic_percent", "101"]),
])
def test_render_rejects_bad_arguments_with_a_clear_message(kwargs, words):
    args = {"model_name": "m", "storage_uri": "gs://b/m", "version": 1, **kwargs}
    with pytest.raises(ConfigError) as e:
        isvc.render_inferenceservice(**args)
    assert all(w in str(e.value) for w in words)


# --- Dockerfiles (no Docker engine here: static checks) -----------------------------------------


def dockerfile(name: str) -> list:
    text = (REPO / name).read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("name, lock", [("Dockerfile.runtime", "requirements/runtime.lock"),
                                        ("Dockerfile.serving", "requirements/serving.lock")])
def test_dockerfile_is_pinned_and_installs_its_lock_without_resolving(name, lock):
    lines = dockerfile(name)
    # The official base is the default of a build argument (make test-images builds on a local stand-in).
    [base] = [line for line in lines if line.startswith("ARG BASE_IMAGE=")]
    assert re.fullmatch(r"ARG BASE_IMAGE=python:3\.11\.\d+-slim(-\w+)?", base), base
    # Every stage starts from that base or from an earlier stage: nothing else is pulled.
    stages = []
    for line in lines:
        if line.startswith("FROM "):
            parts = line.split()
            assert parts[1] == "${BASE_IMAGE}" or parts[1] in stages, line
            stages.append(parts[3] if len(parts) == 4 and parts[2] == "AS" else None)
    copies = " ".join(line for line in lines if line.startswith("COPY "))
    assert lock in copies and (REPO / lock).is_file()
    installs = [line for line in lines if "pip install" in line]
    assert f"pip install --no-deps -r {lock}" in installs[0]
    assert all("--no-deps" in line for line in installs)
    for folder in ("components/", "pipelines/", "serving/", "setup.cfg", "pyproject.toml", "README.md"):
        assert folder in copies, f"{name} does not copy {folder}, which setup.cfg needs to install prodml"


def test_serving_image_runs_the_predictor_as_non_root():
    lines = dockerfile("Dockerfile.serving")
    [user] = [line for line in lines if line.startswith("USER ")]
    assert user.split()[1] not in ("root", "0")
    assert lines.index(user) > max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    [entrypoint] = [line for line in lines if line.startswith("ENTRYPOINT ")]
    assert entrypoint == 'ENTRYPOINT ["python", "-m", "prodml.serving"]'
    assert (REPO / "serving" / "__main__.py").is_file()
    assert "prodml.serving = serving" in (REPO / "setup.cfg").read_text()
    assert "EXPOSE 8080 8081" in lines


def stage_lines(name: str) -> dict:
    """A multi-stage Dockerfile's instructions per stage name (in order), after its FROM line."""
    stages, current = {}, None
    for line in dockerfile(name):
        if line.startswith("FROM "):
            current = line.split()[3]
            stages[current] = [line]
        elif current:
            stages[current].append(line)
    return stages


def test_infra_validate_image_is_the_runtime_image_plus_the_serving_lock():
    """infra_validate's image: the runtime dependencies (kfp, MLMD) with the serving lock as a second venv."""
    stages = stage_lines("Dockerfile.runtime")
    # The runtime image is the default (last) target; both images share the runtime-deps layers.
    assert list(stages)[-1] == "runtime"
    assert stages["runtime"][0] == "FROM runtime-deps AS runtime"
    assert stages["infra-validate"][0] == "FROM runtime-deps AS infra-validate"
    [venv_install] = [line for line in stages["serving-env"] if "pip install" in line]
    assert "/opt/serving/bin/pip install --no-deps -r /tmp/serving.lock" in venv_install
    assert "COPY requirements/serving.lock /tmp/serving.lock" in stages["serving-env"]
    infra = stages["infra-validate"]
    assert infra[1:3] == ["COPY --from=serving-env /opt/serving /opt/serving",
                          "ENV PRODML_SERVING_PYTHON=/opt/serving/bin/python"]
    # The same prodml source goes into both images (and into both of infra-validate's environments).
    copies = [line for line in infra if line.startswith("COPY ") and "--from" not in line]
    assert copies == [line for line in stages["runtime"] if line.startswith("COPY ")]
    [install] = [line for line in infra if line.startswith("RUN ")]
    assert "pip install --no-deps --no-build-isolation ." in install
    assert "/opt/serving/bin/pip install --no-deps --no-build-isolation ." in install
    assert not any("-dev.lock" in line or "-dev.in" in line for line in dockerfile("Dockerfile.runtime"))
    from prodml.components.infra_validate import serving_env

    assert serving_env.SERVING_PYTHON_ENV == "PRODML_SERVING_PYTHON"
