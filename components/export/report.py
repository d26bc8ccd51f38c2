"""The export as Markdown, for the KFP UI and the run log."""

from typing import Any, Dict


def render_markdown(result: Dict[str, Any]) -> str:
    """One table row per requested format: written or not, size, parity, per-row latency, reason."""
    formats = result["formats"]
    if not formats:
        return "# Edge export\n\nNo edge format was requested (`export_formats` is empty).\n"
    lines = ["# Edge export", "",
             f"Raw features in, the embedded transform included; parity is the largest absolute difference "
             f"from the SavedModel's `serving_default` on the eval rows (bound {result['tolerance']:g}); latency "
             "is the median of one-row calls, measured side by side with the SavedModel.", "",
             "| format | written | size | largest difference | p50 per row | SavedModel p50 | reason |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in sorted(formats.items()):
        lines.append(f"| {name} | {'yes' if entry['written'] else 'no'} | {_size(entry.get('size_bytes'))} | "
                     f"{_number(entry.get('max_difference'))} | {_ms(entry.get('p50_ms'))} | "
                     f"{_ms(entry.get('saved_model_p50_ms'))} | {entry['reason']} |")
    return "\n".join(lines) + "\n"


def _size(value) -> str:
    return "" if value is None else f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.1f} kB"


def _number(value) -> str:
    return "" if value is None else f"{value:.2g}"


def _ms(value) -> str:
    return "" if value is None else f"{value:.2f} ms"
