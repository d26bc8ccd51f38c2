"""Validate's fast tf.Example decoding gives exactly tfx-bsl's RecordBatches, odd examples included."""

import pytest

from prodml.components.validate import statistics


def _example(**features):
    """A serialized tf.Example; a value of None is a feature with no value list (no type)."""
    import tensorflow as tf

    example = tf.train.Example()
    for name, values in features.items():
        feature = example.features.feature[name]
        if values is None:
            continue
        if values == ("bytes",):
            feature.bytes_list.SetInParent()
        elif values == ("float",):
            feature.float_list.SetInParent()
        elif all(isinstance(v, bytes) for v in values) and values:
            feature.bytes_list.value.extend(values)
        elif all(isinstance(v, int) for v in values) and values:
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(values)
    return example.SerializeToString()


PLAIN = [_example(z=[1], a=[0.5, 1.5], m=[b"x"]), _example(a=[2.0]), _example(m=[b"\xff", b"y"], z=[3, 4])]


@pytest.mark.parametrize("later", [
    pytest.param(PLAIN, id="same features"),
    pytest.param([_example(a=[1.0])], id="some features absent from the batch"),
    pytest.param([_example(a=("float",), z=[1])], id="an empty value list"),
    pytest.param([_example(a=None, z=[1])], id="a feature without a type"),
    pytest.param([_example(new=[b"n"], z=[1])], id="a new feature"),
    pytest.param([_example(z=[1.5])], id="another type"),
    pytest.param([b""], id="an empty example"),
    pytest.param([_example(a=[1.0]), _example(m=("bytes",))], id="an empty bytes list"),
])
def test_every_batch_is_the_one_tfx_bsl_decodes(later):
    from tfx_bsl.coders import example_coder

    decoder = statistics._Decoder()
    for batch in (PLAIN, later, PLAIN):
        expected = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(batch)
        got = decoder.decode(batch)
        assert got.schema == expected.schema and got.equals(expected)


def test_later_batches_skip_tfx_bsl(monkeypatch):
    decoder = statistics._Decoder()
    decoder.decode(PLAIN)
    from tfx_bsl.coders import example_coder

    monkeypatch.setattr(example_coder, "ExamplesToRecordBatchDecoder", None)
    assert decoder.decode(PLAIN[::-1]).num_rows == 3


def test_a_feature_after_the_first_rows_of_the_first_batch(monkeypatch):
    from tfx_bsl.coders import example_coder

    monkeypatch.setattr(statistics, "LEARN_ROWS", 1)
    batch = [_example(a=[1.0]), _example(a=[2.0], late=[b"x"], z=[3])]
    expected = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(batch)
    got = statistics._Decoder().decode(batch)
    assert got.schema == expected.schema and got.equals(expected)
