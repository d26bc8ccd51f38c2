"""Anomalies as findings: the merged anomalies.pbtxt, the Markdown report and the error message."""

import dataclasses
from typing import Dict, List, Optional

DATASET = "(dataset)"
BASELINE = "train vs baseline"


@dataclasses.dataclass
class Finding:
    """One feature's anomaly in one split (or its drift against the baseline)."""

    split: str
    feature: str
    severity: str
    short_description: str
    description: str
    drift: bool = False


def _is_drift(reason) -> bool:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return anomalies_pb2.AnomalyInfo.Type.Name(reason.type).startswith("COMPARATOR_")


def _infos(anomalies):
    yield from sorted(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        yield DATASET, anomalies.dataset_anomaly_info


def _is_high(reason) -> bool:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    name = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
    return name.startswith("COMPARATOR_") and name.endswith("_HIGH")


def findings(anomalies, split: str, drift: bool = False) -> List[Finding]:
    """The findings of one Anomalies proto.

    With ``drift``, only distances above their threshold; otherwise everything but comparisons.
    """
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = []
    for feature, info in _infos(anomalies):
        reasons = [r for r in info.reason if (_is_high(r) if drift else not _is_drift(r))]
        if not reasons:
            continue
        found.append(Finding(
            split=split, feature=feature, severity=anomalies_pb2.AnomalyInfo.Severity.Name(info.severity),
            short_description="; ".join(r.short_description for r in reasons),
            description=" ".join(r.description.strip() for r in reasons), drift=drift))
    return found


def not_compared(drift_anomalies) -> List[str]:
    """Features the drift check could not compare (absent from the baseline or the current data)."""
    return [feature for feature, info in _infos(drift_anomalies)
            if any(_is_drift(r) and not _is_high(r) for r in info.reason)]


def merged_anomalies(schema, per_split: Dict[str, object], drift: Optional[object]):
    """One Anomalies proto for all splits: each reason's description starts with its split."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    merged = anomalies_pb2.Anomalies()
    merged.baseline.CopyFrom(schema)
    merged.anomaly_name_format = anomalies_pb2.Anomalies.SERIALIZED_PATH
    sources = [(split, anomalies, False) for split, anomalies in per_split.items()]
    if drift is not None:
        sources.append((BASELINE, drift, True))
        merged.drift_skew_info.extend(drift.drift_skew_info)
    for split, anomalies, is_drift in sources:
        for feature, info in _infos(anomalies):
            reasons = [r for r in info.reason if _is_drift(r) == is_drift]
            if not reasons:
                continue
            target = merged.dataset_anomaly_info if feature == DATASET else merged.anomaly_info[feature]
            if not target.reason:
                target.path.CopyFrom(info.path)
            target.severity = max(target.severity, info.severity)
            for reason in reasons:
                added = target.reason.add()
                added.CopyFrom(reason)
                added.description = f"{split}: {reason.description.strip()}"
            target.description = " ".join(r.description for r in target.reason)
            target.short_description = (target.reason[0].short_description if len(target.reason) == 1
                                        else "Multiple errors")
    return merged


def markdown(found: List[Finding], splits: List[str], schema_source: str,
             baseline: Optional[str], drift_threshold: float, uncompared: List[str]) -> str:
    """The Markdown report: one table row per finding, or "No anomalies"."""
    lines = ["# Data validation", "",
             f"Splits: {', '.join(splits)}. Schema: {schema_source}."]
    if baseline:
        lines.append(f"Drift of train against the baseline {baseline} (threshold {drift_threshold:g}).")
    if uncompared:
        lines.append(f"Not compared with the baseline (missing on one side): {', '.join(uncompared)}.")
    lines.append("")
    if not found:
        lines.append("No anomalies.")
        return "\n".join(lines) + "\n"
    lines += ["| split | feature | severity | short description | description |",
              "|---|---|---|---|---|"]
    for f in found:
        cells = [f.split, f.feature, f.severity + (" (drift)" if f.drift else ""),
                 f.short_description, f.description]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def blocking_message(blocking: List[Finding], report_path: str, schema_path: str) -> str:
    """One paragraph naming each feature that blocks, what is wrong, and in which split."""
    parts = [f"{f.split}: feature '{f.feature}': {f.short_description} ({f.description})"
             if f.feature != DATASET else f"{f.split}: {f.short_description} ({f.description})"
             for f in blocking]
    advice = (f"Fix the data, or if the change is intended, edit the schema {schema_path} and pass "
              "it as the user schema.")
    if any(f.drift for f in blocking):
        advice += (" For drift against the baseline: if the shift is expected, compare with a newer "
                   "baseline, raise drift_threshold or turn fail_on_drift off.")
    return (f"The data does not pass validation. {'; '.join(parts)}. See {report_path} for the "
            f"full report. {advice}")
