"""The self-contained HTML reports (validate's statistics view, a monitor-style page) in a real browser.

The pages are rendered by Debian's Chromium, headless, with the network off (browser_support): the
SVG charts and the tables must be in the rendered DOM, one per feature, the screenshot must show
them, and the page must request nothing.
"""

import csv
import html
import math
import pathlib
import re
from html.parser import HTMLParser

import browser_support
import pytest

from prodml.components.common import defaults, html_report, svg_charts, tfdv_stats

TESTDATA = pathlib.Path(__file__).parent / "testdata"
TAXI_SMALL = TESTDATA / "taxi_small.csv"
TRAIN_ROWS = 2000
NA_MARKERS = ["NA", "null", "N/A", ""]
ODD_COMPANY = '<b>Cab & "Co"</b><script>document.title="x"</script>'
BLUE, RED = svg_charts.PALETTE[0], svg_charts.PALETTE[1]


class Elements(HTMLParser):
    """Every start tag of a document with its attributes, to count what the browser built."""

    def __init__(self, text: str):
        super().__init__()
        self.found = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def having(self, tag: str, css_class: str = ""):
        return [a for t, a in self.found if t == tag and css_class in a.get("class", "").split()]


@pytest.fixture(scope="module")
def csv_with_na(tmp_path_factory):
    """taxi_small.csv with NA markers written into fare and company, a value made of HTML in company.

    Returns (path, {feature: [row indexes whose cell is an NA marker or blank]}).
    """
    with open(TAXI_SMALL, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    fare, company = header.index("fare"), header.index("company")
    for i, row in enumerate(body):
        if i % 9 == 0:
            row[fare] = NA_MARKERS[i % len(NA_MARKERS)]
        if i % 11 == 0:
            row[company] = NA_MARKERS[i % len(NA_MARKERS)]
        elif i % 13 == 0:
            row[company] = ODD_COMPANY
    path = tmp_path_factory.mktemp("na") / "taxi_na.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([header, *body])
    missing = {name: [i for i, row in enumerate(body) if row[c] in defaults.NA_VALUES]
               for c, name in enumerate(header)}
    return path, missing


@pytest.fixture(scope="module")
def frames(csv_with_na):
    import pandas as pd

    path, _ = csv_with_na
    frame = pd.read_csv(path, na_values=defaults.NA_VALUES, keep_default_na=False)
    return frame.iloc[:TRAIN_ROWS], frame.iloc[TRAIN_ROWS:]


@pytest.fixture(scope="module")
def statistics(frames):
    """Real TFDV statistics of the train and eval rows, and of a shifted "serving" window."""
    import tensorflow_data_validation as tfdv

    train, evaluation = frames
    serving = evaluation.copy()
    serving["fare"] = serving["fare"] * 3
    serving["company"] = serving["company"].where(serving.index % 2 == 0, "New Cab Co")
    return {name: tfdv.generate_statistics_from_dataframe(frame)
            for name, frame in (("train", train), ("eval", evaluation), ("serving", serving))}


def _kinds(frame):
    """{column: "numeric" | "categorical"} of a frame, by pandas' dtypes (independent of the renderer)."""
    return {c: tfdv_stats.NUMERIC if frame[c].dtype.kind in "if" else tfdv_stats.CATEGORICAL for c in frame.columns}


def _assert_painted(screenshot: str, colours=(BLUE, RED)):
    pixels = browser_support.png_pixels(screenshot)
    assert browser_support.non_white_fraction(pixels) > 0.03, f"{screenshot} is (nearly) blank"
    for colour in colours:
        assert browser_support.has_colour(pixels, colour), f"no {colour} bars in {screenshot}"


@pytest.mark.slow
def test_statistics_view_renders_offline_with_a_chart_and_rows_per_feature(statistics, frames, csv_with_na,
                                                                           tmp_path):
    train, evaluation = frames
    page = html_report.statistics_page({"train": statistics["train"], "eval": statistics["eval"]},
                                       "Statistics: train vs eval")
    path = tmp_path / "statistics.html"
    path.write_text(page, encoding="utf-8")
    rendered = browser_support.render_page(str(path))

    dom = Elements(rendered.dom)
    kinds = _kinds(train)
    numeric = sorted(c for c, k in kinds.items() if k == tfdv_stats.NUMERIC)
    categorical = sorted(c for c, k in kinds.items() if k == tfdv_stats.CATEGORICAL)
    empty = sorted(c for c in kinds if train[c].isna().all() and evaluation[c].isna().all())
    assert empty == ["pickup_census_tract"]  # blank in every row: a note instead of a chart
    assert sorted(a["data-feature"] for a in dom.having("figure", "feature")) == sorted(kinds)
    assert sorted(a["data-feature"] for a in dom.having("svg", "histogram")) == [c for c in numeric if c not in empty]
    assert sorted(a["data-feature"] for a in dom.having("svg", "top-values")) == categorical
    # a column of bars per bin and dataset; a bar per shown value and dataset
    assert len(dom.having("rect", "bar")) >= 2 * (len(numeric) + len(categorical))
    # summary tables: one row per feature and dataset (plus the overview)
    rows = re.findall(r"<tr[^>]*><td>([^<]*)</td><td>(train|eval)</td>", rendered.dom)
    assert sorted(rows) == sorted((html.escape(c, quote=False), d) for c in kinds for d in ("train", "eval"))

    # NA markers and blanks are missing values: fare stays numeric and shows its missing share
    _, missing = csv_with_na
    fare_missing = sum(1 for i in missing["fare"] if i < TRAIN_ROWS) / TRAIN_ROWS
    assert "fare" in numeric and fare_missing > 0.1
    fare_row = re.search(r'<tr class="highlight"><td>fare</td><td>train</td><td class="num">(\d+)</td>'
                         r"<td>([\d.]+)%</td>", rendered.dom)
    assert int(fare_row.group(1)) == TRAIN_ROWS - round(fare_missing * TRAIN_ROWS)
    assert fare_row.group(2) == f"{fare_missing * 100:.1f}"

    # a company name made of HTML stays text: no <b> or <script> element, and the title is unchanged
    assert not dom.having("b") and not dom.having("script")
    assert "&lt;b&gt;Cab &amp; \"Co\"&lt;/b&gt;" in rendered.dom
    assert "<title>Statistics: train vs eval</title>" in rendered.dom
    assert rendered.requests == []
    _assert_painted(rendered.screenshot)


@pytest.mark.slow
def test_monitor_style_page_shows_serving_against_training(statistics, tmp_path):
    drifted = ["company", "fare"]
    scores = [["company", "L-infinity", 0.5], ["fare", "Jensen-Shannon", 0.4], ["trip_miles", "Jensen-Shannon", 0.01]]
    days = ["2026-11-27", "2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01"]
    page = html_report.page("Monitoring: chicago-taxi v1", [
        html_report.section("Drift of every feature",
                            html_report.table(["Feature", "Measure", "Score"], scores, {0, 1}),
                            html_report.paragraph("Served <traffic> against training.")),
        html_report.section("Drifted features", html_report.distribution_charts(
            {"serving": statistics["serving"], "training": statistics["train"]}, drifted)),
        html_report.section("Live quality", html_report.line_chart(
            "AUC per day", days, {"live": [0.81, 0.79, None, 0.71, 0.70], "evaluation": [0.82] * 5})),
    ])
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    rendered = browser_support.render_page(str(path))

    dom = Elements(rendered.dom)
    assert [a["data-feature"] for a in dom.having("figure", "feature")] == drifted
    assert [a["data-feature"] for a in dom.having("svg", "histogram")] == ["fare"]
    assert [a["data-feature"] for a in dom.having("svg", "top-values")] == ["company"]
    assert len(dom.having("tr", "highlight")) == 2
    assert "Served &lt;traffic&gt; against training." in rendered.dom
    [line] = dom.having("svg", "line-chart")
    assert line["aria-label"] == "AUC per day"
    # the missing day splits the live line in two; evaluation is one line; a point per known value
    assert len(dom.having("polyline", "line")) == 3 and len(dom.having("circle", "point")) == 9
    # the legend names both datasets in each drift chart, serving first
    legends = re.findall(r'<g class="legend">(.*?)</g>', rendered.dom)
    assert all(re.findall(r"<text[^>]*>([^<]*)</text>", g) == ["serving", "training"] for g in legends[:2])
    assert rendered.requests == []
    _assert_painted(rendered.screenshot)


@pytest.mark.slow
def test_pages_reference_nothing_outside_themselves(statistics):
    pages = [html_report.statistics_page({"train": statistics["train"]}, "t"),
             html_report.page("m", [html_report.distribution_charts({"a": statistics["serving"]}),
                                    html_report.line_chart("x", ["1", "2"], {"s": [1.0, 2.0]})])]
    for page in pages:
        assert not re.search(r"https?:|//[a-z]|<script|<link|<img|<iframe|\b(src|href)\s*=|url\(|@import", page)
        assert "default-src 'none'" in page  # the browser itself refuses any fetch


@pytest.mark.slow
def test_browser_sees_requests_and_blank_pages_so_the_checks_above_can_fail(tmp_path):
    """A page with a CDN script and a remote image: both requests show, and they fail (network off)."""
    page = tmp_path / "remote.html"
    page.write_text('<!DOCTYPE html><html><body><p id="here">still renders</p>'
                    '<img src="http://example.com/pixel.png"><script src="https://cdn.example.org/facets.js">'
                    "</script></body></html>", encoding="utf-8")
    rendered = browser_support.render_page(str(page))
    assert rendered.requests == ["http://example.com/pixel.png", "https://cdn.example.org/facets.js"]
    assert 'id="here"' in rendered.dom
    pixels = browser_support.png_pixels(rendered.screenshot)
    assert browser_support.non_white_fraction(pixels) < 0.01
    assert not browser_support.has_colour(pixels, BLUE)


@pytest.mark.slow
def test_validate_writes_the_view_the_browser_renders(validated, artifacts):
    """validate's real output (taxi_small through ingest and validate) in the browser."""
    from prodml.components.common import schemas

    _, schema_dir = validated
    features = sorted(f.name for f in schemas.load_schema(str(schema_dir)).feature)
    dom, screenshot = browser_support.render(str(artifacts / "statistics.html"))
    charts = Elements(dom).having("svg", "chart")
    assert sorted(a["data-feature"] for a in charts) == features
    _assert_painted(screenshot)


@pytest.mark.slow
def test_png_decoder_agrees_with_tensorflow(tmp_path):
    import numpy as np
    import tensorflow as tf

    path = tmp_path / "page.html"
    path.write_text(html_report.page("colours", [html_report.line_chart("x", ["a", "b", "c"],
                                                                        {"s": [1.0, 3.0, 2.0]})]))
    _, screenshot = browser_support.render(str(path))
    with open(screenshot, "rb") as f:
        expected = tf.io.decode_png(f.read()).numpy()
    assert np.array_equal(browser_support.png_pixels(screenshot), expected)


@pytest.mark.slow
def test_output_is_deterministic(statistics):
    first = html_report.statistics_page({"train": statistics["train"], "eval": statistics["eval"]}, "t")
    again = html_report.statistics_page({"train": statistics["train"], "eval": statistics["eval"]}, "t")
    assert first == again


def test_rebinning_keeps_every_value_and_puts_a_repeated_value_in_its_bin():
    edges = tfdv_stats.common_edges([[(0.0, 10.0, 100.0)], [(5.0, 20.0, 30.0), (20.0, 20.0, 10.0)]], bins=4)
    assert edges == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert tfdv_stats.rebin([(0.0, 10.0, 100.0)], edges) == [50.0, 50.0, 0.0, 0.0]
    assert tfdv_stats.rebin([(5.0, 20.0, 30.0), (20.0, 20.0, 10.0)], edges) == [0.0, 10.0, 10.0, 20.0]
    assert tfdv_stats.rebin([(-math.inf, 0.0, 3.0), (7.0, 7.0, 2.0)], edges) == [3.0, 2.0, 0.0, 0.0]
    assert tfdv_stats.common_edges([[(4.0, 4.0, 9.0)]]) == [4.0, 4.0]
    assert tfdv_stats.rebin([(4.0, 4.0, 9.0)], [4.0, 4.0]) == [9.0]


def test_a_long_tail_gets_a_bin_of_its_own_and_labels_stay_distinct():
    # deciles 10..20 in both datasets, a maximum of 1000: ten bins up to 25, then one bin for the tail
    edges = tfdv_stats.common_edges([[(0.0, 10.0, 1.0), (20.0, 1000.0, 1.0)]], bins=10, deciles=[(10.0, 20.0)])
    assert edges[:2] == [0.0, 2.5] and edges[-2:] == [25.0, 1000.0] and len(edges) == 12
    assert "the last bin holds every value above 25" in html_report._tail_note(edges)
    assert tfdv_stats.common_edges([[(0.0, 30.0, 1.0)]], bins=3, deciles=[(10.0, 20.0)]) == [0.0, 10.0, 20.0, 30.0]
    assert svg_charts.distinct_labels([41.91, 41.92, 41.93]) == ["41.91", "41.92", "41.93"]


@pytest.mark.slow
def test_top_values_compare_shares_and_sum_the_rest(statistics, frames):
    values, series = tfdv_stats.top_values({"serving": statistics["serving"], "train": statistics["train"]},
                                           "company", limit=3)
    assert values[0] == "New Cab Co" and values[-1] == tfdv_stats.OTHER_VALUES and len(values) == 4
    _, evaluation = frames
    served = evaluation["company"].where(evaluation.index % 2 == 0, "New Cab Co")
    assert series["train"][0] == 0.0
    assert series["serving"][0] == pytest.approx((served == "New Cab Co").sum() / served.notna().sum())
    for shares in series.values():
        assert sum(shares) == pytest.approx(1.0)
