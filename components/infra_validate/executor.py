"""Infra validate: serves the candidate in the serving runtime and decides whether it may be pushed.

Evaluate proves that the model is good; this proves that the predictor serves it. The candidate
is loaded by the prodml predictor exactly as in production (``python -m prodml.serving``, a real
KServe ModelServer on free local ports, in the serving environment: the infra-validate image's
``/opt/serving`` venv in a cluster, ``.venv/serving`` locally). Eval rows, with missing-value
variants, go over V1 REST, V2 REST and V2 gRPC and must come back with evaluate's predictions;
the server must be ready within a bound; single-row requests at a fixed concurrency must keep
their p99 latency within a bound. The decision, its reasons and the figures go to
``infra_blessing.json``; push requires it.
"""

import os
import tempfile
from typing import Any, Dict, List

from prodml.components.common import artifacts, dataio, defaults
from prodml.components.common.logs import get_logger, step
from prodml.components.infra_validate import checks, report
from prodml.components.infra_validate.probe import expected_predictions, read_probe
from prodml.components.infra_validate.serving_env import ServingCheck

log = get_logger(__name__)


def run_infra_validate(model_dir: str, examples_dir: str, infra_blessing_dir: str, report_path: str = "",
                       max_load_seconds: float = defaults.INFRA_MAX_LOAD_SECONDS,
                       max_p99_ms: float = defaults.INFRA_MAX_P99_MS,
                       max_difference: float = defaults.INFRA_MAX_DIFFERENCE,
                       concurrency: int = defaults.INFRA_CONCURRENCY,
                       latency_requests: int = defaults.INFRA_LATENCY_REQUESTS,
                       rows: int = defaults.INFRA_ROWS) -> Dict[str, Any]:
    """Serves the model in ``model_dir`` and checks it on the eval split of ``examples_dir``.

    ``rows`` eval examples (plus their missing-value variants) go over each protocol;
    ``latency_requests`` single-row requests from ``concurrency`` clients measure the latency.
    Writes ``<infra_blessing_dir>/infra_blessing.json`` and, when ``report_path`` is given, the
    decision as Markdown there. Returns ``{"blessed", "reasons", "passed" (per reason), "figures",
    "bounds", "metrics" (the figures as numbers, for KFP's Metrics), "server_log" (its tail)}``.
    A model that does not serve, answers differently or too slowly is not blessed; only a broken
    check itself (no serving environment, a bad bound) raises.
    """
    max_load_seconds = checks.positive("infra_max_load_seconds", max_load_seconds)
    max_p99_ms = checks.positive("infra_max_p99_ms", max_p99_ms)
    max_difference = checks.positive("max_difference", max_difference)
    for name, value in (("concurrency", concurrency), ("latency_requests", latency_requests), ("rows", rows)):
        checks.positive(name, value)
    model_info = artifacts.ModelInfo.read(model_dir)
    probe = read_probe(examples_dir, model_info.raw_features, int(rows))
    with tempfile.TemporaryDirectory(prefix="prodml-infra-") as work:
        probe_path, result_path = os.path.join(work, "probe.json"), os.path.join(work, "result.json")
        dataio.write_json(probe_path, probe.to_request(int(concurrency), int(latency_requests), max_load_seconds))
        with step(log, f"serving {model_dir} with the predictor in the serving environment"):
            check = ServingCheck(os.path.abspath(model_dir), probe_path, result_path, max_load_seconds)
            try:
                expected = expected_predictions(model_dir, probe)
                served = check.result()
            finally:
                check.stop()

    results: List[checks.Check] = [checks.served(served, max_load_seconds)]
    if served.get("ready"):
        results += [checks.predictions(protocol, served, expected, max_difference, probe.missing_rows)
                    for protocol in checks.PROTOCOLS]
        results.append(checks.latency(served.get("latency", {}), max_p99_ms))
    blessed = all(c.passed for c in results)
    reasons = [c.reason for c in results]
    figures = {**_figures(served, probe, expected), "concurrency": int(concurrency), "requests": int(latency_requests)}
    bounds = {"max_load_seconds": max_load_seconds, "max_p99_ms": max_p99_ms, "max_difference": max_difference}
    artifacts.InfraBlessing(blessed=blessed, reasons=reasons, figures=figures, bounds=bounds).write(
        infra_blessing_dir)
    log.info("%s: %s", "infra-blessed" if blessed else "not infra-blessed", "; ".join(reasons))
    result = {"blessed": blessed, "reasons": reasons, "passed": [c.passed for c in results], "figures": figures,
              "bounds": bounds, "metrics": _metrics(figures), "server_log": served.get("server_log", "")}
    if report_path:
        dataio.write_text_atomic(report_path, report.render_markdown(result))
    return result


def _figures(served: Dict[str, Any], probe, expected: List[Any]) -> Dict[str, Any]:
    latency = served.get("latency") or {}
    gaps = {}
    for protocol in checks.PROTOCOLS:
        if protocol in served.get("predictions", {}):
            gap = checks.difference(served["predictions"][protocol], expected)
            gaps[protocol] = gap.get("max")
    return {"ready_seconds": served.get("ready_seconds"), "load_seconds": served.get("load_seconds"),
            "warm_up_seconds": served.get("warm_up_seconds"), "max_difference": gaps,
            "rows": len(probe.rows), "eval_rows": probe.eval_rows, "missing_rows": probe.missing_rows,
            "p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms"), "max_ms": latency.get("max_ms")}


def _metrics(figures: Dict[str, Any]) -> Dict[str, float]:
    """The measured figures as flat numbers (KFP Metrics); what was not measured is left out."""
    names = ("ready_seconds", "load_seconds", "warm_up_seconds", "p50_ms", "p99_ms", "max_ms")
    metrics = {name: float(figures[name]) for name in names if figures.get(name) is not None}
    gaps = [g for g in figures.get("max_difference", {}).values() if g is not None]
    if gaps:
        metrics["max_prediction_difference"] = float(max(gaps))
    return metrics
