"""tf2onnx handlers for the ops of prodml's embedded transform that tf2onnx 1.17 lacks or gets wrong.

Each handler reproduces the TensorFlow op exactly for the inputs it accepts and refuses the rest
through ``utils.make_sure`` (the export then fails with that sentence); the parity check proves it.
"""

import numpy as np

_registered = False


def register() -> None:
    """Registers the handlers with tf2onnx (once per process; they replace tf2onnx's own)."""
    global _registered
    if _registered:
        return
    from onnx import TensorProto, helper
    from tf2onnx import constants, utils
    from tf2onnx.graph_builder import GraphBuilder
    from tf2onnx.handler import tf_op
    from tf2onnx.onnx_opset import logical

    builtin_equal = logical.Equal

    def replace(ctx, node, op, inputs, attr=None):
        """Replaces ``node`` by ``op`` writing the same single output, with its shape and dtype."""
        output = node.output[0]
        shape, dtype = ctx.get_shape(output), ctx.get_dtype(output)
        ctx.remove_node(node.name)
        ctx.make_node(op, inputs, attr=attr or {}, outputs=[output], shapes=[shape], dtypes=[dtype])

    @tf_op("SparseSlice")
    class SparseSlice:
        """Keeps the entries inside [start, start + size) and shifts them to start at 0."""

        @classmethod
        def version_13(cls, ctx, node, **kwargs):
            indices, values, shape, start, size = node.input
            meta = {name: (ctx.get_shape(name), ctx.get_dtype(name)) for name in node.output}
            out_indices, out_values, out_shape = node.output
            builder = GraphBuilder(ctx)
            end = ctx.make_node("Add", [start, size]).output[0]
            start_row = builder.make_unsqueeze({"data": start, "axes": [0]})
            end_row = builder.make_unsqueeze({"data": end, "axes": [0]})
            below = ctx.make_node("Less", [indices, start_row]).output[0]
            beyond = ctx.make_node("Not", [ctx.make_node("Less", [indices, end_row]).output[0]]).output[0]
            outside = ctx.make_node("Cast", [ctx.make_node("Or", [below, beyond]).output[0]],
                                    attr={"to": TensorProto.INT64}).output[0]
            outside_count = builder.make_reduce_sum({"data": outside, "axes": [1], "keepdims": 0,
                                                     "noop_with_empty_axes": 1})
            zero = ctx.make_const(utils.make_name("zero"), np.array(0, np.int64)).output[0]
            keep = ctx.make_node("Equal", [outside_count, zero]).output[0]
            ctx.remove_node(node.name)

            def make(op, inputs, output, attr=None):
                ctx.make_node(op, inputs, attr=attr or {}, outputs=[output], shapes=[meta[output][0]],
                              dtypes=[meta[output][1]])

            kept = ctx.make_node("Compress", [indices, keep], attr={"axis": 0}).output[0]
            make("Sub", [kept, start_row], out_indices)
            make("Compress", [values, keep], out_values, {"axis": 0})
            # TensorFlow's output shape: max(min(start + size, shape) - start, 0) per dimension.
            clipped = ctx.make_node("Sub", [ctx.make_node("Min", [end, shape]).output[0], start]).output[0]
            make("Max", [clipped, zero], out_shape)

    @tf_op("StringToHashBucketFast")
    class StringToOneHashBucket:
        """With one bucket every string hashes to bucket 0; more buckets need a hash ONNX lacks."""

        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            buckets = node.get_attr_int("num_buckets")
            utils.make_sure(buckets == 1, "StringToHashBucketFast with %s buckets (%s) needs TensorFlow's "
                            "Fingerprint64 hash, which no ONNX operator computes; only 1 bucket converts",
                            buckets, node.name)
            shape = ctx.make_node("Shape", [node.input[0]]).output[0]
            replace(ctx, node, "ConstantOfShape", [shape],
                    {"value": helper.make_tensor("value", TensorProto.INT64, [1], [0])})

    @tf_op(["Equal", "NotEqual"])
    class StringAwareEqual:
        """Strings against a constant through an ai.onnx.ml LabelEncoder; numbers as tf2onnx does."""

        @classmethod
        def version_11(cls, ctx, node, **kwargs):
            if ctx.get_dtype(node.input[0]) != TensorProto.STRING:
                return builtin_equal.version_11(ctx, node, **kwargs)
            constant = [i for i, source in enumerate(node.inputs) if source.is_const()]
            utils.make_sure(len(constant) == 1, "%s compares two computed strings, which ONNX opset %s cannot",
                            node.name, ctx.opset)
            value = node.inputs[constant[0]].get_tensor_value(as_list=False).reshape(-1)
            utils.make_sure(value.size == 1, "%s compares strings with a constant list", node.name)
            key = value[0].decode("utf-8") if isinstance(value[0], bytes) else str(value[0])
            equal, other = (0, 1) if node.type == "NotEqual" else (1, 0)
            hit = ctx.make_node("LabelEncoder", [node.input[1 - constant[0]]], domain=constants.AI_ONNX_ML_DOMAIN,
                                attr={"keys_strings": [key], "values_int64s": [equal],
                                      "default_int64": other}).output[0]
            replace(ctx, node, "Cast", [hit], {"to": TensorProto.BOOL})

    _registered = True
