"""Export: a trained model plus the transform graph as one SavedModel with two signatures.

- ``serving_default``: one ``[None]`` input per raw feature (float64 for INT, float32 for FLOAT,
  string for BYTES). NaN and "" mean missing and become absent values, as parsing a
  ``tf.Example`` without that feature gives, before the transform layer.
- ``serving_examples``: input ``examples``, serialized ``tf.Example`` records.

Both return ``{"predictions": float32}``: ``[batch]`` P(classes[1]) for binary, ``[batch]``
values for regression, ``[batch, n_classes]`` probabilities for multiclass.
"""

from typing import Dict, Mapping

from prodml.components.common import keys

SIGNATURE_DTYPES = {keys.INT: "float64", keys.FLOAT: "float32", keys.BYTES: "string"}
EXAMPLES_INPUT = "examples"


def export_model(model, tft_output, raw_kinds: Mapping[str, str], label_info: Mapping,
                 model_dir: str) -> Dict[str, dict]:
    """Saves ``model`` with ``tft_output``'s transform layer to ``model_dir``.

    ``raw_kinds`` maps the raw features (label excluded) to INT, FLOAT or BYTES. Returns the
    signatures' description for ``prodml_model.json``.
    """
    import tensorflow as tf

    raw_spec = {name: spec for name, spec in tft_output.raw_feature_spec().items()
                if name in raw_kinds}
    model.tft_layer = tft_output.transform_features_layer()
    problem_type = label_info["problem_type"]

    def predict(raw_features):
        transformed = model.tft_layer(raw_features)
        return {keys.PREDICTIONS: predictions(model, transformed, problem_type)}

    raw_signature = {name: tf.TensorSpec([None], SIGNATURE_DTYPES[kind], name=name)
                     for name, kind in sorted(raw_kinds.items())}

    # No autograph: nothing here branches on tensors, and converting Keras code takes seconds.
    @tf.function(input_signature=[raw_signature], autograph=False)
    def serve_raw(inputs):
        return predict({name: as_parsed(inputs[name], raw_spec[name], raw_kinds[name])
                        for name in raw_kinds})

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)],
                 autograph=False)
    def serve_examples(examples):
        return predict(tf.io.parse_example(examples, raw_spec))

    model.save(model_dir, save_format="tf", save_traces=False, signatures={
        keys.RAW_SIGNATURE: serve_raw.get_concrete_function(),
        keys.EXAMPLES_SIGNATURE: serve_examples.get_concrete_function()})
    n_classes = len(label_info.get("classes") or [])
    shape = [None, n_classes] if problem_type == keys.MULTICLASS else [None]
    outputs = {keys.PREDICTIONS: {"dtype": "float32", "shape": shape}}
    return {
        keys.RAW_SIGNATURE: {"inputs": {name: {"dtype": SIGNATURE_DTYPES[kind], "shape": [None]}
                                        for name, kind in sorted(raw_kinds.items())},
                             "outputs": outputs},
        keys.EXAMPLES_SIGNATURE: {"inputs": {EXAMPLES_INPUT: {"dtype": "string", "shape": [None]}},
                                  "outputs": outputs},
    }


def predictions(model, transformed: Mapping, problem_type: str):
    """The model's output on transformed features, in the contract's shape and dtype."""
    import tensorflow as tf

    names = getattr(model, "input_names", None) or list(transformed)
    output = model({name: transformed[name] for name in names if name in transformed})
    output = tf.cast(output, tf.float32)
    if problem_type != keys.MULTICLASS and output.shape.rank == 2:
        output = tf.squeeze(output, axis=1)
    return output


def as_parsed(values, spec, kind: str):
    """A ``[batch]`` signature input as ``tf.io.parse_example`` gives it with ``spec``.

    NaN (numbers) and "" (strings) are missing: for a ``VarLenFeature`` that row has no value.
    """
    import tensorflow as tf

    present = tf.not_equal(values, "") if kind == keys.BYTES else tf.logical_not(tf.math.is_nan(values))
    if kind == keys.INT:
        values = tf.round(values)
    if not isinstance(spec, tf.io.VarLenFeature):
        default = spec.default_value if spec.default_value is not None else ("" if kind == keys.BYTES else 0)
        filled = tf.where(present, values, tf.cast(tf.constant(default), values.dtype))
        return tf.reshape(tf.cast(filled, spec.dtype), tf.concat([[-1], spec.shape], 0))
    rows = tf.where(present)
    width = tf.cast(tf.reduce_any(present), tf.int64)  # parse_example's width: the longest row
    return tf.SparseTensor(indices=tf.concat([rows, tf.zeros_like(rows)], axis=1),
                           values=tf.cast(tf.gather_nd(values, rows), spec.dtype),
                           dense_shape=tf.stack([tf.size(values, out_type=tf.int64), width]))
