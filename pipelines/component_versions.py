"""The released version of each component, and the libraries its README says it was verified with.

Versions are semantic and describe the component's interface (its inputs and outputs):
bump the major version when an input or output is removed, renamed or retyped, or a
required input is added; the minor version when an optional input or an output is added;
the patch version for any other change worth releasing. Then run ``make compile``, which
rewrites ``manifests/components/<name>/`` (component.yaml, metadata.yaml, README.md).
``tests/test_component_manifests.py`` fails when the interface changed but the version did not.
"""

VERSIONS = {
    "ingest": "1.2.0",
    "validate": "1.0.1",
    "transform": "1.0.1",
    "train": "1.0.1",
    "evaluate": "1.0.1",
    "infra_validate": "1.0.1",
    "export": "1.0.0",
    "push": "3.0.0",
    "deploy": "2.1.0",
    "batch_predict": "1.0.0",
    "monitor": "1.0.0",
}

STABILITY = dict.fromkeys(VERSIONS, "beta")

# Every component body records lineage (ml-metadata) and runs under kfp's executor.
_COMMON = ("kfp", "ml-metadata", "tensorflow")
# The distributions whose installed versions metadata.yaml records as "verified with".
DEPENDENCIES = {
    "ingest": _COMMON + ("pandas", "pyarrow"),
    "validate": _COMMON + ("tensorflow-data-validation", "tensorflow-metadata", "apache-beam"),
    "transform": _COMMON + ("tensorflow-transform", "tfx-bsl", "apache-beam"),
    "train": _COMMON + ("tensorflow-transform", "tf-keras"),
    "evaluate": _COMMON + ("tensorflow-transform", "scikit-learn"),
    # Runs in the infra-validate image (the runtime image plus the serving environment, kserve and TF 2.21,
    # as a second venv where the predictor starts); compiled and verified from the runtime environment.
    "infra_validate": _COMMON,
    "export": _COMMON + ("tensorflow-transform", "tf2onnx", "onnx", "onnxruntime"),
    "push": _COMMON,
    "deploy": _COMMON + ("kubernetes",),
    "batch_predict": _COMMON + ("apache-beam", "pandas", "pyarrow"),
    "monitor": _COMMON + ("tensorflow-data-validation", "tensorflow-metadata", "pyarrow", "pandas", "scikit-learn"),
}
