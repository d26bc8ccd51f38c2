"""The monitor's outputs for people: a self-contained HTML report and a Markdown summary.

The HTML page is drawn by ``components/common/html_report`` (no script, no URL load): the
decision, served vs training distributions of the drifted features (inline SVG), every drift and
skew score in tables, prediction drift, live quality against the evaluation and over time, the
operational figures and the business metrics.
"""

from typing import Any, Dict, List

from prodml.components.common import html_report as h

_CLIPPED = ("Served numeric values are compared clipped to the training range [min, max] (their histograms "
            "above too): values beyond it count in the edge buckets, and their share is under "
            "'Out of training range' in the skew table.")

def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_html(result: Dict[str, Any], training_stats, serving_stats, prediction_stats=None) -> str:
    """The whole report page; ``prediction_stats`` is ``{"serving": s, "evaluation": e}`` of the scores."""
    title = f"Monitoring of {result['model_name']} v{result['version']}"
    sections: List[str] = [h.section("Decision", h.paragraph(
        f"Retrain: {'yes' if result['retrain'] else 'no'}. {result['rows']} served rows in the window."),
        h.table(["Reason"], [[r] for r in result["reasons"]]))]
    if result["rows"] and serving_stats is not None:
        drifted = result["drifted_features"]
        charts = h.distribution_charts({"serving": serving_stats, "training": training_stats}, drifted) \
            if drifted else h.paragraph("No feature drifted above its bound.")
        sections.append(h.section("Drifted features: served vs training", charts))
        rows, highlight = [], set()
        for i, (name, scores) in enumerate(sorted(result["drift"].items())):
            if name in drifted:
                highlight.add(i)
            rows.append([name, scores.get("js"), scores.get("linf"), scores.get("psi"),
                         "drifted" if name in drifted else ""])
        sections.append(h.section("Drift of every feature (TFDV's Jensen-Shannon / L-infinity, and PSI)",
                                  h.table(["Feature", "JS divergence", "L-infinity", "PSI", ""], rows, highlight),
                                  h.paragraph(_CLIPPED)))
        skew = result["skew"]
        skew_rows = [[name, e.get("missing_training"), e.get("missing_serving"), e.get("out_of_range_share"),
                      e.get("new_category_share"), ", ".join(e.get("new_categories") or [])]
                     for name, e in sorted(skew["features"].items())]
        parts = [h.table(["Feature", "Missing (training)", "Missing (serving)", "Out of training range",
                          "New category share", "New categories"], skew_rows)]
        if skew["anomalies"]:
            parts.append(h.table(["Feature", "Schema anomaly (TFDV)"], [[k, v] for k, v in skew["anomalies"].items()]))
        else:
            parts.append(h.paragraph("No schema anomaly: the served statistics fit the training schema."))
        sections.append(h.section("Training-serving skew", *parts))
        pred = result["prediction_drift"]
        parts = [h.paragraph(pred.get("description", "")),
                 h.table(["Measure", "Value"], [[k, v] for k, v in pred.items() if k != "description"])]
        if prediction_stats:
            parts.append(h.distribution_charts(prediction_stats, ["prediction"]))
        sections.append(h.section("Prediction drift", *parts))
    sections.append(_quality_section(result))
    op = result["operational"]
    op_rows = [["rows in the window", op["rows"]], ["share of rows with a missing feature", op["missing_row_share"]],
               ["malformed lines skipped", op["malformed_lines"]],
               ["rows of other models or versions (left out)", op["other_rows"]],
               ["rows outside the time window (left out)", op["outside_window"]],
               ["versions seen", ", ".join(op["versions_seen"]) or "–"]]
    parts = [h.table(["Figure", "Value"], op_rows)]
    if op["malformed_examples"]:
        parts.append(h.table(["Malformed lines (first few)"], [[e] for e in op["malformed_examples"]]))
    if op["rows_per_hour"]:
        hours = sorted(op["rows_per_hour"])
        parts.append(h.line_chart("Rows per hour", hours, {"rows": [op["rows_per_hour"][k] for k in hours]}))
    sections.append(h.section("Operations", *parts))
    if result["business"]:
        sections.append(h.section("Business metrics", h.table(["Metric", "Value"],
                                                              [[k, v] for k, v in result["business"].items()])))
    return h.page(title, sections)


def _quality_section(result: Dict[str, Any]) -> str:
    if not result["quality"]:
        return h.section("Live quality", h.paragraph(result.get("quality_note") or "No labels were given."))
    metrics = sorted(set(result["quality"]) | set(result["evaluation"]))
    rows = [[name, result["quality"].get(name), result["evaluation"].get(name)] for name in metrics]
    parts = [h.paragraph(f"{result['labelled_rows']} labelled rows; {result['label_match_rate']:.1%} of the served "
                         "rows found a label."), h.table(["Metric", "Live", "At evaluation"], rows)]
    over = result.get("quality_over_time") or {}
    if over.get("x"):
        metric = over["metric"]
        parts.append(h.line_chart(f"Live {metric} over time", over["x"], {f"live {metric}": over["values"]}))
    return h.section("Live quality", *parts)


def render_markdown(result: Dict[str, Any]) -> str:
    """The summary: decision and reasons, drifted features, quality, operations."""
    lines = [f"# Monitoring of {result['model_name']} v{result['version']}", "",
             f"**Retrain: {'yes' if result['retrain'] else 'no'}** ({result['rows']} served rows)", ""]
    lines += [f"- {reason}" for reason in result["reasons"]]
    if result["drift"]:
        lines += ["", "## Drift", "", "| feature | JS | L-inf | PSI | drifted |", "|---|---|---|---|---|"]
        for name, scores in sorted(result["drift"].items()):
            lines.append(f"| {name} | {_fmt(scores.get('js'))} | {_fmt(scores.get('linf'))} | "
                         f"{_fmt(scores.get('psi'))} | {'yes' if name in result['drifted_features'] else ''} |")
    if result["quality"]:
        lines += ["", "## Live quality", "", f"{result['labelled_rows']} labelled rows, match rate "
                  f"{result['label_match_rate']:.1%}", "", "| metric | live | at evaluation |", "|---|---|---|"]
        for name in sorted(result["quality"]):
            lines.append(f"| {name} | {_fmt(result['quality'][name])} | {_fmt(result['evaluation'].get(name))} |")
    op = result["operational"]
    lines += ["", "## Operations", "", f"- versions seen: {', '.join(op['versions_seen']) or 'none'}",
              f"- rows of other models or versions left out: {op['other_rows']}",
              f"- malformed lines skipped: {op['malformed_lines']}"]
    lines += [f"  - {example}" for example in op["malformed_examples"]]
    if result["business"]:
        lines += ["", "## Business metrics", ""] + [f"- {k}: {_fmt(v)}" for k, v in result["business"].items()]
    return "\n".join(lines) + "\n"
