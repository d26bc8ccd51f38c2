"""KFP component: serve the candidate in the serving runtime and bless it for push, or not."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from prodml.components.common.images import INFRA_VALIDATE_IMAGE


@dsl.component(base_image=INFRA_VALIDATE_IMAGE, install_kfp_package=False)
def infra_validate(
    model: Input[Model],
    examples: Input[Dataset],
    infra_blessing: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    infra_max_load_seconds: float = 300.0,
    infra_max_p99_ms: float = 2000.0,
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
) -> bool:
    """Serves the candidate with the prodml predictor (a KServe ModelServer) and checks that it answers.

    The predictor loads the model as in production and gets eval rows (and missing-value
    variants) over V1 REST, V2 REST and V2 gRPC; the answers must equal evaluate's predictions
    (1e-5), the server must be ready within infra_max_load_seconds, and single-row requests at
    concurrency 8 must keep a p99 latency within infra_max_p99_ms. Push requires this blessing.
    Runs in the infra-validate image (the runtime image plus the serving environment as a second venv,
    where the predictor is started); locally the check runs in the serving environment (.venv/serving).

    Args:
        model: The candidate model.
        examples: The ingested (raw) examples; eval rows are sent to the served model.
        infra_max_load_seconds: Most seconds from the server's start to ready (model load and warm-up).
        infra_max_p99_ms: Most p99 latency of single-row requests at concurrency 8, in milliseconds.
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        infra_blessing: infra_blessing.json with the decision, its reasons, the figures and the bounds.
        metrics: The figures (ready_seconds, load_seconds, warm_up_seconds, p50_ms, p99_ms, max_ms,
            max_prediction_difference).
        report: The decision and the figures as Markdown.
        Output: Whether the candidate is infra-blessed.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.infra_validate.executor import run_infra_validate

    def body() -> Recorded:
        result = run_infra_validate(model_dir=model.path, examples_dir=examples.path,
                                    infra_blessing_dir=infra_blessing.path, report_path=report.path,
                                    max_load_seconds=infra_max_load_seconds, max_p99_ms=infra_max_p99_ms)
        for name, value in result["metrics"].items():
            metrics.log_metric(name, value)
        infra_blessing.metadata.update(blessed=result["blessed"], reasons=result["reasons"])
        return Recorded(
            inputs={keys.MODEL_KEY: model, keys.EXAMPLES_KEY: examples},
            outputs={keys.INFRA_BLESSING_KEY: infra_blessing, keys.METRICS_KEY: metrics, keys.REPORT_KEY: report},
            parameters={"infra_max_load_seconds": infra_max_load_seconds, "infra_max_p99_ms": infra_max_p99_ms},
            value=bool(result["blessed"]))

    return run_and_record("infra_validate", metadata_connection, pipeline_name, run_id, body)
