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
LABEL_INFO_FILE = "label_info.json"        # transform graph: label, problem type, classes
MODEL_INFO_FILE = "prodml_model.json"      # model: raw features, signatures, training parameters
EVALUATION_FILE = "evaluation.json"        # evaluation: overall metrics, slices, baseline comparison
BLESSING_FILE = "blessing.json"            # blessing: blessed flag and reasons
INFRA_BLESSING_FILE = "infra_blessing.json"  # infra blessing: served in the serving runtime or not, figures
EDGE_EXPORT_FILE = "edge_export.json"    # edge models: per format written or not, size, parity, latency
EDGE_DIR = "edge"                          # edge models and pushed version: the folder of the edge formats
MODEL_CARD_MD = "model_card.md"            # pushed version: human model card
MODEL_CARD_JSON = "model_card.json"        # pushed version: machine model card
ISVC_FILE = "inferenceservice.yaml"        # pushed version: the KServe InferenceService serving it
VERSION_COMPLETE_FILE = "_PRODML_COMPLETE.json"  # pushed version: written last; no marker, no version
MONITORING_FILE = "monitoring.json"        # monitoring: every drift/skew/quality score and the retrain decision
MONITORING_REPORT_HTML = "report.html"     # monitoring: the self-contained HTML report
MONITORING_SUMMARY_MD = "summary.md"       # monitoring: the Markdown summary

# Artifact names: the input and output names of the component signatures (KFP takes them from
# the Python parameter names, so a signature spells the value; tests/components/test_artifacts.py
# checks every signature against COMPONENT_ARTIFACTS). Renaming one changes the compiled
# interface: bump the component's major version (pipelines/component_versions.py).
EXAMPLES_KEY = "examples"                  # ingest: raw examples per split, data_version.json
STATISTICS_KEY = "statistics"              # validate: TFDV statistics per split
SCHEMA_KEY = "schema"                      # validate: schema.pbtxt
ANOMALIES_KEY = "anomalies"                # validate: anomalies as Markdown
STATISTICS_VIEW_KEY = "statistics_view"    # validate: statistics as HTML
TRANSFORM_GRAPH_KEY = "transform_graph"    # transform: tft.TFTransformOutput folder, label_info.json
TRANSFORMED_EXAMPLES_KEY = "transformed_examples"  # transform: transformed examples per split
MODEL_KEY = "model"                        # train: SavedModel and prodml_model.json
METRICS_KEY = "metrics"                    # evaluate: scalar metrics
CLASSIFICATION_METRICS_KEY = "classification_metrics"  # evaluate: confusion matrix and ROC curve
EVALUATION_KEY = "evaluation"              # evaluate: evaluation.json
BLESSING_KEY = "blessing"                  # evaluate: blessing.json
REPORT_KEY = "report"                      # evaluate, infra_validate: the decision as Markdown
INFRA_BLESSING_KEY = "infra_blessing"      # infra_validate: infra_blessing.json
EDGE_MODELS_KEY = "edge_models"            # export: edge/model.tflite, edge/model.onnx, edge_export.json
PUSHED_MODEL_KEY = "pushed_model"          # push: points at the registry version
MODEL_CARD_KEY = "model_card"              # push: the model card as Markdown
DEPLOYMENT_KEY = "deployment"              # deploy: the deployment record
DEPLOYMENT_CARD_KEY = "deployment_card"    # deploy: the deployment as Markdown
PREDICTIONS_KEY = "predictions"            # batch_predict: the published prediction set
SUMMARY_KEY = "summary"                    # batch_predict, monitor: the run as Markdown
MONITORING_KEY = "monitoring"              # monitor: monitoring.json, report.html, summary.md
MONITORING_VIEW_KEY = "monitoring_view"    # monitor: the report as HTML

# The artifacts each component reads and writes, as TFX's standard_component_specs declares them.
COMPONENT_ARTIFACTS = {
    "ingest": {"inputs": (), "outputs": (EXAMPLES_KEY,)},
    "validate": {"inputs": (EXAMPLES_KEY,),
                 "outputs": (STATISTICS_KEY, SCHEMA_KEY, ANOMALIES_KEY, STATISTICS_VIEW_KEY)},
    "transform": {"inputs": (EXAMPLES_KEY, SCHEMA_KEY),
                  "outputs": (TRANSFORM_GRAPH_KEY, TRANSFORMED_EXAMPLES_KEY)},
    "train": {"inputs": (TRANSFORM_GRAPH_KEY, TRANSFORMED_EXAMPLES_KEY), "outputs": (MODEL_KEY,)},
    "evaluate": {"inputs": (MODEL_KEY, EXAMPLES_KEY),
                 "outputs": (METRICS_KEY, CLASSIFICATION_METRICS_KEY, EVALUATION_KEY, BLESSING_KEY, REPORT_KEY)},
    "infra_validate": {"inputs": (MODEL_KEY, EXAMPLES_KEY), "outputs": (INFRA_BLESSING_KEY, METRICS_KEY, REPORT_KEY)},
    "export": {"inputs": (MODEL_KEY, EXAMPLES_KEY), "outputs": (EDGE_MODELS_KEY, METRICS_KEY, REPORT_KEY)},
    "push": {"inputs": (MODEL_KEY, BLESSING_KEY, INFRA_BLESSING_KEY, EVALUATION_KEY, EXAMPLES_KEY, EDGE_MODELS_KEY),
             "outputs": (PUSHED_MODEL_KEY, MODEL_CARD_KEY)},
    "deploy": {"inputs": (PUSHED_MODEL_KEY,), "outputs": (DEPLOYMENT_KEY, DEPLOYMENT_CARD_KEY)},
    "batch_predict": {"inputs": (MODEL_KEY,), "outputs": (PREDICTIONS_KEY, METRICS_KEY, SUMMARY_KEY)},
    "monitor": {"inputs": (), "outputs": (MONITORING_KEY, METRICS_KEY, MONITORING_VIEW_KEY, SUMMARY_KEY)},
}

# The InferenceService that push writes: metadata deploy reads back from a live service.
ISVC_VERSION_ANNOTATION = "prodml.io/model-version"   # the registry version it serves
ISVC_MODEL_LABEL = "prodml.io/model-name"             # the registry model name it serves

# SavedModel signatures.
RAW_SIGNATURE = "serving_default"          # one input per raw feature, by name
EXAMPLES_SIGNATURE = "serving_examples"    # serialized tf.Example records, input "examples"
PREDICTIONS = "predictions"                # the single output of both signatures

# Edge formats written by export, each as edge/<file> in the edge models artifact and the pushed version.
TFLITE = "tflite"
ONNX = "onnx"
EDGE_FILES = {TFLITE: "model.tflite", ONNX: "model.onnx"}

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
