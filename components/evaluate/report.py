"""The evaluation as Markdown, for the KFP UI and the notebooks."""

from typing import Any, Dict


def render_markdown(result: Dict[str, Any]) -> str:
    """Renders run_evaluate's result: the decision, overall metrics and metrics per slice."""
    verdict = "**Blessed**" if result["blessed"] else "**Not blessed**"
    lines = [f"# Evaluation: {verdict}", ""]
    lines += [f"- {reason}" for reason in result.get("reasons", [])]
    lines += ["", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in sorted(result["metrics"].items())]
    for feature, slices in (result.get("slices") or {}).items():
        names = sorted({m for metrics in slices.values() for m in metrics})
        lines += ["", f"## Metrics by `{feature}`", "",
                  "| value | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for value, metrics in slices.items():
            lines.append(f"| {value} | " + " | ".join(_fmt(metrics.get(n)) for n in names) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)
