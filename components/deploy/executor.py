"""Deploy: roll a pushed version out as a KServe InferenceService, then wait until it is Ready.

``deploy_pushed`` is the pipeline step: it decides whether there is anything to deploy (a
pushed version, a namespace, a cluster), applies the InferenceService manifest that push wrote
beside the version (``inferenceservice.yaml``), and returns the deployment record that
``render_card`` turns into Markdown.

``run_deploy`` applies one manifest: it creates the InferenceService when absent, does nothing
when it already serves this version with the same traffic split, skips (saying why) when it
serves a newer version, and otherwise merge-patches it. Below 100%, ``canary_traffic_percent``
sends that share to the new version and the rest to the previous rolled-out revision (KServe's
canary rollout); ``promote`` then gives the new version all traffic, and ``rollback`` gives it
none (all traffic back to the previous revision).

``protocol`` (``rest`` or ``grpc``) and ``deployment_mode`` (``Serverless``/``Knative``,
``RawDeployment``/``Standard``, or empty for the cluster's default; KServe's
``serving.kserve.io/deploymentMode``) choose the ServingRuntime or container ports
(``common/serving_runtimes.py``): Knative takes one port per revision, so gRPC there gets the h2c
runtime; RawDeployment publishes REST and gRPC together; canary rollouts need Knative.

Example::

    manifest = artifacts.read_inferenceservice("gs://bucket/registry/chicago-taxi/3")
    run_deploy(manifest, namespace="models", canary_traffic_percent=10)
    promote("chicago-taxi", namespace="models")
"""

import re
from typing import Any, Dict, Mapping, Optional

from prodml.components.common import artifacts, dataio, keys, serving_runtimes
from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger
from prodml.components.deploy import kube, readiness
from prodml.components.deploy.kube import is_cluster_configured

__all__ = ["deploy_pushed", "run_deploy", "promote", "rollback", "is_cluster_configured", "served_version",
           "render_card"]

log = get_logger(__name__)

SKIPPED = "skipped"
# The predictor fields that select what is served; a field the new spec lacks is deleted.
_SERVING_FIELDS = ("model", "containers")
_VERSION_FOLDER = re.compile(r"/([0-9]+)/?$")


def deploy_pushed(pushed: Mapping[str, Any], namespace: str, isvc_name: str = "",
                  canary_traffic_percent: int = 100, timeout_seconds: int = 600, kube_context: str = "",
                  card_path: str = "", api_client=None, poll_seconds: float = 5.0,
                  protocol: str = serving_runtimes.REST,
                  deployment_mode: str = serving_runtimes.CLUSTER_DEFAULT) -> Dict[str, Any]:
    """Deploys what push published, or says why not; writes the record as Markdown to ``card_path``.

    Args:
        pushed: The push step's ``pushed_model`` metadata: ``pushed``, ``version``,
            ``pushed_destination`` (the registry version folder) and ``model_name``.
        namespace: Kubernetes namespace; empty skips deployment.
        card_path: Where to write ``render_card`` of the result; empty writes nothing.
        isvc_name, canary_traffic_percent, timeout_seconds, kube_context, api_client,
            poll_seconds, protocol, deployment_mode: as in ``run_deploy``.

    Returns:
        ``run_deploy``'s record, or ``{"action": "skipped", "reason", "model_name", "version",
        "storage_uri"}`` when nothing was pushed, no namespace is given or no cluster is configured.
    """
    # A wrong protocol or mode is refused even when there is nothing to deploy, so a typo shows at once.
    check_deployment(protocol, deployment_mode, canary_traffic_percent)
    result = _skipped(pushed, namespace, kube_context, api_client)
    if result is None:
        manifest = artifacts.read_inferenceservice(pushed["pushed_destination"])
        result = run_deploy(manifest, namespace, isvc_name=isvc_name, canary_traffic_percent=canary_traffic_percent,
                            timeout_seconds=timeout_seconds, kube_context=kube_context, api_client=api_client,
                            poll_seconds=poll_seconds, protocol=protocol, deployment_mode=deployment_mode)
    if card_path:
        dataio.write_text_atomic(card_path, render_card(result))
    return result


