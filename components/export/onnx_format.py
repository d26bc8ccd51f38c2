"""ONNX: the raw-feature signature, transform included, as one ``.onnx`` file (tf2onnx, onnxruntime).

tf2onnx turns the vocabulary tables into ``ai.onnx.ml`` ``CategoryMapper`` nodes. Three ops of the
embedded transform need handlers of our own (``onnx_ops``): ``SparseSlice`` (taking each raw
feature's first value), ``StringToHashBucketFast`` with one bucket (the OOV bucket: always 0)
and string ``Equal``/``NotEqual`` against a constant (missing-value checks), which tf2onnx's own
handler casts to integers. An op that stays unconverted fails the export with its name.
"""

from typing import List, Mapping

import numpy as np

from prodml.components.common import keys

FORMAT = keys.ONNX
OPSET = 17


class ConversionError(Exception):
    """The converter refused the model, or left ops ONNX has no operator for."""


def versions() -> str:
    """The converter and runtime this module uses."""
    import onnx
    import onnxruntime
    import tf2onnx

    return (f"tf2onnx {tf2onnx.__version__}, onnx {onnx.__version__} (opset {OPSET}), "
            f"onnxruntime {onnxruntime.__version__}")


def convert(model_dir: str) -> bytes:
    """The SavedModel's ``keys.RAW_SIGNATURE`` as a serialized ONNX model."""
    import tensorflow as tf
    from tf2onnx import convert as tf2onnx_convert
    from tf2onnx import tf_loader

    from prodml.components.export import onnx_ops

    onnx_ops.register()
    try:
        # What `python -m tf2onnx.convert --saved-model` does; its public from_function() loses the tables.
        graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
            model_dir, None, None, tag="serve", signatures=[keys.RAW_SIGNATURE], return_initialized_tables=True,
            return_tensors_to_rename=True)
        with tf.device("/cpu:0"):
            model, _ = tf2onnx_convert._convert_common(
                graph_def, name=model_dir, opset=OPSET, input_names=inputs, output_names=outputs,
                tensors_to_rename=renames, initialized_tables=tables)
    except Exception as e:  # tf2onnx raises whatever its handlers raise
        raise ConversionError(f"{type(e).__name__}: {str(e).strip()}") from e
    unknown = unconverted_ops(model)
    if unknown:
        raise ConversionError("tf2onnx left ops that ONNX has no operator for: " + ", ".join(unknown))
    return model.SerializeToString()


def unconverted_ops(model) -> List[str]:
    """The node types of ``model`` that no ONNX operator set defines (TensorFlow ops left as they were)."""
    import onnx

    return sorted({f"{node.domain + '.' if node.domain else ''}{node.op_type}" for node in model.graph.node
                   if not onnx.defs.has(node.op_type, node.domain)})


def as_onnx_inputs(rows: Mapping[str, np.ndarray]) -> dict:
    """onnxruntime reads a string tensor from Python ``str`` objects (bytes would become "b'...'")."""
    return {name: (np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values], object)
                   if values.dtype == object else values)
            for name, values in rows.items()}


def load(path: str):
    """``predict(rows) -> predictions`` with an onnxruntime CPU session on the file at ``path``."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initializers are not ours to act on
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def predict(rows: Mapping[str, np.ndarray]) -> np.ndarray:
        return session.run([keys.PREDICTIONS], as_onnx_inputs(rows))[0]

    return predict
