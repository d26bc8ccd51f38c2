"""Push: publishes a blessed model as the next version in the registry, with its model card.

A version is ``<registry>/<model_name>/<version>/``: the SavedModel and ``prodml_model.json``
copied from the model folder, ``model_card.md``, ``model_card.json`` and the KServe
``inferenceservice.yaml`` that serves it. It appears only complete (see ``registry.publish``).
A model is pushed only when evaluate blessed it and, when its folder is given, infra_validate
infra-blessed it (the training pipeline always gives it).
"""

import datetime
import os
from typing import Dict, List, Optional

from prodml.components.common import artifacts, dataio, keys, registry
from prodml.components.common.errors import ConfigError, InputDataError
from prodml.components.common.logs import get_logger, step
from prodml.components.common.names import check_model_name
from prodml.components.push import model_card
from prodml.components.push.inferenceservice import check_runtime, render_inferenceservice, to_yaml

log = get_logger(__name__)


def run_push(model_dir: str, blessing_dir: str, evaluation_dir: str, examples_dir: str, registry_uri: str,
             model_name: str, run_id: str = "", parameters: Optional[dict] = None,
             namespace: str = "default", runtime: str = "prodml", image: str = "", card_path: str = "",
             infra_blessing_dir: str = "", edge_models_dir: str = "") -> dict:
    """Copies a blessed model to the next version of ``model_name`` in ``registry_uri``.

    Beside the model it writes the model card and the InferenceService manifest that serves the
    version (``runtime``, ``image`` and ``namespace`` as in ``render_inferenceservice``); deploy
    applies that manifest. ``card_path``, when given, receives the model card as Markdown (or,
    when nothing is pushed, why). ``infra_blessing_dir`` is infra_validate's folder: when given, the
    model must be infra-blessed too. ``edge_models_dir`` is export's folder: when given, the edge
    formats that passed parity go into the version as ``edge/<file>`` and the card lists every format.

    Returns ``{"pushed", "version", "uri", "reasons", "model_card", "data_sha256"}``; when the
    model is not blessed (or not infra-blessed) nothing is written, ``pushed`` is False and
    ``reasons`` say why (the infra reasons prefixed with "infra: ").
    """
    check_model_name(model_name)
    if not registry_uri:
        raise ConfigError("registry_uri is empty: give the registry root (a local path or a gs:// URI).")
    blessing = artifacts.Blessing.read(blessing_dir)
    evaluation = artifacts.Evaluation.read(evaluation_dir)
    data_version = artifacts.DataVersion.read(examples_dir)
    infra = artifacts.InfraBlessing.read(infra_blessing_dir) if infra_blessing_dir else None
    if not blessing.blessed or (infra is not None and not infra.blessed):
        reasons = list(blessing.reasons) if not blessing.blessed else []
        if infra is not None and not infra.blessed:
            reasons += [f"infra: {reason}" for reason in infra.reasons]
        log.info("not pushed: %s", "; ".join(reasons) or "the model is not blessed")
        if card_path:
            dataio.write_text_atomic(card_path, model_card.render_not_pushed(model_name, reasons))
        return _result(None, None, reasons, "", data_version)

    model_info = artifacts.ModelInfo.read(model_dir)
    edge = artifacts.EdgeExport.read(edge_models_dir) if edge_models_dir else None
    if not dataio.exists(dataio.join(model_dir, "saved_model.pb")):
        raise InputDataError(f"{model_dir} holds no saved_model.pb: give the model folder that train wrote.")
    check_runtime(runtime, image)  # before anything is written
    if dataio.is_local(registry_uri):
        registry_uri = os.path.abspath(dataio.local_path(registry_uri))
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    cards: Dict[int, str] = {}

    def stamp(staging: str, version: int) -> None:
        uri = registry.version_uri(registry_uri, model_name, version)
        isvc = render_inferenceservice(model_name, uri, version, namespace=namespace, runtime=runtime, image=image)
        card = model_card.build_card(model_name, version, uri, created, model_info.to_dict(),
                                     evaluation.to_dict(), blessing.to_dict(), data_version.to_dict(),
                                     run_id=run_id, parameters=parameters,
                                     inference_service={"name": model_name, "namespace": namespace},
                                     edge_formats=edge.formats if edge else None)
        for relative in (edge.written() if edge else {}).values():
            copy_file(dataio.join(edge_models_dir, relative), dataio.join(staging, relative))
        cards[version] = model_card.render_markdown(card)
        artifacts.ModelCard(card).write(staging)
        dataio.write_text_atomic(dataio.join(staging, keys.MODEL_CARD_MD), cards[version])
        artifacts.write_inferenceservice(staging, to_yaml(isvc))

    with step(log, f"pushing {model_dir} to {registry.model_root(registry_uri, model_name)}"):
        # The marker names the run, so lineage can explain the version if push dies before recording it.
        version = registry.publish(registry_uri, model_name, lambda staging: copy_tree(model_dir, staging),
                                   stamp=stamp, marker={"run_id": run_id, "source_model": model_dir})
    uri = registry.version_uri(registry_uri, model_name, version)
    log.info("pushed %s v%d to %s", model_name, version, uri)
    if card_path:
        dataio.write_text_atomic(card_path, cards[version])
    return _result(version, uri, blessing.reasons, cards[version], data_version)


def _result(version: Optional[int], uri: Optional[str], reasons: List[str], card: str,
            data_version: artifacts.DataVersion) -> dict:
    return {"pushed": version is not None, "version": version, "uri": uri, "reasons": list(reasons),
            "model_card": card, "data_sha256": data_version.sha256}


def copy_tree(src: str, dst: str) -> None:
    """Copies every file under ``src`` to the same relative path under ``dst`` (local or gfile URIs)."""
    dataio.makedirs(dst)
    for relative in dataio.list_files(src):
        copy_file(dataio.join(src, relative), dataio.join(dst, relative))


# Module-level so that a test can make the copy fail half-way.
copy_file = dataio.copy_file