def _skipped(pushed: Mapping[str, Any], namespace: str, kube_context: str, api_client) -> Optional[dict]:
    """The skipped record when there is nothing to deploy or nowhere to deploy it, else None."""
    if not pushed.get("pushed"):
        reason = "nothing was pushed"
    elif not namespace:
        reason = "no namespace given"
    elif api_client is None and not is_cluster_configured(kube_context):
        reason = "no Kubernetes cluster is configured"
    else:
        return None
    log.info("deploy skipped: %s", reason)
    return {"action": SKIPPED, "reason": reason, "model_name": pushed.get("model_name", ""),
            "version": int(pushed.get("version") or 0), "storage_uri": pushed.get("pushed_destination", "")}


def check_deployment(protocol: str, deployment_mode: str, canary_traffic_percent: int = 100) -> None:
    """Raises ConfigError for an unknown protocol or mode, or a canary rollout outside Serverless mode."""
    serving_runtimes.check(protocol, deployment_mode)
    if serving_runtimes.is_standard(deployment_mode) and canary_traffic_percent < 100:
        raise ConfigError(f"canary_traffic_percent {canary_traffic_percent} needs KServe's Serverless (Knative) mode, "
                          f"whose revisions split the traffic; {deployment_mode} replaces the pods instead. Use 100, "
                          "or deploy in Serverless mode.")


def run_deploy(manifest: Mapping[str, Any], namespace: str, isvc_name: str = "", canary_traffic_percent: int = 100,
               timeout_seconds: int = 600, kube_context: str = "", api_client=None,
               poll_seconds: float = 5.0, protocol: str = serving_runtimes.REST,
               deployment_mode: str = serving_runtimes.CLUSTER_DEFAULT) -> Dict[str, Any]:
    """Creates or updates the InferenceService of ``manifest`` (as push rendered it) and waits for Ready.

    Args:
        manifest: The InferenceService push wrote beside the version (``artifacts.read_inferenceservice``).
        namespace: Kubernetes namespace of the InferenceService; replaces the manifest's.
        isvc_name: InferenceService name; defaults to the manifest's (the model name).
        canary_traffic_percent: Share of traffic for this version, 1-100; below 100 keeps the
            previous revision serving the rest until ``promote`` or ``rollback``.
        timeout_seconds: How long to wait for Ready before raising DeploymentError.
        kube_context: kubeconfig context; empty uses in-cluster credentials or the current context.
        api_client: A ``kubernetes.client.ApiClient`` to use instead of loading credentials.
        poll_seconds: Seconds between status checks while waiting.
        protocol: ``rest`` (V1/V2 REST) or ``grpc`` (V2 gRPC): what clients reach through the service.
        deployment_mode: ``Serverless`` or ``Knative`` (one port per revision), ``RawDeployment`` or
            ``Standard`` (KServe 0.16's names), written as given to the service's
            ``serving.kserve.io/deploymentMode`` annotation; empty writes none (the cluster's default
            mode, served by the one-port runtimes). KServe refuses to move a service to another
            mode (kserve/kserve#4194), so this refuses it first.

    Returns:
        ``{"namespace", "name", "url", "version", "traffic_percent", "action", "protocol",
        "deployment_mode", "serving_runtime"}`` with action
        ``created``, ``patched`` or ``unchanged``; or action ``skipped`` with ``reason`` and
        ``served_version`` when the service already serves a newer version (nothing is written).
    """
    if not namespace:
        raise ConfigError("namespace is empty: give the Kubernetes namespace to deploy the InferenceService in.")
    if not 1 <= canary_traffic_percent <= 100:
        raise ConfigError(f"canary_traffic_percent {canary_traffic_percent} is not between 1 and 100: "
                          "use 100 to send all traffic to the new version.")
    check_deployment(protocol, deployment_mode, canary_traffic_percent)
    desired = serving_runtimes.for_deployment(manifest, protocol, deployment_mode)
    served_by = {"protocol": protocol, "deployment_mode": deployment_mode or "cluster default",
                 "serving_runtime": _runtime_of(desired)}
    version = served_version(desired)
    if version is None:
        raise ConfigError(f"The InferenceService manifest {desired['metadata'].get('name')} has no "
                          f"'{keys.ISVC_VERSION_ANNOTATION}' annotation: deploy the manifest push wrote.")
    model_name = desired["metadata"].get("labels", {}).get(keys.ISVC_MODEL_LABEL) or desired["metadata"]["name"]
    name = isvc_name or desired["metadata"]["name"]
    desired["metadata"].update(name=name, namespace=namespace)
    desired["metadata"].setdefault("labels", {})[keys.ISVC_MODEL_LABEL] = model_name
    if canary_traffic_percent < 100:
        desired["spec"]["predictor"]["canaryTrafficPercent"] = canary_traffic_percent
    services = kube.InferenceServices(api_client or kube.api_client(kube_context), namespace)

    current = services.get(name)
    if current is not None:
        _check_same_mode(current, namespace, name, deployment_mode)
    if current is None:
        log.info("creating InferenceService %s/%s for %s v%d", namespace, name, model_name, version)
        # A new service has no previous revision to split traffic with.
        desired["spec"]["predictor"].pop("canaryTrafficPercent", None)
        services.create(desired)
        action, traffic = "created", 100
    else:
        serving = served_version(current)
        if serving is not None and serving > version:
            return {**_refuse_downgrade(current, namespace, name, model_name, version, serving), **served_by}
        if _same_deployment(current, desired):
            log.info("InferenceService %s/%s already serves v%d: unchanged", namespace, name, version)
            action, traffic = "unchanged", canary_traffic_percent
        else:
            log.info("patching InferenceService %s/%s to v%d at %d%% traffic", namespace, name, version,
                     canary_traffic_percent)
            services.patch(name, _patch(current, desired, canary_traffic_percent))
            action, traffic = "patched", canary_traffic_percent

    ready = readiness.wait_ready(lambda: services.get(name), namespace, name, timeout_seconds, poll_seconds)
    return {**_result(ready, namespace, name, version, traffic, action), **served_by}


