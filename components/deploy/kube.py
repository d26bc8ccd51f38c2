"""The Kubernetes side of deploy: credentials and the InferenceService REST calls.

Uses the official ``kubernetes`` client's ``CustomObjectsApi`` (``serving.kserve.io/v1beta1``,
plural ``inferenceservices``). Patches are JSON merge patches
(``application/merge-patch+json``): nested objects merge, lists are replaced, ``None`` deletes.
"""

import os
from typing import Optional

from prodml.components.common.errors import ConfigError, DeploymentError

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
_SA_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


def in_cluster() -> bool:
    """True inside a pod whose service account token is mounted."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and os.path.exists(_SA_TOKEN)


def kubeconfig_paths() -> list:
    """The kubeconfig files kubectl would read ($KUBECONFIG, else ~/.kube/config) that exist."""
    listed = os.environ.get("KUBECONFIG", "")
    paths = [p for p in listed.split(os.pathsep) if p] if listed else [os.path.expanduser("~/.kube/config")]
    return [p for p in paths if os.path.isfile(p)]


def is_cluster_configured(kube_context: str = "") -> bool:
    """True when a cluster can be reached: in a pod, or a kubeconfig (with ``kube_context``, if given)."""
    if in_cluster() and not kube_context:
        return True
    paths = kubeconfig_paths()
    if not paths:
        return False
    if not kube_context:
        return True
    from kubernetes import config

    try:
        contexts, _ = config.list_kube_config_contexts(config_file=os.pathsep.join(paths))
    except (config.ConfigException, OSError, ValueError):
        return False
    return any(c.get("name") == kube_context for c in contexts or [])


def api_client(kube_context: str = ""):
    """A ``kubernetes.client.ApiClient`` for the pod's service account or the kubeconfig context."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if in_cluster() and not kube_context:
            config.load_incluster_config(client_configuration=configuration)
        else:
            # The client reads $KUBECONFIG once, at import; read it now so that a change is seen.
            config.load_kube_config(config_file=os.pathsep.join(kubeconfig_paths()) or None,
                                    context=kube_context or None, client_configuration=configuration)
    except (config.ConfigException, OSError) as e:
        where = f"context '{kube_context}'" if kube_context else "the current context"
        raise ConfigError(f"Cannot load Kubernetes credentials for {where}: {e}. Check KUBECONFIG and "
                          "`kubectl config get-contexts`, or run inside the cluster.") from e
    return client.ApiClient(configuration)


class InferenceServices:
    """get / create / merge-patch of InferenceServices in one namespace."""

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace

    def get(self, name: str) -> Optional[dict]:
        """The InferenceService, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise self._error("read", name, e) from e

    def create(self, body: dict) -> dict:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        except ApiException as e:
            raise self._error("create", body["metadata"]["name"], e) from e

    def patch(self, name: str, patch: dict) -> dict:
        """Applies ``patch`` as a JSON merge patch (the client's Content-Type for custom objects)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)
        except ApiException as e:
            raise self._error("patch", name, e) from e

    def _error(self, verb: str, name: str, e) -> DeploymentError:
        hint = {401: "the credentials were refused", 403: "the service account lacks RBAC rights "
                "(see manifests/kserve/rbac.yaml)", 404: "KServe is not installed (no InferenceService CRD)"}
        reason = hint.get(e.status, f"HTTP {e.status} {e.reason}")
        return DeploymentError(f"Cannot {verb} InferenceService {self.namespace}/{name}: {reason}. "
                               f"API server said: {(e.body or '').strip()[:300]}")
