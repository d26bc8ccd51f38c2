"""manifests/monitoring/: the predictor's alerting rules and Grafana dashboard, checked with promtool.

The PrometheusRule's groups are checked by ``promtool check rules`` and exercised by ``promtool test
rules``: synthetic series (``input_series``) show that every alert fires when it should, not before
its ``for`` duration and not on healthy, slow-but-fine or otherwise unrelated traffic. Every metric and
label the rules and the dashboard query must be one the predictor exports (read from
serving/metrics.py), so renaming a metric there fails here. The dashboard's queries go through
promtool's PromQL parser too (as recording rules, Grafana's variables replaced).
"""

import ast
import hashlib
import json
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parent.parent
MONITORING = REPO / "manifests" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
DASHBOARD_FILE = MONITORING / "grafana-dashboard-prodml-predictor.json"
METRICS_SOURCE = REPO / "serving" / "metrics.py"
RULE_CRD = REPO / "manifests" / "crds" / "monitoring.coreos.com_prometheusrules.yaml"
# Labels a Kubernetes scrape adds to every target (not exported by the predictor itself).
TARGET_LABELS = {"namespace"}
# Grafana's variables, as a query sees them once Grafana substituted them.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*", "$model_name": ".*"}

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package 'prometheus'; .ci/run installs it)")


def rule_manifest() -> dict:
    return yaml.safe_load(RULE_FILE.read_text())


def alerts() -> list:
    return [r for g in rule_manifest()["spec"]["groups"] for r in g["rules"] if "alert" in r]


def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def dashboard_queries() -> list:
    """(panel title, PromQL) of every panel target, Grafana's variables substituted."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((panel["title"], expr))
    return out


def promtool(*args: str, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# --- what the predictor exports -----------------------------------------------------------------


def exported_series() -> dict:
    """Series name -> label names, for every metric serving/metrics.py declares (read from its source).

    A Counter ``x_total`` is exposed as ``x_total``; a Histogram ``x`` as ``x_bucket`` (plus the
    ``le`` label), ``x_count`` and ``x_sum`` (prometheus_client's exposition).
    """
    series = {}
    for node in ast.walk(ast.parse(METRICS_SOURCE.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("Counter", "Histogram", "Gauge"):
            name = node.args[0].value
            labels = set(ast.literal_eval(node.args[2])) if len(node.args) > 2 else set()
            if node.func.id == "Histogram":
                series[f"{name}_bucket"] = labels | {"le"}
                series[f"{name}_count"] = labels
                series[f"{name}_sum"] = labels
            elif node.func.id == "Counter":
                series[name if name.endswith("_total") else f"{name}_total"] = labels
            else:
                series[name] = labels
    return series


_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_MATCHERS = re.compile(r"\{([^}]*)\}")
_FUNCTIONS_AND_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def metrics_and_labels(expr: str) -> tuple:
    """The metric names and the label names a PromQL expression uses.

    A small tokenizer, enough for our queries: grouping clauses and matchers give the labels;
    what is left, minus numbers, durations, functions (a name before "(") and keywords, are metrics.
    """
    labels = set()
    for _, names in _GROUPING.findall(expr):
        labels |= {n.strip() for n in names.split(",") if n.strip()}
    for matchers in _MATCHERS.findall(expr):
        labels |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    bare = _GROUPING.sub(" ", _MATCHERS.sub(" ", re.sub(r'"[^"]*"', '""', expr)))
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    metrics = {m.group(1) for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", bare)
               if not m.group(2) and m.group(1).lower() not in _FUNCTIONS_AND_KEYWORDS}
    return metrics, labels


def unknown_names(expr: str) -> list:
    """The metrics and labels of ``expr`` the predictor does not export (empty: all known)."""
    series = exported_series()
    metrics, labels = metrics_and_labels(expr)
    problems = [f"metric {m}" for m in sorted(metrics) if m not in series]
    known_labels = set().union(*(series.get(m, set()) for m in metrics)) | TARGET_LABELS
    return problems + [f"label {name}" for name in sorted(labels - known_labels)]


def test_exported_series_are_read_from_the_predictor_source():
    series = exported_series()
    assert series["prodml_requests_total"] == {"model_name", "protocol", "outcome"}
    assert series["prodml_request_latency_seconds_bucket"] == {"model_name", "protocol", "le"}
    assert series["prodml_request_log_dropped_total"] == {"model_name"}
    assert series["prodml_predictions_total"] == {"model_name", "model_version"}


def test_name_check_catches_renamed_metrics_and_labels():
    assert unknown_names('sum by (model_name, le) (rate(prodml_request_latency_seconds_bucket[5m])) > 0.1') == []
    assert unknown_names('rate(prodml_request_total{outcome="error"}[5m])') == [
        "metric prodml_request_total", "label outcome"]
    assert unknown_names('sum by (model) (rate(prodml_requests_total{status="500"}[5m]))') == [
        "label model", "label status"]
    assert unknown_names('histogram_quantile(0.99, sum by (le) (rate(prodml_requests_total[5m])))') == ["label le"]


@pytest.mark.parametrize("alert", alerts(), ids=lambda a: a["alert"])
def test_alert_queries_only_exported_metrics_and_labels(alert):
    assert unknown_names(alert["expr"]) == [], alert["alert"]


def test_dashboard_queries_only_exported_metrics_and_labels():
    for title, expr in dashboard_queries():
        assert unknown_names(expr) == [], title
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"]).groups()
            assert unknown_names(metric) == [] and label in exported_series()[metric.split("{")[0]] | TARGET_LABELS


# --- the PrometheusRule -------------------------------------------------------------------------


def test_prometheusrule_has_the_four_kinds_of_alert_with_severity_and_runbook():
    manifest = rule_manifest()
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1" and manifest["kind"] == "PrometheusRule"
    names = [a["alert"] for a in alerts()]
    assert len(names) == len(set(names))
    metrics_used = {m for a in alerts() for m in metrics_and_labels(a["expr"])[0]}
    # error rate, p99 latency, request-log drops, no traffic
    assert {"prodml_requests_total", "prodml_request_latency_seconds_bucket",
            "prodml_request_log_dropped_total", "prodml_request_latency_seconds_count"} <= metrics_used
    for alert in alerts():
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), alert["alert"]
        # Templates name only labels the expression keeps (an aggregation drops the others).
        kept = set(re.search(r"by \(([^)]*)\)", alert["expr"]).group(1).replace(" ", "").split(","))
        for text in alert["annotations"].values():
            assert set(re.findall(r"\$labels\.(\w+)", text)) <= kept, alert["alert"]


def strict(schema: dict) -> dict:
    """A CRD structural schema as JSON Schema that rejects unknown fields, as the API server's field validation does."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if "properties" in schema:
        out["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = strict(schema[key])
    return out


def crd_errors(manifest: dict) -> list:
    jsonschema = pytest.importorskip("jsonschema")
    [version] = [v for v in yaml.safe_load(RULE_CRD.read_text())["spec"]["versions"] if v["name"] == "v1"]
    validator = jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_vendored_prometheusrule_crd_is_the_recorded_upstream_file():
    digest = hashlib.sha256(RULE_CRD.read_bytes()).hexdigest()
    assert digest in (RULE_CRD.parent / "README.md").read_text(), \
        f"{RULE_CRD.name} changed since it was vendored: update manifests/crds/README.md"


def test_prometheusrule_validates_against_the_operator_crd():
    assert crd_errors(rule_manifest()) == []
    typo = rule_manifest()
    typo["spec"]["groups"][0]["rules"][0]["for_"] = typo["spec"]["groups"][0]["rules"][0].pop("for")
    typo["spec"]["groups"][0]["rules"][1]["for"] = "15 minutes"
    assert [e.split(":")[0] for e in crd_errors(typo)] == ["spec/groups/0/rules/0", "spec/groups/0/rules/1/for"]


@needs_promtool
def test_promtool_checks_the_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule_manifest()["spec"]))
    result = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


