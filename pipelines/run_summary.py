"""The summary of one training run, read from its artifacts.

``prodml run training`` and ``run_training()`` show it: run id, eval metrics, the blessing
decision and its reasons, the infra blessing with its figures, the pushed version (or None) and
the data version. It is read from the files the steps wrote (``evaluation.json``,
``blessing.json``, ``infra_blessing.json``, ``data_version.json``) through
:mod:`prodml.components.common.artifacts`, not built by any component.
"""

import os
from typing import Any, Dict

from prodml.components.common import artifacts, keys

# kfp.local keeps each output at <pipeline_root>/<run>/<task>/<output>; task names are component names.
_BLESSING = ("evaluate", keys.BLESSING_KEY)
_EVALUATION = ("evaluate", keys.EVALUATION_KEY)
_EXAMPLES = ("ingest", keys.EXAMPLES_KEY)
_INFRA_BLESSING = ("infra-validate", keys.INFRA_BLESSING_KEY)


def summarize_run(pushed_model: Any) -> Dict[str, Any]:
    """The run summary from the pipeline's output (push's ``pushed_model`` artifact of a local run).

    Returns ``{"run_id", "metrics", "blessed", "reasons", "pushed": {"version", "uri"} or None,
    "data_version": {"sha256", "source_uri", "row_counts"}, "infra": {"blessed", "reasons", "figures"} or None}``
    (``infra`` is None for a run without infra_validate).
    """
    run_folder = os.path.dirname(os.path.dirname(pushed_model.path))
    blessing = artifacts.Blessing.read(os.path.join(run_folder, *_BLESSING))
    evaluation = artifacts.Evaluation.read(os.path.join(run_folder, *_EVALUATION))
    data_version = artifacts.DataVersion.read(os.path.join(run_folder, *_EXAMPLES))
    infra_folder = os.path.join(run_folder, *_INFRA_BLESSING)
    infra = artifacts.InfraBlessing.read(infra_folder) if artifacts.InfraBlessing.exists(infra_folder) else None
    meta = pushed_model.metadata
    # KFP passes metadata numbers as floats.
    pushed = ({"version": int(meta["version"]), "uri": meta["pushed_destination"]} if meta.get("pushed") else None)
    return {"run_id": meta.get("run_id", ""), "metrics": evaluation.metrics, "blessed": blessing.blessed,
            "reasons": list(blessing.reasons), "pushed": pushed, "data_version": data_version.summary(),
            "infra": ({"blessed": infra.blessed, "reasons": list(infra.reasons), "figures": infra.figures}
                      if infra is not None else None)}
