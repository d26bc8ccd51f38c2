"""KFP component: train a Keras model on transformed data and export it for serving."""

from typing import Dict

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def train(
    transform_graph: Input[Artifact],
    transformed_examples: Input[Dataset],
    model: Output[Model],
    trainer_module: str = "",
    epochs: int = 10,
    batch_size: int = 256,
    seed: int = 42,
    hyperparameters: Dict[str, float] = {},
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
):
    """Trains a Keras model on the transformed examples and exports a SavedModel with the transform embedded.

    The SavedModel has two signatures: serving_default takes raw features by name, and
    serving_examples takes serialized tf.Example records. Training is seeded and deterministic on CPU.

    Args:
        transform_graph: The TFT transform graph.
        transformed_examples: Transformed examples per split.
        trainer_module: A Python file defining run_fn(fn_args) -> tf_keras.Model; empty uses the default model.
        epochs: Maximum training epochs.
        batch_size: Training batch size.
        seed: Random seed for weights and shuffling.
        hyperparameters: Free-form numbers passed to the trainer (e.g. learning_rate, hidden_units).
        metadata_connection: ML Metadata connection; empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        model: The exported SavedModel plus prodml_model.json.
    """
    from prodml.components.common import keys
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.train.executor import run_train

    def body() -> Recorded:
        result = run_train(transform_graph_dir=transform_graph.path,
                           transformed_examples_dir=transformed_examples.path, model_dir=model.path,
                           trainer_module=trainer_module, epochs=epochs, batch_size=batch_size,
                           seed=seed, hyperparameters=hyperparameters)
        model.metadata.update(result.get("metrics", {}))
        model.metadata["framework"] = "tensorflow"
        return Recorded(
            inputs={keys.TRANSFORM_GRAPH_KEY: transform_graph, keys.TRANSFORMED_EXAMPLES_KEY: transformed_examples},
            outputs={keys.MODEL_KEY: model},
            parameters={"trainer_module": trainer_module, "epochs": epochs, "batch_size": batch_size,
                        "seed": seed, "hyperparameters": hyperparameters})

    run_and_record("train", metadata_connection, pipeline_name, run_id, body)