@needs_promtool
def test_promtool_rejects_a_broken_rule(tmp_path):
    spec = rule_manifest()["spec"]
    spec["groups"][0]["rules"][0]["expr"] = "sum by (model_name) (rate(prodml_requests_total[5m]) > "
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec))
    result = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode != 0 and "FAILED" in result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path):
    records = [{"record": f"dashboard:query_{i}", "expr": expr} for i, (_, expr) in enumerate(dashboard_queries())]
    rules = tmp_path / "dashboard.yaml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = promtool("check", "rules", str(rules), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- promtool test rules: each alert fires when it should and not otherwise -----------------------

NS = {"namespace": "prodml"}


def series(metric: str, values: str, **labels) -> dict:
    selector = ", ".join(f'{k}="{v}"' for k, v in {**NS, **labels}.items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


def firing(severity: str, *models: str) -> list:
    return [{"exp_labels": {**NS, "model_name": m, "severity": severity}} for m in models]


def latency(model: str, per_minute: dict) -> list:
    """Cumulative bucket series of a model that gets ``per_minute`` requests per bucket bound, every minute."""
    out, total = [], 0
    for le, count in per_minute.items():
        total += count
        out.append(series("prodml_request_latency_seconds_bucket", f"0+{total}x60", model_name=model,
                          protocol="v2", le=le))
    out.append(series("prodml_request_latency_seconds_count", f"0+{total}x60", model_name=model, protocol="v2"))
    return out


# Every case: (input series, [(minute, alert, [expected firing alerts])]).
ERROR_RATE = (
    [series("prodml_requests_total", "0+100x60", model_name="broken", protocol="v2", outcome="ok"),
     series("prodml_requests_total", "0+10x60", model_name="broken", protocol="v2", outcome="error"),   # 9%
     series("prodml_requests_total", "0+100x60", model_name="flaky", protocol="v1", outcome="ok"),
     series("prodml_requests_total", "0+3x60", model_name="flaky", protocol="v1", outcome="not_ready"),  # 2.9%
     series("prodml_requests_total", "0+100x60", model_name="healthy", protocol="grpc", outcome="ok"),
     series("prodml_requests_total", "0+0.5x60", model_name="healthy", protocol="grpc", outcome="error"),  # 0.5%
     # Clients sending bad input (400) are not the server failing.
     series("prodml_requests_total", "0+100x60", model_name="bad-clients", protocol="v2", outcome="ok"),
     series("prodml_requests_total", "0+50x60", model_name="bad-clients", protocol="v2", outcome="invalid")],
    [(3, "ProdmlPredictorErrorRateCritical", []),  # pending: not yet 5 minutes
     (10, "ProdmlPredictorErrorRateCritical", firing("critical", "broken")),
     (10, "ProdmlPredictorErrorRateHigh", []),  # pending: not yet 15 minutes
     (20, "ProdmlPredictorErrorRateHigh", firing("warning", "broken", "flaky"))],
)
LATENCY = (
    # p99 of 100 requests a minute: "fast" ~5 ms; "slow" 0.3 s (2 in (0.1, 0.5]); "stalled" 2.2 s (5 over 1 s).
    latency("fast", {"0.005": 100, "0.1": 0, "0.5": 0, "1": 0, "2.5": 0, "+Inf": 0})
    + latency("slow", {"0.005": 98, "0.1": 0, "0.5": 2, "1": 0, "2.5": 0, "+Inf": 0})
    + latency("stalled", {"0.005": 95, "0.1": 0, "0.5": 0, "1": 0, "2.5": 5, "+Inf": 0}),
    [(4, "ProdmlPredictorLatencyP99Critical", []),
     (9, "ProdmlPredictorLatencyP99High", []),
     (15, "ProdmlPredictorLatencyP99Critical", firing("critical", "stalled")),
     (15, "ProdmlPredictorLatencyP99High", firing("warning", "slow", "stalled"))],
)
LOG_DROPS = (
    [series("prodml_request_log_dropped_total", "0x10 5x50", model_name="lossy"),  # 5 batches lost at minute 11
     series("prodml_request_log_dropped_total", "0x60", model_name="lossless")],
    [(8, "ProdmlRequestLogDropping", []),
     (13, "ProdmlRequestLogDropping", firing("warning", "lossy")),
     (30, "ProdmlRequestLogDropping", [])],  # nothing lost in the last 10 minutes
)
NO_TRAFFIC = (
    [series("prodml_request_latency_seconds_count", "0x80", model_name="idle", protocol="v2"),  # never a request
     series("prodml_request_latency_seconds_count", "0+100x20 2000x60", model_name="stopped", protocol="v2"),
     series("prodml_requests_total", "0+100x20 2000x60", model_name="stopped", protocol="v2", outcome="ok"),
     series("prodml_request_latency_seconds_count", "0+100x80", model_name="busy", protocol="v2"),
     series("prodml_requests_total", "0+100x80", model_name="busy", protocol="v2", outcome="ok"),
     # Every request fails: that is traffic (the error-rate alerts cover it), not silence.
     series("prodml_request_latency_seconds_count", "0x80", model_name="failing", protocol="v2"),
     series("prodml_requests_total", "0+10x80", model_name="failing", protocol="v2", outcome="error")],
    [(10, "ProdmlPredictorNoTraffic", []),
     (20, "ProdmlPredictorNoTraffic", firing("warning", "idle")),
     (40, "ProdmlPredictorNoTraffic", firing("warning", "idle")),  # "stopped" is pending
     (55, "ProdmlPredictorNoTraffic", firing("warning", "idle", "stopped"))],
)
CASES = {"error rate": ERROR_RATE, "latency": LATENCY, "log drops": LOG_DROPS, "no traffic": NO_TRAFFIC}


def promtool_test(tmp_path: pathlib.Path, spec: dict, inputs: list, checks: list) -> subprocess.CompletedProcess:
    """``promtool test rules`` of ``spec``'s rules against ``inputs`` (one sample a minute) and ``checks``.

    The logic under test is expr, for and labels; annotations are left out (promtool would want
    every rendered annotation spelled out in each expected alert) and checked statically above.
    """
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
             "tests": [{"interval": "1m", "input_series": inputs,
                        "alert_rule_test": [{"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": expected}
                                            for minute, alert, expected in checks]}]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return promtool("test", "rules", "tests.yaml", cwd=tmp_path)


def test_every_alert_has_a_firing_and_a_silent_case():
    checks = [(alert, expected) for _, checks in CASES.values() for _, alert, expected in checks]
    for alert in alerts():
        assert any(a == alert["alert"] and e for a, e in checks), f"{alert['alert']} never shown firing"
        assert any(a == alert["alert"] and not e for a, e in checks), f"{alert['alert']} never shown silent"


@needs_promtool
@pytest.mark.parametrize("case", CASES)
def test_alerts_fire_when_they_should_and_not_otherwise(tmp_path, case):
    result = promtool_test(tmp_path, rule_manifest()["spec"], *CASES[case])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_test_fails_when_an_alert_does_not_fire(tmp_path):
    """The harness above can fail: a threshold raised past the data silences the expected alert."""
    spec = rule_manifest()["spec"]
    [rule] = [r for g in spec["groups"] for r in g["rules"] if r.get("alert") == "ProdmlPredictorErrorRateCritical"]
    assert "> 0.05" in rule["expr"]
    rule["expr"] = rule["expr"].replace("> 0.05", "> 0.5")
    result = promtool_test(tmp_path, spec, *ERROR_RATE)
    assert result.returncode != 0 and "ProdmlPredictorErrorRateCritical" in result.stdout + result.stderr


# --- the Grafana dashboard, the kustomization and the scrape annotations ------------------------------


def test_dashboard_shows_traffic_errors_latency_drops_and_version():
    board = dashboard()
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    cells = [(x, y) for p in board["panels"] for x in range(p["gridPos"]["x"], p["gridPos"]["x"] + p["gridPos"]["w"])
             for y in range(p["gridPos"]["y"], p["gridPos"]["y"] + p["gridPos"]["h"])]
    assert len(cells) == len(set(cells)), "panels overlap"
    queries = " ".join(expr for _, expr in dashboard_queries())
    assert "rate(prodml_requests_total" in queries                     # request rate and error ratio
    assert 'outcome=~"error|not_ready"' in queries
    for quantile in ("0.5", "0.9", "0.99"):                             # latency percentiles
        assert f"histogram_quantile({quantile}, sum by (model_name, le) (rate(prodml_request_latency_seconds_bucket" \
            in queries
    assert "prodml_request_log_dropped_total" in queries                # log drops
    assert "by (model_name, model_version) (rate(prodml_predictions_total" in queries  # version served


def test_kustomization_lists_every_file_of_the_folder():
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    listed = kustomization["resources"] + [f for g in kustomization["configMapGenerator"] for f in g["files"]]
    assert sorted(listed) == sorted(p.name for p in MONITORING.iterdir() if p.name != "kustomization.yaml")
    [generator] = kustomization["configMapGenerator"]
    assert generator["options"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed (optional here: it renders the kustomization)")
def test_kustomization_renders_the_rule_and_the_dashboard_configmap(tmp_path):
    result = subprocess.run(["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout)}
    assert set(docs) == {"PrometheusRule", "ConfigMap"}
    assert docs["PrometheusRule"]["spec"] == rule_manifest()["spec"]
    assert docs["PrometheusRule"]["metadata"]["namespace"] == "prodml"
    assert json.loads(docs["ConfigMap"]["data"][DASHBOARD_FILE.name]) == dashboard()


def test_every_servingruntime_is_scraped_where_the_predictor_serves_its_metrics():
    """The rules read the predictor's /metrics on its REST port, which every ServingRuntime annotates."""
    files = sorted((REPO / "manifests" / "kserve").glob("*.yaml"))
    runtimes = [d for p in files for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == "ServingRuntime"]
    assert runtimes
    for runtime in runtimes:
        name, args = runtime["metadata"]["name"], runtime["spec"]["containers"][0]["args"]
        annotations = runtime["spec"]["annotations"]
        assert annotations["prometheus.kserve.io/path"] == "/metrics", name
        assert annotations["prometheus.kserve.io/port"] == args[args.index("--http_port") + 1], name
        # The model_name label of every series is the InferenceService's name (KServe fills {{.Name}}).
        assert args[args.index("--model_name") + 1] == "{{.Name}}"


def test_latency_series_exist_before_the_first_request():
    """ProdmlPredictorNoTraffic needs the latency histogram's series from the predictor's start (at zero):
    the predictor creates its children in ``ProdmlModel.__init__`` (read from serving/predictor.py)."""
    tree = ast.parse((REPO / "serving" / "predictor.py").read_text())
    [model] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ProdmlModel"]
    [init] = [n for n in model.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"]
    calls = {ast.unparse(n.func) for n in ast.walk(init) if isinstance(n, ast.Call)}
    assert "metrics.LATENCY.labels" in calls
