"""TFLite: the raw-feature signature, transform included, as one ``.tflite`` file.

The vocabulary lookups of the embedded tf.Transform graph are hash tables filled from asset
files when the SavedModel loads. The TFLite converter keeps the tables (HASHTABLE ops) but not
that fill: the SavedModel's init op reads each file name from a variable, which the converter
cannot fold into a constant, so the converted model fails with "hashtable need to be initialized
before using". ``convert`` therefore rebinds the signature's table captures to
``tf.lookup.StaticHashTable``s holding exactly the loaded tables' keys and values, which the
converter turns into constant HASHTABLE_IMPORT ops run once when the interpreter starts. Ops with
no TFLite builtin (sparse slicing, NaN checks, the OOV hash) run as Select TF ops, which the
``tensorflow`` pip package's ``tf.lite.Interpreter`` links in (the small ``tflite-runtime`` does not).
"""

from typing import Mapping

import numpy as np

from prodml.components.common import keys

FORMAT = keys.TFLITE
# Key and value dtypes a table of the embedded transform may have, tried in this order.
_TABLE_DTYPES = (("string", "int64"), ("int64", "int64"), ("string", "float32"), ("int64", "string"))


class ConversionError(Exception):
    """The converter refused the model; the message is its own error text."""


def versions() -> str:
    """The converter and runtime this module uses."""
    import tensorflow as tf

    return f"tensorflow {tf.__version__} TFLiteConverter (TFLITE_BUILTINS + SELECT_TF_OPS), tf.lite.Interpreter"


def convert(model_dir: str) -> bytes:
    """The SavedModel's ``keys.RAW_SIGNATURE`` as a TFLite flatbuffer."""
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    signature = loaded.signatures[keys.RAW_SIGNATURE]
    holder = tf.Module()
    holder.model = loaded
    holder.tables = _constant_tables(signature)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([signature], holder)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        return converter.convert()
    except Exception as e:  # the converter raises ConverterError, ValueError or RuntimeError
        raise ConversionError(f"{type(e).__name__}: {str(e).strip()}") from e


def _constant_tables(signature) -> list:
    """Rebinds each hash table the signature captures to a constant copy; returns the copies."""
    import tensorflow as tf
    from tensorflow.python.ops import lookup_ops

    tables = []
    for external, internal in list(signature.graph.captures):
        if external.dtype != tf.resource:
            continue
        contents = _export_table(external, lookup_ops)
        if contents is None:
            continue  # a variable, not a table
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(*contents), default_value=_zero(contents))
        signature.graph.replace_capture(table.resource_handle, internal)
        # The restored function passes its captures from this list on every call.
        signature._captured_inputs = [table.resource_handle if tensor is external else tensor
                                      for tensor in signature._captured_inputs]
        tables.append(table)
    return tables


def _export_table(handle, lookup_ops):
    import tensorflow as tf

    for key_dtype, value_dtype in _TABLE_DTYPES:
        try:
            return lookup_ops.lookup_table_export_v2(handle, tf.as_dtype(key_dtype), tf.as_dtype(value_dtype))
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError):
            continue
    return None


def _zero(contents):
    # The graph passes its own default to every lookup; the table's is never used.
    import tensorflow as tf

    values = contents[1]
    return tf.constant("" if values.dtype == tf.string else 0, values.dtype)


def load(path: str):
    """``predict(rows) -> predictions`` with ``tf.lite.Interpreter`` on the file at ``path``."""
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=path).get_signature_runner(keys.RAW_SIGNATURE)

    def predict(rows: Mapping[str, np.ndarray]) -> np.ndarray:
        return runner(**rows)[keys.PREDICTIONS]

    return predict
