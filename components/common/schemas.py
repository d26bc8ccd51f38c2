"""Reading and writing schemas and the feature specs derived from them."""

from typing import Dict

from prodml.components.common import dataio, keys


def load_schema(schema_dir_or_file: str):
    """Loads a ``tensorflow_metadata`` Schema from a schema artifact folder or a .pbtxt file."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    path = schema_dir_or_file
    if not path.endswith(".pbtxt"):
        path = dataio.join(path, keys.SCHEMA_FILE)
    return text_format.Parse(dataio.read_text(path), schema_pb2.Schema())


def write_schema(schema, schema_dir: str) -> str:
    from google.protobuf import text_format

    path = dataio.join(schema_dir, keys.SCHEMA_FILE)
    dataio.write_text_atomic(path, text_format.MessageToString(schema))
    return path


def feature_kinds(schema) -> Dict[str, str]:
    """Maps each feature to ``INT``, ``FLOAT`` or ``BYTES``."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    return {f.name: schema_pb2.FeatureType.Name(f.type) for f in schema.feature}


def raw_feature_spec(schema) -> Dict[str, object]:
    """The ``tf.io`` parsing spec of the raw examples, label included."""
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_as_feature_spec(schema).feature_spec
