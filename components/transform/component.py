"""KFP component: tensorflow-transform with the user's preprocessing_fn or a generated default."""

from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def transform(
    examples: Input[Dataset],
    schema: Input[Artifact],
    transform_graph: Output[Artifact],
    transformed_examples: Output[Dataset],
    preprocessing_module: str = "",
    beam_args: List[str] = [],
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
):
    """Analyzes the train split and transforms every split with tensorflow-transform.

    Without a preprocessing module, numeric features are z-scored with missing values imputed
    (plus a missing indicator), strings get a vocabulary with OOV buckets, and the label is
    encoded for the problem type.

    Args:
        examples: The ingested examples.
        schema: The schema from validate.
        preprocessing_module: A Python file defining preprocessing_fn(inputs); empty generates a default.
        beam_args: Beam pipeline options, e.g. ["--runner=DataflowRunner", "--project=P", "--region=R"].
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        transform_graph: The TFT transform graph (transform_fn/, transformed_metadata/) and label_info.json.
        transformed_examples: Transformed tf.Example records per split.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.transform.executor import run_transform

    def body() -> Recorded:
        result = run_transform(examples_dir=examples.path, schema_dir=schema.path,
                               transform_graph_dir=transform_graph.path,
                               transformed_examples_dir=transformed_examples.path,
                               preprocessing_module=preprocessing_module, beam_args=beam_args)
        transform_graph.metadata["preprocessing"] = result.get("preprocessing", "")
        transformed_examples.metadata["row_counts"] = result.get("rows", {})
        return Recorded(
            inputs={keys.EXAMPLES_KEY: examples, keys.SCHEMA_KEY: schema},
            outputs={keys.TRANSFORM_GRAPH_KEY: transform_graph, keys.TRANSFORMED_EXAMPLES_KEY: transformed_examples},
            parameters={"preprocessing_module": preprocessing_module, "beam_args": beam_args})

    run_and_record("transform", metadata_connection, pipeline_name, run_id, body)
