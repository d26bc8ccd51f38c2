"""KFP component: ingest CSV or Parquet into split tf.Example records with a data version."""

from typing import Dict, List

from kfp import dsl
from kfp.dsl import Dataset, Output

from prodml.components.common.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def ingest(
    data_uri: str,
    label: str,
    examples: Output[Dataset],
    problem_type: str = "auto",
    drop_columns: List[str] = [],
    split_ratios: Dict[str, float] = {"train": 0.8, "eval": 0.2},
    na_values: List[str] = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
                            "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"],
    split_column: str = "",
    metadata_connection: str = "",
    pipeline_name: str = "prodml-training",
    run_id: str = "",
) -> str:
    """Reads a CSV or Parquet file into train/eval tf.Example records and records its data version.

    The split is hash-based and deterministic: the same row always lands in the same split.
    The data version is the SHA-256 of the input bytes, the row count per split and the source URI.

    Args:
        data_uri: CSV or Parquet file, folder or glob; a local path or any tf.io.gfile URI.
        label: Name of the label column.
        problem_type: auto, binary, multiclass or regression; auto infers it from the label.
        drop_columns: Columns left out of the examples (for example the column the label comes from).
        split_ratios: Relative size of each split; must name train and eval.
        na_values: CSV cells read as missing besides empty ones (default: pandas' markers); [] leaves
            only empty cells missing.
        split_column: A column naming each row's split (train, eval); rows where it is empty are split by
            hash. It is not a feature. Retraining uses it to keep old training data out of the eval split.
        metadata_connection: ML Metadata connection (sqlite:///..., mysql://..., grpc://...); empty records nothing.
        pipeline_name: Pipeline context name in ML Metadata.
        run_id: Pipeline run context name in ML Metadata.

    Returns:
        examples: Gzipped tf.Example records under Split-train/ and Split-eval/, plus data_version.json.
        Output: The SHA-256 fingerprint of the input bytes.
    """
    from prodml.components.common import keys, lineage
    from prodml.components.common.wrapper import Recorded, run_and_record
    from prodml.components.ingest.executor import run_ingest

    def body() -> Recorded:
        version = run_ingest(data_uri=data_uri, output_dir=examples.path, label=label,
                             problem_type=problem_type, drop_columns=drop_columns,
                             split_ratios=split_ratios, na_values=na_values, split_column=split_column)
        data_props = {"sha256": version["sha256"], "size_bytes": version["size_bytes"]}
        examples.metadata.update({**data_props, "source_uri": version["source_uri"],
                                  "row_counts": version["row_counts"],
                                  "problem_type": version["label"]["problem_type"]})
        return Recorded(
            inputs={"data": lineage.ArtifactRecord(version["source_uri"], lineage.DATASET, data_props)},
            outputs={keys.EXAMPLES_KEY: examples},
            parameters={"label": label, "problem_type": version["label"]["problem_type"],
                        "drop_columns": drop_columns, "split_ratios": split_ratios,
                        "na_values": na_values, "split_column": split_column},
            value=version["sha256"])

    return run_and_record("ingest", metadata_connection, pipeline_name, run_id, body)
