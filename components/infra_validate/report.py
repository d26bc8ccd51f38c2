"""The infra blessing as Markdown, for the KFP UI."""

from typing import Any, Dict

from prodml.components.infra_validate.checks import PROTOCOLS


def render_markdown(result: Dict[str, Any]) -> str:
    """Renders run_infra_validate's result: the decision, each check, and the figures against the bounds."""
    verdict = "**Infra-blessed**" if result["blessed"] else "**Not infra-blessed**"
    lines = [f"# Infra validation: {verdict}", "",
             "The candidate was served by the prodml predictor (a KServe ModelServer) in the serving "
             "environment, on this machine (requests over loopback).", ""]
    lines += [f"- {'✔' if ok else '✘'} {reason}" for ok, reason in zip(result["passed"], result["reasons"])]
    figures, bounds = result["figures"], result["bounds"]
    rows = [("ready (start to ready)", _s(figures.get("ready_seconds")), f"≤ {bounds['max_load_seconds']:g} s"),
            ("model load", _s(figures.get("load_seconds")), ""),
            ("warm-up", _s(figures.get("warm_up_seconds")), ""),
            (f"p50 latency at concurrency {figures.get('concurrency')}", _ms(figures.get("p50_ms")), ""),
            (f"p99 latency at concurrency {figures.get('concurrency')}", _ms(figures.get("p99_ms")),
             f"≤ {bounds['max_p99_ms']:g} ms")]
    for protocol, name in PROTOCOLS.items():
        gap = figures.get("max_difference", {}).get(protocol)
        rows.append((f"{name}: largest prediction difference", "" if gap is None else f"{gap:.3g}",
                     f"≤ {bounds['max_difference']:g}"))
    lines += ["", "| figure | value | bound |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {bound} |" for name, value, bound in rows]
    lines += ["", f"Rows: {figures.get('rows')} ({figures.get('eval_rows')} eval examples, "
                  f"{figures.get('missing_rows')} with missing values)."]
    if not result["blessed"] and result.get("server_log"):
        lines += ["", "Last lines of the predictor's log:", "", "```", result["server_log"][-1500:].strip(), "```"]
    return "\n".join(lines) + "\n"


def _s(value) -> str:
    return "" if value is None else f"{value:.2f} s"


def _ms(value) -> str:
    return "" if value is None else f"{value:.1f} ms"