def _runtime_of(isvc: Mapping[str, Any]) -> str:
    """The ServingRuntime the service names, else what serves it (a custom image, KServe's own runtime)."""
    predictor = isvc["spec"]["predictor"]
    model = predictor.get("model") or {}
    if model.get("runtime"):
        return model["runtime"]
    if model:
        return f"KServe's {(model.get('modelFormat') or {}).get('name')} runtime"
    return "custom container " + ", ".join(c.get("image", "") for c in predictor.get("containers") or [])


def _check_same_mode(current: Mapping[str, Any], namespace: str, name: str, deployment_mode: str) -> None:
    """ConfigError when the service runs in another mode (its annotation, else the mode KServe reports)."""
    if not deployment_mode:
        return
    have = (((current.get("metadata") or {}).get("annotations") or {}).get(serving_runtimes.DEPLOYMENT_MODE_ANNOTATION)
            or (current.get("status") or {}).get("deploymentMode"))
    if have and not serving_runtimes.same_mode(have, deployment_mode):
        raise ConfigError(f"InferenceService {namespace}/{name} runs in {have} mode, not {deployment_mode}: KServe "
                          "does not move a service between modes. Deploy with deployment_mode "
                          f"{have}, or under another isvc_name (or delete the service first).")


def served_version(isvc: Mapping[str, Any]) -> Optional[int]:
    """The registry version an InferenceService serves, or None when it does not say.

    Read from prodml's version annotation, else the predictor's ``--version`` argument, else a
    ``storageUri`` ending in a version folder (``.../<model>/<version>``).
    """
    value = ((isvc.get("metadata") or {}).get("annotations") or {}).get(keys.ISVC_VERSION_ANNOTATION)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    for spec in [predictor.get("model") or {}] + list(predictor.get("containers") or []):
        args = [str(a) for a in spec.get("args") or []]
        if "--version" in args[:-1] and args[args.index("--version") + 1].isdigit():
            return int(args[args.index("--version") + 1])
        uris = [spec.get("storageUri") or ""] + [e.get("value") or "" for e in spec.get("env") or []
                                                 if e.get("name") == "STORAGE_URI"]
        for uri in uris:
            match = _VERSION_FOLDER.search(uri)
            if match:
                return int(match.group(1))
    return None


def render_card(result: Mapping[str, Any]) -> str:
    """The deployment record as Markdown, for the KFP UI."""
    lines = [f"# Deployment: {result['action']}", ""]
    lines += [f"- **{k}**: {v}" for k, v in sorted(result.items()) if k != "action"]
    return "\n".join(lines) + "\n"


