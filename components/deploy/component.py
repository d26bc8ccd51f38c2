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
    protocol: str = "rest",
    deployment_mode: str = "",
    timeout_seconds: int = 600,
    kube_context: str = "",
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
):
    """Applies the InferenceService manifest push wrote for the pushed version and waits for it to be Ready.

    Idempotent: deploying the same version twice changes nothing. Does nothing (and says so)
    when no namespace is given, no cluster is configured, nothing was pushed, or the service
    already serves a newer version: deploy never moves a service to an older version.

    Args:
        pushed_model: The push step's output (metadata: pushed, version, pushed_destination).
        namespace: Kubernetes namespace; empty skips deployment.
        isvc_name: InferenceService name; defaults to the model name.
        canary_traffic_percent: Traffic for the new version; below 100 rolls out as a canary (Serverless only).
        protocol: What clients use through the service: rest (V1/V2 REST) or grpc (V2 gRPC). Chooses the
            ServingRuntime (prodml-predictor, prodml-predictor-grpc, prodml-predictor-raw) or container ports.
        deployment_mode: KServe's mode: Serverless/Knative (one port per revision: REST or gRPC),
            RawDeployment/Standard (REST and gRPC together), written to the deploymentMode annotation as
            given; empty uses the cluster's default mode with a one-port runtime.
        timeout_seconds: How long to wait for Ready.
        kube_context: kubeconfig context; empty uses in-cluster credentials or the current context.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        deployment: The deployment record (namespace, name, URL, version, traffic percent, action).
        deployment_card: The deployment as Markdown.
    """
    from prodml.components.common import keys, lineage
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.deploy.executor import SKIPPED, deploy_pushed

    def body() -> Recorded:
        meta = dict(pushed_model.metadata)
        result = deploy_pushed(meta, namespace, isvc_name=isvc_name, canary_traffic_percent=canary_traffic_percent,
                               timeout_seconds=timeout_seconds, kube_context=kube_context,
                               card_path=deployment_card.path, protocol=protocol, deployment_mode=deployment_mode)
        deployment.metadata.update(result)
        return Recorded(
            inputs={keys.PUSHED_MODEL_KEY: lineage.ArtifactRecord(meta.get("pushed_destination", ""), lineage.MODEL)},
            outputs={keys.DEPLOYMENT_KEY: lineage.ArtifactRecord(result.get("url") or deployment.uri,
                                                                 lineage.DEPLOYMENT, result)},
            parameters={"namespace": namespace, "canary_traffic_percent": canary_traffic_percent,
                        "protocol": protocol, "deployment_mode": deployment_mode},
            record=result["action"] != SKIPPED)

    run_and_record("deploy", metadata_connection, pipeline_name, run_id, body)
