"""What the served version was trained and evaluated on: found through the registry and ML Metadata.

The registry gives the version's folder (its SavedModel and ``prodml_model.json``). ML Metadata
gives the rest: from the version's pushed-model artifact, the lineage walks back to validate's
``statistics`` and ``schema`` and to evaluate's ``evaluation`` (whose ``examples_uri`` is the eval
split the evaluation scored). Without a metadata store, or for a version pushed by an unrecorded
run, explicit folders can be given instead (``statistics_uri``, ``schema_uri``, ``evaluation_uri``).
"""

import dataclasses
from typing import Optional, Union

from prodml.components.common import artifacts, dataio, keys, lineage, names, registry
from prodml.components.common.errors import ConfigError, InputDataError, RegistryError


@dataclasses.dataclass
class Reference:
    """The served version and its training-time artifacts."""

    model_name: str
    version: int
    version_uri: str
    model: artifacts.ModelInfo
    training_stats: object          # DatasetFeatureStatisticsList of the train split
    schema: object                  # tensorflow_metadata Schema
    evaluation: Optional[artifacts.Evaluation]
    statistics_uri: str
    schema_uri: str
    evaluation_uri: str
    found_by: str                   # "ML Metadata" or "explicit folders"


def resolve_version(registry_uri: str, model_name: str, version: Union[str, int]) -> int:
    """``latest`` (or empty/0) is the newest complete version; otherwise that version, which must be complete."""
    names.check_model_name(model_name, "model name")
    if not registry_uri:
        raise ConfigError("registry_uri is empty: give the registry root the served model was pushed to.")
    complete = registry.list_versions(registry_uri, model_name)
    if version in ("latest", "", None, 0):
        if not complete:
            raise RegistryError(f"No version of model '{model_name}' is pushed under {registry_uri}: push one "
                                "first, or check the registry root and the model name.")
        return complete[-1]
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise ConfigError(f"Model version '{version}' is neither 'latest' nor a positive integer.") from None
    names.check_version(number)
    if number not in complete:
        raise RegistryError(f"Model '{model_name}' has no complete version {number} under {registry_uri} "
                            f"(complete versions: {complete or 'none'}).")
    return number


def find(registry_uri: str, model_name: str, version: int, metadata_connection: str,
         statistics_uri: str = "", schema_uri: str = "", evaluation_uri: str = "") -> Reference:
    """The served version and its training statistics, schema and evaluation."""
    import tensorflow_data_validation as tfdv

    uri = registry.version_uri(registry_uri, model_name, version)
    model = artifacts.ModelInfo.read(uri)
    found_by = "explicit folders"
    if not (statistics_uri and schema_uri):
        if not metadata_connection:
            raise ConfigError(
                f"Cannot find the training statistics and schema of {model_name} v{version}: no ML Metadata "
                "connection was given, so the lineage from the version back to validate cannot be read. Give "
                "metadata_connection (e.g. sqlite:///ABS/metadata.sqlite), or the folders explicitly "
                "(statistics_uri, schema_uri and optionally evaluation_uri).")
        found = _from_lineage(metadata_connection, uri, model_name, version)
        statistics_uri = statistics_uri or found["statistics"]
        schema_uri = schema_uri or found["schema"]
        evaluation_uri = evaluation_uri or found.get("evaluation", "")
        found_by = "ML Metadata"
    stats_file = dataio.join(dataio.split_dir(statistics_uri, keys.TRAIN), keys.STATS_FILE)
    schema_file = dataio.join(schema_uri, keys.SCHEMA_FILE)
    for path, what in ((stats_file, "training statistics"), (schema_file, "schema")):
        if not dataio.exists(path):
            raise InputDataError(f"The {what} of {model_name} v{version} should be at {path}, which does not "
                                 "exist: the artifact was deleted or moved. Give its folder explicitly.")
    evaluation = artifacts.Evaluation.read(evaluation_uri) if evaluation_uri else None
    return Reference(model_name, version, uri, model, tfdv.load_stats_binary(stats_file),
                     tfdv.load_schema_text(schema_file), evaluation, statistics_uri, schema_uri, evaluation_uri,
                     found_by)


def _from_lineage(connection: str, version_uri: str, model_name: str, version: int) -> dict:
    where = lineage.redact(connection)
    records = lineage.find_artifacts(connection, version_uri, lineage.MODEL)
    if not records:
        raise RegistryError(
            f"{model_name} v{version} ({version_uri}) has no record in ML Metadata ({where}), so its training "
            "statistics and schema cannot be found: it was pushed by a run that recorded nowhere or elsewhere "
            "('prodml lineage' can record a push from its marker). Give the metadata connection of the run "
            "that pushed it, or the folders explicitly (statistics_uri, schema_uri, evaluation_uri).")
    found = {}
    for step in lineage.upstream(connection, records[0].id):
        if step["component"] == "validate":
            for key in (keys.STATISTICS_KEY, keys.SCHEMA_KEY):
                if key in step["outputs"] and key not in found:
                    found[key] = step["outputs"][key]["uri"]
        if step["component"] == "evaluate" and keys.EVALUATION_KEY in step["outputs"]:
            found.setdefault(keys.EVALUATION_KEY, step["outputs"][keys.EVALUATION_KEY]["uri"])
    missing = [k for k in (keys.STATISTICS_KEY, keys.SCHEMA_KEY) if k not in found]
    if missing:
        raise RegistryError(
            f"The lineage of {model_name} v{version} in ML Metadata ({where}) reaches no validate step with "
            f"{' and '.join(missing)}: the run that trained it did not record validate. Give the folders "
            "explicitly (statistics_uri, schema_uri, evaluation_uri).")
    return found
