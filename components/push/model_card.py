"""The model card of a pushed version: what it predicts, from which data, how well, and where it is.

``build_card`` gathers the facts into one JSON-ready dict (``model_card.json``);
``render_markdown`` turns that dict into ``model_card.md`` for people.
"""

from typing import Any, Dict, List, Optional


def build_card(model_name: str, version: int, storage_uri: str, created: str, model_info: Dict[str, Any],
               evaluation: Dict[str, Any], blessing: Dict[str, Any], data_version: Dict[str, Any],
               run_id: str = "", parameters: Optional[Dict[str, Any]] = None,
               inference_service: Optional[Dict[str, Any]] = None,
               edge_formats: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The machine-readable model card of one pushed version.

    ``edge_formats`` is export's ``edge_export.json`` ``formats`` block (None: no export step).
    """
    return {
        "model_name": model_name,
        "version": version,
        "storage_uri": storage_uri,
        "created": created,
        "run_id": run_id,
        "label": model_info.get("label", {}),
        "raw_features": model_info.get("raw_features", {}),
        "signatures": model_info.get("signatures", {}),
        "training_params": model_info.get("params", {}),
        "parameters": dict(parameters or {}),
        "metrics": evaluation.get("metrics", {}),
        "key_metric": evaluation.get("key_metric"),
        "baseline": evaluation.get("baseline", {}),
        "slices": evaluation.get("slices", {}),
        "blessing": {"reasons": blessing.get("reasons", []), "compared_to": blessing.get("compared_to")},
        "data": {k: data_version.get(k) for k in ("source_uri", "sha256", "size_bytes", "row_counts",
                                                     "split_ratios", "dropped_columns")},
        "inference_service": inference_service or {},
        "edge_formats": dict(edge_formats or {}),
    }


def render_markdown(card: Dict[str, Any]) -> str:
    """The model card as Markdown."""
    label, data = card["label"], card["data"]
    lines = [f"# Model card: {card['model_name']} v{card['version']}", "",
             "| | |", "|---|---|",
             f"| Model | `{card['model_name']}`, version {card['version']} |",
             f"| Stored at | `{card['storage_uri']}` |",
             f"| Created | {card['created']} |",
             f"| Pipeline run | {card['run_id'] or '-'} |"]
    isvc = card.get("inference_service") or {}
    if isvc.get("name"):
        lines.append(f"| InferenceService | `{isvc['name']}` in namespace `{isvc.get('namespace', 'default')}` |")
    name = card["model_name"]
    lines.append(f"| Endpoint | V1 `POST <url>/v1/models/{name}:predict`, V2 `POST <url>/v2/models/{name}/infer` "
                 f"(gRPC `ModelInfer`), where `<url>` is the InferenceService's status URL "
                 f"(`kubectl get isvc {isvc.get('name') or name}`), or `http://localhost:8080` under "
                 f"`prodml serve --model-name {name}` |")

    lines += ["", "## What it predicts", "", _task(label)]
    features = card.get("raw_features") or {}
    if features:
        lines += ["", f"Inputs ({len(features)} raw features): "
                  + ", ".join(f"`{name}` ({kind})" for name, kind in sorted(features.items())) + "."]

    lines += ["", "## Evaluation", "", "Blessed because:", ""]
    lines += [f"- {reason}" for reason in card["blessing"]["reasons"]]
    lines += ["", "| metric | value | baseline |", "|---|---|---|"]
    baseline = (card.get("baseline") or {}).get("metrics", {})
    lines += [f"| {name}{' (key)' if name == card.get('key_metric') else ''} | {_fmt(value)} | "
              f"{_fmt(baseline.get(name))} |" for name, value in sorted(card["metrics"].items())]
    for feature, slices in (card.get("slices") or {}).items():
        lines += ["", f"### By `{feature}`", ""] + _slice_table(slices)

    lines += ["", "## Training data", "", "| | |", "|---|---|",
              f"| Source | `{data.get('source_uri')}` |",
              f"| SHA-256 | `{data.get('sha256')}` |",
              f"| Size | {data.get('size_bytes')} bytes |"]
    for split, count in sorted((data.get("row_counts") or {}).items()):
        lines.append(f"| Rows ({split}) | {count} |")
    if data.get("dropped_columns"):
        lines.append(f"| Dropped columns | {', '.join(f'`{c}`' for c in data['dropped_columns'])} |")

    lines += _edge_section(card.get("edge_formats") or {})

    params = {**{f"train.{k}": v for k, v in (card.get("training_params") or {}).items()},
              **(card.get("parameters") or {})}
    if params:
        lines += ["", "## Parameters", "", "| name | value |", "|---|---|"]
        lines += [f"| {name} | `{value}` |" for name, value in sorted(params.items())]
    return "\n".join(lines) + "\n"


def render_not_pushed(model_name: str, reasons: List[str]) -> str:
    """What push shows instead of a model card when the candidate is not blessed."""
    lines = [f"# Not pushed: {model_name}", "", "The candidate is not blessed, so the registry is unchanged:", ""]
    return "\n".join(lines + [f"- {reason}" for reason in reasons]) + "\n"


def _task(label: Dict[str, Any]) -> str:
    name, problem, classes = label.get("name"), label.get("problem_type"), label.get("classes")
    if problem == "binary" and classes:
        return (f"`{name}`, binary classification: the probability that it is `{classes[1]}` "
                f"(the other class is `{classes[0]}`).")
    if problem == "multiclass" and classes:
        return f"`{name}`, multiclass classification: one probability per class, in the order {classes}."
    return f"`{name}`, regression: its value."


def _edge_section(formats: Dict[str, Any]) -> List[str]:
    """Each exported format: its file (or that it was not written), size, parity and per-row latency."""
    if not formats:
        return []
    lines = ["", "## Edge formats", "",
             "Raw features in, the transform included. Largest difference: from the SavedModel's predictions on "
             "the eval rows; p50: median latency of one-row calls, measured beside the SavedModel's in the same run.",
             "", "| format | file | size | largest difference | p50 per row | SavedModel p50 | note |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in sorted(formats.items()):
        written = f"`{entry['file']}`" if entry.get("written") else "not written"
        size = entry.get("size_bytes")
        lines.append(f"| {name} | {written} | {'' if size is None else f'{size / 1e6:.2f} MB'} | "
                     f"{_fmt_small(entry.get('max_difference'))} | {_ms(entry.get('p50_ms'))} | "
                     f"{_ms(entry.get('saved_model_p50_ms'))} | {entry.get('reason', '')} |")
    return lines


def _fmt_small(value) -> str:
    return "" if value is None else f"{value:.2g}"


def _ms(value) -> str:
    return "" if value is None else f"{value:.2f} ms"


def _slice_table(slices: Dict[str, Dict[str, float]]) -> List[str]:
    names = sorted({metric for metrics in slices.values() for metric in metrics})
    rows = ["| value | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    rows += [f"| {value} | " + " | ".join(_fmt(metrics.get(n)) for n in names) + " |"
             for value, metrics in slices.items()]
    return rows


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)
