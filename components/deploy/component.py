"""KFP component: roll a pushed model out as a KServe InferenceService."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def deploy(
    pushed_model: Input[Model],
    deployment: Output[Artifact],
    deployment_card: Output[Markdown],
    namespace: str = "",
    isvc_name: str = "",
    canary_traffic_percent: int = 100,
    runtime: str = "prodml",
    timeout_seconds: int = 600,
    kube_context: str = "",
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
):
    """Creates or patches the InferenceService for the pushed version and waits for it to be Ready.

    Idempotent: deploying the same version twice changes nothing. Does nothing (and says so)
    when no namespace is given, no cluster is configured, or nothing was pushed.

    Args:
        pushed_model: The push step's output (metadata: pushed, version, pushed_destination).
        namespace: Kubernetes namespace; empty skips deployment.
        isvc_name: InferenceService name; defaults to the model name.
        canary_traffic_percent: Traffic for the new version; below 100 rolls out as a canary.
        runtime: prodml (our predictor's ServingRuntime) or tensorflow (KServe's TF Serving runtime).
        timeout_seconds: How long to wait for Ready.
        kube_context: kubeconfig context; empty uses in-cluster credentials or the current context.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        deployment: The deployment record (namespace, name, URL, version, traffic percent).
        deployment_card: The deployment as Markdown.
    """
    from prodml.components.common import lineage
    from prodml.components.common.task import run_component
    from prodml.components.deploy.executor import is_cluster_configured, run_deploy

    def body():
        meta = pushed_model.metadata
        model_name = meta.get("model_name", "")
        if not meta.get("pushed"):
            result = {"action": "skipped", "reason": "nothing was pushed"}
        elif not namespace:
            result = {"action": "skipped", "reason": "no namespace given"}
        elif not is_cluster_configured(kube_context):
            result = {"action": "skipped", "reason": "no Kubernetes cluster is configured"}
        else:
            registry_version = meta["pushed_destination"]
            result = run_deploy(model_name=model_name, storage_uri=registry_version.rsplit("/", 1)[0],
                                version=int(meta["version"]), namespace=namespace, isvc_name=isvc_name,
                                canary_traffic_percent=canary_traffic_percent, runtime=runtime,
                                timeout_seconds=timeout_seconds, kube_context=kube_context)
        if result["action"] == "skipped":
            result.update(model_name=model_name, version=int(meta.get("version") or 0),
                          storage_uri=meta.get("pushed_destination", ""))
        deployment.metadata.update(result)
        lines = [f"# Deployment: {result['action']}", ""]
        lines += [f"- **{k}**: {v}" for k, v in sorted(result.items()) if k != "action"]
        with open(deployment_card.path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        if result["action"] != "skipped":
            lineage.record_execution(
                metadata_connection, "deploy", pipeline_name, run_id,
                inputs={"pushed_model": lineage.ArtifactRecord(meta["pushed_destination"], lineage.MODEL)},
                outputs={"deployment": lineage.ArtifactRecord(result.get("url") or deployment.uri,
                                                              lineage.DEPLOYMENT, result)},
                parameters={"namespace": namespace, "canary_traffic_percent": canary_traffic_percent})

    run_component("deploy", body)
