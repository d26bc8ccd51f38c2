"""Reading a split's gzipped tf.Example files in Beam as Arrow record batches, in file order."""

import apache_beam as beam
from tfx_bsl.public import tfxio


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
