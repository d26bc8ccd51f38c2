"""Export: the candidate's raw-feature signature as edge models (TFLite, ONNX), each checked for parity.

Each requested format is converted from the SavedModel's ``serving_default`` signature, so the
embedded tf.Transform graph (vocabularies, imputation, z-scores) is inside the edge model: raw
features in, the same predictions out. The converted file is loaded in its own runtime
(``tf.lite.Interpreter``, ``onnxruntime``) and run on eval rows beside the SavedModel; it is
written to ``<output_dir>/edge/`` only when every prediction is within the tolerance. A format
that fails to convert or to match is not written, and ``edge_export.json`` records why, with the
size, the largest difference and the per-row p50 latency of each format against the SavedModel's.
``edge_export.json`` is written last: the files it lists are complete.
"""

import os
import tempfile
from typing import Dict, List, Optional, Sequence

from prodml.components.common import artifacts, dataio, defaults, keys
from prodml.components.common.errors import ConfigError
from prodml.components.common.logs import get_logger, step
from prodml.components.export import onnx_format, parity, report, saved_model, tflite_format
from prodml.components.export import rows as r

log = get_logger(__name__)

FORMATS = {keys.TFLITE: tflite_format, keys.ONNX: onnx_format}
SAVED_MODEL = "saved_model"


def check_formats(formats: Optional[Sequence[str]]) -> List[str]:
    """The requested formats, in order, each once; ConfigError names an unknown one."""
    chosen: List[str] = []
    for name in formats or []:
        if name not in FORMATS:
            raise ConfigError(f"Unknown edge format '{name}' in export_formats: choose from "
                              f"{', '.join(sorted(FORMATS))} (or [] to export nothing).")
        if name not in chosen:
            chosen.append(name)
    return chosen


def run_export(model_dir: str, examples_dir: str, output_dir: str, formats: Optional[Sequence[str]],
               max_difference: float = defaults.EXPORT_MAX_DIFFERENCE,
               parity_rows: int = defaults.EXPORT_PARITY_ROWS, latency_rows: int = defaults.EXPORT_LATENCY_ROWS,
               report_path: str = "") -> dict:
    """Exports the model in ``model_dir`` to each of ``formats`` under ``<output_dir>/edge/``.

    Parity is checked on the first ``parity_rows`` eval rows of ``examples_dir`` in one batch and
    on the first ``latency_rows`` of them one row a call (which also times every format and the
    SavedModel, side by side). Returns ``{"formats": {name: entry}, "tolerance", "written"}`` as in
    ``edge_export.json``; ``report_path``, when given, receives it as Markdown.
    """
    chosen = check_formats(formats)
    if not max_difference > 0:
        raise ConfigError(f"max_difference must be > 0, got {max_difference}.")
    if parity_rows < 1 or latency_rows < 0:
        raise ConfigError(f"parity_rows must be ≥ 1 and latency_rows ≥ 0, got {parity_rows} and {latency_rows}.")
    entries: Dict[str, dict] = {}
    if chosen:
        entries = _export(model_dir, examples_dir, output_dir, chosen, max_difference, parity_rows, latency_rows)
    export = artifacts.EdgeExport(formats=entries, tolerance=max_difference)
    export.write(output_dir)
    result = {**export.to_dict(), "written": export.written()}
    if report_path:
        dataio.write_text_atomic(report_path, report.render_markdown(result))
    return result


def _export(model_dir: str, examples_dir: str, output_dir: str, chosen: List[str], tolerance: float,
            parity_rows: int, latency_rows: int) -> Dict[str, dict]:
    info = artifacts.ModelInfo.read(model_dir)
    rows = r.read_eval_rows(examples_dir, info.raw_features, max(parity_rows, latency_rows))
    n_rows = r.row_count(rows)
    parity_batch = r.take(rows, 0, parity_rows)
    reference = saved_model.load(model_dir)
    expected = reference(parity_batch)
    entries: Dict[str, dict] = {}
    predictors = {SAVED_MODEL: reference}
    with tempfile.TemporaryDirectory(prefix="prodml-export-") as scratch:
        for name in chosen:
            module = FORMATS[name]
            entry = {"written": False, "file": None, "size_bytes": None, "max_difference": None,
                     "parity_rows": r.row_count(parity_batch), "p50_ms": None, "saved_model_p50_ms": None,
                     "converter": module.versions()}
            entries[name] = entry
            path = os.path.join(scratch, keys.EDGE_FILES[name])
            with step(log, f"converting {model_dir} to {name}"):
                try:
                    blob = module.convert(model_dir)
                except module.ConversionError as e:
                    entry["reason"] = f"{name} conversion failed: {e}"
                    log.warning("%s", entry["reason"])
                    continue
            with open(path, "wb") as f:
                f.write(blob)
            entry["size_bytes"] = len(blob)
            try:
                predict = module.load(path)
                entry["max_difference"] = parity.max_difference(expected, predict(parity_batch))
            except (RuntimeError, ValueError) as e:  # the runtime refused the file (onnxruntime's errors
                # and the TFLite interpreter's are RuntimeErrors): record its words
                entry["reason"] = f"{name} runtime could not run the converted model: {type(e).__name__}: {e}"
                log.warning("%s", entry["reason"])
                continue
            predictors[name] = predict
        timed = parity.per_row_latency(predictors, rows, latency_rows) if latency_rows else {}
        for name, entry in entries.items():
            if name not in predictors:
                continue
            if name in timed:
                entry["p50_ms"] = timed[name]["p50_ms"]
                entry["saved_model_p50_ms"] = timed[SAVED_MODEL]["p50_ms"]
                entry["latency_rows"] = timed[name]["rows"]
                entry["max_difference"] = max(entry["max_difference"], parity.max_difference(
                    timed[SAVED_MODEL]["predictions"], timed[name]["predictions"]))
            check = parity.parity(name, entry["max_difference"], tolerance, max(entry["parity_rows"],
                                                                                timed.get(name, {}).get("rows", 0)))
            entry["reason"] = check.reason
            if check.passed:
                relative = dataio.join(keys.EDGE_DIR, keys.EDGE_FILES[name])
                dataio.copy_file(os.path.join(scratch, keys.EDGE_FILES[name]), dataio.join(output_dir, relative))
                entry["written"], entry["file"] = True, relative
            log.info("%s: %s", name, check.reason)
    log.info("edge export of %d eval rows: %s", n_rows,
             ", ".join(f"{n} {'written' if e['written'] else 'not written'}" for n, e in entries.items()))
    return entries


def metric_values(result: dict) -> Dict[str, float]:
    """The figures of an export as flat scalar metrics (KFP UI Metrics): per format, and the SavedModel's."""
    values: Dict[str, float] = {}
    for name, entry in sorted(result["formats"].items()):
        values[f"{name}_written"] = 1.0 if entry["written"] else 0.0
        for field in ("size_bytes", "max_difference", "p50_ms"):
            if entry.get(field) is not None and entry[field] != float("inf"):
                values[f"{name}_{field}"] = float(entry[field])
        if entry.get("saved_model_p50_ms") is not None:
            values[f"{SAVED_MODEL}_p50_ms"] = float(entry["saved_model_p50_ms"])
    return values