def _refuse_downgrade(current, namespace: str, name: str, model_name: str, version: int, serving: int) -> dict:
    reason = (f"InferenceService {namespace}/{name} serves v{serving} of {model_name}, newer than v{version}: "
              "deploy never moves a service to an older version. To serve an older model again, push it "
              "again (it becomes the newest version) or use rollback during a canary rollout.")
    log.warning("deploy skipped: %s", reason)
    return {"action": SKIPPED, "reason": reason, "namespace": namespace, "name": name,
            "url": (current.get("status") or {}).get("url", ""), "model_name": model_name, "version": version,
            "served_version": serving}


def promote(name: str, namespace: str, timeout_seconds: int = 600, kube_context: str = "",
            api_client=None, poll_seconds: float = 5.0) -> dict:
    """Sends all traffic to the latest revision (removes ``canaryTrafficPercent``) and waits for Ready."""
    return _set_traffic(name, namespace, None, "promoted", timeout_seconds, kube_context, api_client,
                        poll_seconds)


def rollback(name: str, namespace: str, timeout_seconds: int = 600, kube_context: str = "",
             api_client=None, poll_seconds: float = 5.0) -> dict:
    """Sends all traffic back to the previous rolled-out revision (``canaryTrafficPercent: 0``).

    The latest revision stays deployed without traffic; deploy another version, or ``promote``
    to undo the rollback.
    """
    return _set_traffic(name, namespace, 0, "rolled_back", timeout_seconds, kube_context, api_client,
                        poll_seconds)


def _set_traffic(name, namespace, percent, action, timeout_seconds, kube_context, api_client, poll_seconds):
    services = kube.InferenceServices(api_client or kube.api_client(kube_context), namespace)
    current = services.get(name)
    if current is None:
        raise ConfigError(f"InferenceService {namespace}/{name} does not exist: deploy a version first.")
    log.info("%s InferenceService %s/%s", action.replace("_", " "), namespace, name)
    services.patch(name, {"spec": {"predictor": {"canaryTrafficPercent": percent}}})
    ready = readiness.wait_ready(lambda: services.get(name), namespace, name, timeout_seconds, poll_seconds)
    version = served_version(ready)
    return _result(ready, namespace, name, version, 100 if percent is None else percent, action)


def _traffic(predictor: dict) -> int:
    percent = predictor.get("canaryTrafficPercent")
    return 100 if percent is None else int(percent)


def _same_deployment(current: dict, desired: dict) -> bool:
    """True when ``current`` already serves what ``desired`` asks, with the same traffic split.

    Fields that KServe's admission webhook adds (default resources, ports, ...) are ignored:
    only what we set has to be there, with the same value.
    """
    have = (current.get("spec") or {}).get("predictor") or {}
    want = desired["spec"]["predictor"]
    return (served_version(current) == served_version(desired)
            and all((field in have) == (field in want) and _contains(have.get(field), want.get(field))
                    for field in _SERVING_FIELDS)
            and _traffic(have) == _traffic(want))


def _contains(have, want) -> bool:
    """True when ``have`` holds every value of ``want`` (dicts may have more keys, lists match item by item)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(_contains, have, want))
    return have == want


def _patch(current: dict, desired: dict, canary_traffic_percent: int) -> dict:
    """The merge patch turning ``current`` into ``desired``: metadata merged, predictor fields replaced."""
    have = (current.get("spec") or {}).get("predictor") or {}
    predictor = dict(desired["spec"]["predictor"])
    for field in _SERVING_FIELDS:
        if field in have and field not in predictor:
            predictor[field] = None
    if isinstance(have.get("model"), dict) and predictor.get("model"):
        # Merge patches merge nested objects: delete model keys the new spec no longer sets.
        stale = {key: None for key in have["model"] if key not in predictor["model"]}
        predictor["model"] = {**stale, **predictor["model"]}
    predictor["canaryTrafficPercent"] = canary_traffic_percent if canary_traffic_percent < 100 else None
    meta = desired["metadata"]
    return {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
            "spec": {"predictor": predictor}}


def _result(isvc: dict, namespace: str, name: str, version, traffic: int, action: str) -> dict:
    return {"namespace": namespace, "name": name, "url": (isvc.get("status") or {}).get("url", ""),
            "version": version, "traffic_percent": traffic, "action": action}
