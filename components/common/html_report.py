"""Self-contained HTML reports: pages, sections, tables and inline SVG charts of TFDV statistics.

Used by validate's statistics view and by the monitor's report. A page loads nothing: the CSS is
inline, the charts are SVG computed here, there is no script, and a Content-Security-Policy
forbids any fetch, so it renders the same behind a proxy, offline, or in the Kubeflow UI's
sandboxed frame. Text from data (feature names, values, dataset names) is always escaped; the
output is deterministic (no timestamps, features sorted by name).

Builders return HTML fragments (str). ``section`` and ``page`` take fragments as they are, so
pass free text through ``paragraph`` (or ``escape``) first.
"""

import numbers
from typing import Dict, Iterable, List, Optional, Sequence

from prodml.components.common import svg_charts, tfdv_stats
from prodml.components.common.svg_charts import esc, number, percent

# default-src 'none' blocks every fetch (scripts, styles, fonts, images, frames); inline styles and
# data: images are the only things allowed.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CSS = """
body{font:14px/1.45 sans-serif;color:#222;margin:24px;max-width:1400px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 6px}p{margin:6px 0}
.table-wrap{overflow-x:auto}
table.data{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
table.data th,table.data td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
table.data th{background:#f3f5f7}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data tr.highlight td{background:#fdecea}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(500px,1fr));gap:12px}
figure.feature{margin:0;border:1px solid #e3e3e3;padding:8px;break-inside:avoid}
figure.feature figcaption{font-weight:bold;margin-bottom:4px;overflow-wrap:anywhere}
figure.feature p.note{color:#666}
figure.line{margin:8px 0}figure.line figcaption{font-weight:bold}
svg.chart{display:block;max-width:100%;height:auto}
""".strip()


def escape(text) -> str:
    """``text`` escaped for HTML."""
    return esc(text)


def paragraph(text: str) -> str:
    """A paragraph of plain (escaped) text."""
    return f"<p>{esc(text)}</p>"


def page(title: str, sections: List[str]) -> str:
    """A whole HTML document: ``title`` as its title and heading, then the ``sections`` (fragments)."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{esc(title)}</title>\n<style>\n{CSS}\n</style></head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n" + "\n".join(sections) + "\n</body></html>\n")


def section(title: str, *parts: str) -> str:
    """A ``<section>`` with an escaped ``<h2>`` title and the given fragments."""
    return f"<section>\n<h2>{esc(title)}</h2>\n" + "\n".join(parts) + "\n</section>"


HIGHLIGHT = ' class="highlight"'


def _cell(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy numbers too
        return f'<td class="num">{esc(number(value))}</td>'
    return f"<td>{esc('' if value is None else value)}</td>"


def table(header: List[str], rows: List[list], highlight_rows: Iterable[int] = ()) -> str:
    """A table of escaped cells; numbers are right-aligned, rows whose index is in ``highlight_rows`` shaded."""
    marked = set(highlight_rows)
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join(f"<tr{HIGHLIGHT if i in marked else ''}>{''.join(_cell(v) for v in row)}</tr>"
                     for i, row in enumerate(rows))
    return (f'<div class="table-wrap"><table class="data">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></div>")


def _figure(name: str, body: str) -> str:
    return f'<figure class="feature" data-feature="{esc(name)}"><figcaption>{esc(name)}</figcaption>{body}</figure>'


def feature_chart(datasets: Dict[str, object], name: str) -> str:
    """One feature's chart in a ``<figure>``: a histogram if numeric, top values if categorical."""
    found = {label: tfdv_stats.features(stats).get(name) for label, stats in datasets.items()}
    present = [f for f in found.values() if f is not None]
    if not present:
        return _figure(name, f'<p class="note">No dataset has statistics for {esc(name)}.</p>')
    kind = tfdv_stats.kind(present[0])
    absent = [label for label, f in found.items() if f is None]
    note = f'<p class="note">Not in {esc(", ".join(absent))}.</p>' if absent else ""
    if kind == tfdv_stats.NUMERIC:
        edges, series = tfdv_stats.histograms(datasets, name)
        if not edges:
            return _figure(name, f'<p class="note">No numeric values.</p>{note}')
        chart = svg_charts.columns(f"Distribution of {name}", edges, series, feature=name)
        note += _tail_note(edges)
    elif kind == tfdv_stats.CATEGORICAL:
        labels, series = tfdv_stats.top_values(datasets, name)
        if not labels:
            return _figure(name, f'<p class="note">No values.</p>{note}')
        chart = svg_charts.bars(f"Top values of {name}", labels, series, feature=name)
    else:
        return _figure(name, f'<p class="note">No chart for this feature type (bytes or struct).</p>{note}')
    return _figure(name, chart + note)


def _tail_note(edges: List[float]) -> str:
    """Says which outer bins are wider than the others (they hold a long tail; tfdv_stats.common_edges)."""
    if len(edges) < 4:
        return ""
    width = edges[2] - edges[1]
    said = []
    labels = svg_charts.distinct_labels(edges)
    if edges[1] - edges[0] > width * 1.001:
        said.append(f"the first bin holds every value below {labels[1]}")
    if edges[-1] - edges[-2] > width * 1.001:
        said.append(f"the last bin holds every value above {labels[-2]}")
    return f'<p class="note">Long tail: {esc(" and ".join(said))}.</p>' if said else ""


def distribution_charts(stats: Dict[str, object], features: Optional[Sequence[str]] = None) -> str:
    """Inline SVG charts of ``features`` (all, sorted, if None), one series per named dataset.

    Args:
        stats: ``{dataset name: DatasetFeatureStatistics or DatasetFeatureStatisticsList}``, e.g.
            ``{"serving": s, "training": t}``; the first is drawn in the first colour.
        features: the features to draw, in this order.
    """
    names = list(features) if features is not None else list(tfdv_stats.kinds(stats))
    return '<div class="charts">\n' + "\n".join(feature_chart(stats, n) for n in names) + "\n</div>"


def line_chart(title: str, x: List[str], series: Dict[str, List[float]]) -> str:
    """An SVG line chart of ``series`` over the labels ``x`` (e.g. live AUC per day); None leaves a gap."""
    return (f'<figure class="line"><figcaption>{esc(title)}</figcaption>'
            f"{svg_charts.lines(title, [str(v) for v in x], series)}</figure>")


NUMERIC_HEADER = ["Feature", "Dataset", "Count", "Missing", "Mean", "Std dev", "Zeros", "Min", "Median", "Max"]
CATEGORICAL_HEADER = ["Feature", "Dataset", "Count", "Missing", "Unique", "Top value", "Top share", "Avg length"]
OTHER_HEADER = ["Feature", "Dataset", "Count", "Missing"]


def _summary_row(name: str, label: str, s) -> list:
    if s.kind == tfdv_stats.NUMERIC:
        return [name, label, s.count, percent(s.missing), s.mean, s.std, percent(s.zeros), s.min, s.median, s.max]
    if s.kind == tfdv_stats.CATEGORICAL:
        return [name, label, s.count, percent(s.missing), s.unique, s.top_value, percent(s.top_fraction),
                s.avg_length]
    return [name, label, s.count, percent(s.missing)]


def summary_table(datasets: Dict[str, object], kind: str, features: Optional[Sequence[str]] = None) -> str:
    """One row per feature of ``kind`` (tfdv_stats.NUMERIC, CATEGORICAL or OTHER) and dataset.

    Rows of features with missing values are highlighted.
    """
    kinds = tfdv_stats.kinds(datasets)
    names = [n for n in (features if features is not None else kinds) if kinds.get(n) == kind]
    rows, marked = [], set()
    for name in names:
        for label, stats in datasets.items():
            s = tfdv_stats.summary(stats, name)
            if s is None:
                continue
            if s.missing:
                marked.add(len(rows))
            rows.append(_summary_row(name, label, s))
    header = {tfdv_stats.NUMERIC: NUMERIC_HEADER, tfdv_stats.CATEGORICAL: CATEGORICAL_HEADER}.get(kind, OTHER_HEADER)
    return table(header, rows, marked)


def statistics_page(datasets: Dict[str, object], title: str) -> str:
    """A whole page showing TFDV statistics of several datasets side by side (validate's view).

    Args:
        datasets: ``{name: DatasetFeatureStatistics or DatasetFeatureStatisticsList}``, e.g.
            ``{"train": ..., "eval": ...}``.
        title: the page's title.

    The page has an overview of the datasets, then per kind of feature a summary table and one
    chart per feature (histograms on bins shared by every dataset, or the top values).
    """
    kinds = tfdv_stats.kinds(datasets)
    overview = [[label, tfdv_stats.dataset(stats).num_examples, len(tfdv_stats.features(stats))]
                for label, stats in datasets.items()]
    sections = [section("Datasets", table(["Dataset", "Examples", "Features"], overview),
                        paragraph("Shares are of each dataset's own values, so datasets of different sizes "
                                  "compare. Rows of features with missing values are highlighted. Hover a bar "
                                  "for its exact figure."))]
    titles = {tfdv_stats.NUMERIC: "Numeric features", tfdv_stats.CATEGORICAL: "Categorical features",
              tfdv_stats.OTHER: "Other features"}
    for kind, heading in titles.items():
        names = [n for n, k in kinds.items() if k == kind]
        if not names:
            continue
        parts = [summary_table(datasets, kind, names)]
        if kind != tfdv_stats.OTHER:
            parts.append(distribution_charts(datasets, names))
        sections.append(section(f"{heading} ({len(names)})", *parts))
    if not kinds:
        sections.append(section("Features", paragraph("The statistics have no features.")))
    return page(title, sections)
