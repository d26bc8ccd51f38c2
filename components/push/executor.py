"""Push: publishes a blessed model as the next version in the registry, with its model card.

A version is ``<registry>/<model_name>/<version>/``: the SavedModel and ``prodml_model.json``
copied from the model folder, ``model_card.md``, ``model_card.json`` and the KServe
``inferenceservice.yaml`` that serves it. It appears only complete (see ``registry.publish``).
A model that is not blessed is not pushed.
"""

import datetime
import os
import re
from typing import Dict, Optional

from prodml.components.common import dataio, keys, registry
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, silence_tensorflow, step
from prodml.components.push import model_card
from prodml.components.push.inferenceservice import render_inferenceservice, to_yaml

log = get_logger(__name__)

# A Kubernetes DNS-1123 label: the model name becomes the InferenceService's name.
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME_LENGTH = 63


def validate_model_name(model_name: str) -> str:
    """Raises ConfigError unless ``model_name`` is a DNS-1123 label (it names the InferenceService)."""
    if not model_name or len(model_name) > _MAX_NAME_LENGTH or not _DNS1123_LABEL.match(model_name):
        raise ConfigError(f"Model name '{model_name}' is not a valid DNS-1123 label: it names the KServe "
                          f"InferenceService, so use at most {_MAX_NAME_LENGTH} lowercase letters, digits and "
                          "'-', starting and ending with a letter or digit (e.g. 'chicago-taxi').")
    return model_name


def run_push(model_dir: str, blessing_dir: str, evaluation_dir: str, examples_dir: str, registry_uri: str,
             model_name: str, run_id: str = "", parameters: Optional[dict] = None,
             namespace: str = "default") -> dict:
    """Copies a blessed model to the next version of ``model_name`` in ``registry_uri``.

    Returns ``{"pushed", "version", "uri", "blessed", "reasons", "metrics", "data_version",
    "model_card"}``; when the model is not blessed nothing is written, ``pushed`` is False and
    ``reasons`` say why.
    """
    silence_tensorflow()
    validate_model_name(model_name)
    if not registry_uri:
        raise ConfigError("registry_uri is empty: give the registry root (a local path or a gs:// URI).")
    blessing = _read_json(blessing_dir, keys.BLESSING_FILE, "a blessing folder written by evaluate")
    reasons = list(blessing.get("reasons", []))
    evaluation = _read_json(evaluation_dir, keys.EVALUATION_FILE, "an evaluation folder written by evaluate")
    data_version = _read_json(examples_dir, keys.DATA_VERSION_FILE, "an examples folder written by ingest")
    facts = {"blessed": bool(blessing.get("blessed")), "reasons": reasons,
             "metrics": evaluation.get("metrics", {}), "data_version": data_version}
    if not blessing.get("blessed"):
        log.info("not pushed: %s", "; ".join(reasons) or "the model is not blessed")
        return {"pushed": False, "version": None, "uri": None, "model_card": "", **facts}

    model_info = _read_json(model_dir, keys.MODEL_INFO_FILE, "a model folder written by train")
    if not dataio.exists(dataio.join(model_dir, "saved_model.pb")):
        raise InputDataError(f"{model_dir} holds no saved_model.pb: give the model folder that train wrote.")
    if dataio.is_local(registry_uri):
        registry_uri = os.path.abspath(dataio.local_path(registry_uri))
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    cards: Dict[int, str] = {}

    def stamp(staging: str, version: int) -> None:
        uri = registry.version_uri(registry_uri, model_name, version)
        isvc = render_inferenceservice(model_name, uri, version, namespace=namespace)
        card = model_card.build_card(model_name, version, uri, created, model_info, evaluation, blessing,
                                     data_version, run_id=run_id, parameters=parameters,
                                     inference_service={"name": model_name, "namespace": namespace})
        cards[version] = model_card.render_markdown(card)
        dataio.write_json(dataio.join(staging, keys.MODEL_CARD_JSON), card)
        dataio.write_text_atomic(dataio.join(staging, keys.MODEL_CARD_MD), cards[version])
        dataio.write_text_atomic(dataio.join(staging, keys.ISVC_FILE), to_yaml(isvc))

    with step(log, f"pushing {model_dir} to {registry.model_root(registry_uri, model_name)}"):
        version = registry.publish(registry_uri, model_name, lambda staging: copy_tree(model_dir, staging),
                                   stamp=stamp)
    uri = registry.version_uri(registry_uri, model_name, version)
    log.info("pushed %s v%d to %s", model_name, version, uri)
    return {"pushed": True, "version": version, "uri": uri, "model_card": cards[version], **facts}


def copy_tree(src: str, dst: str) -> None:
    """Copies every file under ``src`` to the same relative path under ``dst`` (local or gfile URIs)."""
    dataio.makedirs(dst)
    for relative in dataio.list_files(src):
        copy_file(dataio.join(src, relative), dataio.join(dst, relative))


# Module-level so that a test can make the copy fail half-way.
copy_file = dataio.copy_file


def _read_json(folder: str, name: str, what: str) -> dict:
    path = dataio.join(folder, name)
    if not dataio.exists(path):
        raise InputDataError(f"{path} is missing: {folder} is not {what}.")
    return dataio.read_json(path)

