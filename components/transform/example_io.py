"""A split's gzipped tf.Example files in Beam: read as Arrow record batches, written by TensorFlow."""

import apache_beam as beam
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from tfx_bsl.public import tfxio

from prodml.components.common import dataio

SUFFIX = ".tfrecord.gz"


def read_split(pipeline, files, schema, batch_size: int, label: str):
    """The record batches of ``files`` (one split's, in order) and their tensor adapter config.

    One transform reads all the files. tfx_bsl's ``BeamSource`` reads each file on its own and
    flattens the reads, and the DirectRunner holds a flattened PCollection whole in memory.
    """
    source = tfxio.TFExampleRecord(file_pattern=list(files), schema=schema, telemetry_descriptors=["prodml"])
    batches = (pipeline | f"{label}/Files" >> beam.Create(files)
               | f"{label}/Records" >> beam.io.ReadAllFromTFRecord()
               | f"{label}/Decode" >> source.RawRecordToRecordBatch(batch_size))
    return batches, source.TensorAdapterConfig()


class GzipTFRecordSink(filebasedsink.FileBasedSink):
    """Beam's file sink (temporary shards, renamed when all are written) writing with TensorFlow's
    TFRecordWriter: framing, checksums and gzip in C++, at ``dataio.EXAMPLES_GZIP_LEVEL``.
    ``WriteToTFRecord`` does all three in Python per record, at zlib's default level."""

    def __init__(self, file_path_prefix: str):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix=SUFFIX,
                         compression_type=CompressionTypes.UNCOMPRESSED)

    def open(self, temp_path):
        import tensorflow as tf

        return tf.io.TFRecordWriter(temp_path, tf.io.TFRecordOptions(
            compression_type="GZIP", compression_level=dataio.EXAMPLES_GZIP_LEVEL))

    def write_encoded_record(self, file_handle, encoded_value):
        file_handle.write(encoded_value)
