"""Names shared between components, defined once.

Artifact folders are laid out as in TFX so that TFDV, TFT and tf.data read them directly:
``<examples>/Split-<name>/data-*.tfrecord.gz`` holds gzipped ``tf.Example`` records.
"""

TRAIN = "train"
EVAL = "eval"
DEFAULT_SPLIT_RATIOS = {TRAIN: 0.8, EVAL: 0.2}

SPLIT_PREFIX = "Split-"
EXAMPLES_PATTERN = "data-*.tfrecord.gz"

# Files written inside artifact folders.
DATA_VERSION_FILE = "data_version.json"   # examples: source URI, SHA-256, row counts, columns, label
SCHEMA_FILE = "schema.pbtxt"               # schema: tensorflow_metadata Schema, text format
STATS_FILE = "FeatureStats.pb"             # statistics/Split-<name>/: DatasetFeatureStatisticsList
ANOMALIES_FILE = "anomalies.pbtxt"         # statistics/: Anomalies of train and eval, text format
LABEL_INFO_FILE = "label_info.json"        # transform graph and model: label, problem type, classes
MODEL_INFO_FILE = "prodml_model.json"      # model: raw features, signatures, training parameters
EVALUATION_FILE = "evaluation.json"        # evaluation: overall metrics, slices, baseline comparison
BLESSING_FILE = "blessing.json"            # blessing: blessed flag and reasons
MODEL_CARD_MD = "model_card.md"            # pushed version: human model card
MODEL_CARD_JSON = "model_card.json"        # pushed version: machine model card
ISVC_FILE = "inferenceservice.yaml"        # pushed version: the KServe InferenceService serving it

# SavedModel signatures.
RAW_SIGNATURE = "serving_default"          # one input per raw feature, by name
EXAMPLES_SIGNATURE = "serving_examples"    # serialized tf.Example records, input "examples"
PREDICTIONS = "predictions"                # the single output of both signatures

# Problem types.
BINARY = "binary"
MULTICLASS = "multiclass"
REGRESSION = "regression"
AUTO = "auto"
PROBLEM_TYPES = (AUTO, BINARY, MULTICLASS, REGRESSION)

# Raw feature kinds, as in tensorflow_metadata's FeatureType.
INT = "INT"
FLOAT = "FLOAT"
BYTES = "BYTES"
