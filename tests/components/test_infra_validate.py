"""infra_validate: the candidate served by the real predictor (a KServe ModelServer in .venv/serving).

The pass, and the three refusals the issue names, each followed by push: a model that loads
here (TF 2.16) but that the predictor cannot serve, a model whose served predictions differ from
evaluate's, and a model too slow for a tight latency bound. Each refusal names its cause and
leaves the registry empty. The pure checks are tested without a server.
"""

import json
import math
import os
import shutil

import pytest

from prodml.components.common import artifacts, keys
from prodml.components.common.errors import ConfigError
from prodml.components.infra_validate import checks, executor, probe
from prodml.components.infra_validate.executor import run_infra_validate
from prodml.components.push.executor import run_push

MODEL_NAME = "taxi"


def _push(tmp_path, model_dir, ingested, infra_dir):
    """Push with evaluate's blessing granted, so that only the infra blessing decides."""
    blessing, evaluation = tmp_path / "blessing", tmp_path / "evaluation"
    artifacts.Blessing(blessed=True, reasons=["auc 0.9 > baseline 0.5 (majority class)"]).write(str(blessing))
    artifacts.Evaluation(metrics={"auc": 0.9}, key_metric="auc").write(str(evaluation))
    registry = tmp_path / "registry"
    result = run_push(model_dir=str(model_dir), blessing_dir=str(blessing), evaluation_dir=str(evaluation),
                      examples_dir=str(ingested), registry_uri=str(registry), model_name=MODEL_NAME,
                      infra_blessing_dir=str(infra_dir), card_path=str(tmp_path / "card.md"))
    return result, registry


def _versions(registry):
    root = registry / MODEL_NAME
    return sorted(os.listdir(root)) if root.exists() else []


@pytest.mark.slow
def test_a_servable_model_is_infra_blessed_and_pushed(tmp_path, trained, ingested):
    infra_dir, report = tmp_path / "infra", tmp_path / "report.md"
    result = run_infra_validate(str(trained), str(ingested), str(infra_dir), report_path=str(report))

    assert result["blessed"], result["reasons"]
    written = artifacts.InfraBlessing.read(str(infra_dir))
    assert written.blessed and written.reasons == result["reasons"]
    figures = written.figures
    assert figures["eval_rows"] == 32 and figures["rows"] > figures["eval_rows"]
    assert figures["missing_rows"] > 0  # the missing-value variants went over every protocol
    assert set(figures["max_difference"]) == {"v1", "v2", "grpc"}
    assert all(gap <= 1e-5 for gap in figures["max_difference"].values())
    assert 0 < figures["load_seconds"] < figures["ready_seconds"] <= 300
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert figures["concurrency"] == 8 and figures["requests"] == 200
    assert written.bounds == {"max_load_seconds": 300.0, "max_p99_ms": 2000.0, "max_difference": 1e-5}
    assert [r.split(" ")[0] for r in written.reasons] == ["ready", "V1", "V2", "V2", "p99"]
    assert set(result["metrics"]) >= {"ready_seconds", "p99_ms", "max_prediction_difference"}
    text = report.read_text()
    assert "**Infra-blessed**" in text and "| p99 latency at concurrency 8 |" in text

    pushed, registry = _push(tmp_path, trained, ingested, infra_dir)
    assert pushed["pushed"] and _versions(registry) == ["1"]


def _save_unservable(model_dir, trained):
    """A SavedModel TF 2.16 loads and evaluate scores, whose raw signature takes int64: the predictor refuses it."""
    import tensorflow as tf

    info = artifacts.ModelInfo.read(str(trained))
    dtypes = {keys.INT: tf.int64, keys.FLOAT: tf.float32, keys.BYTES: tf.string}
    specs = {name: tf.TensorSpec([None], dtypes[kind], name=name) for name, kind in info.raw_features.items()}

    class Constant(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def from_examples(self, examples):
            return {keys.PREDICTIONS: tf.fill(tf.shape(examples), 0.5)}

        @tf.function(input_signature=[specs])
        def from_raw(self, features):
            return {keys.PREDICTIONS: tf.fill(tf.shape(features["fare"]), 0.5)}

    module = Constant()
    raw = module.from_raw.get_concrete_function()
    signatures = {keys.EXAMPLES_SIGNATURE: module.from_examples.get_concrete_function(),
                  keys.RAW_SIGNATURE: tf.function(lambda **f: raw(f)).get_concrete_function(**specs)}
    tf.saved_model.save(module, str(model_dir), signatures=signatures)
    info.write(str(model_dir))


@pytest.mark.slow
def test_a_model_the_predictor_cannot_serve_is_refused_and_not_pushed(tmp_path, trained, ingested):
    model = tmp_path / "model"
    _save_unservable(model, trained)
    infra_dir = tmp_path / "infra"

    result = run_infra_validate(str(model), str(ingested), str(infra_dir), latency_requests=16)

    assert not result["blessed"]
    [reason] = result["reasons"]  # nothing else is checked when the model does not serve
    assert reason.startswith("does not serve in the serving runtime: the predictor exited with code 1 before it "
                             "was ready: ")
    assert "has dtype int64; the prodml contract allows float64, float32 or string" in reason
    pushed, registry = _push(tmp_path, model, ingested, infra_dir)
    assert not pushed["pushed"] and pushed["reasons"] == [f"infra: {reason}"]
    assert _versions(registry) == []
    assert f"infra: {reason}" in (tmp_path / "card.md").read_text()


@pytest.mark.slow
def test_a_model_changed_after_evaluate_is_refused_and_not_pushed(tmp_path, trained, ingested, monkeypatch):
    # Evaluate scored `trained`; the folder that reaches the server has its payment_type vocabulary
    # reversed, so the same raw rows map to other categories there.
    tampered = tmp_path / "model"
    shutil.copytree(trained, tampered)
    vocabulary = tampered / "assets" / "payment_type"
    vocabulary.write_text("\n".join(reversed(vocabulary.read_text().splitlines())) + "\n")
    evaluated = probe.expected_predictions
    monkeypatch.setattr(executor, "expected_predictions", lambda _model_dir, rows: evaluated(str(trained), rows))
    infra_dir = tmp_path / "infra"

    result = run_infra_validate(str(tampered), str(ingested), str(infra_dir), latency_requests=16)

    assert not result["blessed"]
    differ = [r for r in result["reasons"] if "predictions differ from evaluate's" in r]
    assert [r.split(" ")[:2] for r in differ] == [["V1", "REST"], ["V2", "REST"], ["V2", "gRPC"]]
    assert all("over the bound of 1e-05" in r for r in differ)
    assert result["reasons"][0].startswith("ready in")  # it served; it answered wrong
    pushed, registry = _push(tmp_path, tampered, ingested, infra_dir)
    assert not pushed["pushed"] and any("predictions differ" in r for r in pushed["reasons"])
    assert _versions(registry) == []


@pytest.mark.slow
def test_a_model_too_slow_for_the_bound_is_refused_and_not_pushed(tmp_path, trained, ingested):
    infra_dir = tmp_path / "infra"

    result = run_infra_validate(str(trained), str(ingested), str(infra_dir), max_p99_ms=0.001, latency_requests=40)

    assert not result["blessed"]
    failed = [r for r, ok in zip(result["reasons"], result["passed"]) if not ok]
    assert len(failed) == 1 and failed[0].startswith("too slow: p99 latency ")
    assert "ms at concurrency 8 is over the bound of 0.001 ms" in failed[0]
    assert artifacts.InfraBlessing.read(str(infra_dir)).figures["p99_ms"] > 0.001
    pushed, registry = _push(tmp_path, trained, ingested, infra_dir)
    assert not pushed["pushed"] and pushed["reasons"] == [f"infra: {reason}" for reason in result["reasons"]]
    assert _versions(registry) == []


# ---- without a server ---------------------------------------------------------------------------

def test_bad_bounds_are_usage_errors_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match=r"infra_max_p99_ms must be a finite number above 0, got -1"):
        run_infra_validate(str(tmp_path), str(tmp_path), str(tmp_path / "out"), max_p99_ms=-1)
    with pytest.raises(ConfigError, match=r"infra_max_load_seconds must be a finite number above 0, got inf"):
        run_infra_validate(str(tmp_path), str(tmp_path), str(tmp_path / "out"), max_load_seconds=math.inf)


def test_a_missing_serving_environment_is_named(monkeypatch, tmp_path):
    from prodml.components.infra_validate import serving_env

    monkeypatch.setenv(serving_env.SERVING_PYTHON_ENV, str(tmp_path / "nowhere" / "python"))
    with pytest.raises(ConfigError, match=r"PRODML_SERVING_PYTHON=.*/nowhere/python does not exist"):
        serving_env.serving_python()


@pytest.mark.parametrize("got, expected, gap", [
    ([0.25, 0.5], [0.25, 0.5], {"max": 0.0, "row": 0}),
    ([0.25, 0.5], [0.25, 0.52], {"max": pytest.approx(0.02), "row": 1}),
    ([[0.1, 0.9], [0.5, 0.5]], [[0.1, 0.9], [0.5, 0.5]], {"max": 0.0, "row": 0}),
    ([1000.0, 3.0], [1000.5, 3.0], {"max": pytest.approx(0.5 / 1000.5), "row": 0}),  # relative above 1
    ([math.nan, 0.5], [0.5, 0.5], {"max": math.inf, "row": 0}),
    ([0.5], [0.5, 0.5], {"problem": "the answer has shape [1], expected [2]"}),
])
def test_difference_is_absolute_below_one_relative_above(got, expected, gap):
    assert checks.difference(got, expected) == gap


def test_a_protocol_error_is_its_own_reason():
    served = {"errors": {"grpc": "StatusCode.INVALID_ARGUMENT: Input 'fare' is FP64"}, "predictions": {}}
    check = checks.predictions("grpc", served, [0.5, 0.5], 1e-5, 1)
    assert not check.passed
    assert check.reason == "V2 gRPC request of 2 eval rows failed: StatusCode.INVALID_ARGUMENT: Input 'fare' is FP64"


def test_an_infra_blessing_reads_back_and_names_a_bad_field(tmp_path):
    blessing = artifacts.InfraBlessing(blessed=False, reasons=["too slow"], figures={"p99_ms": 9.0},
                                       bounds={"max_p99_ms": 5.0})
    blessing.write(str(tmp_path))
    assert artifacts.InfraBlessing.read(str(tmp_path)) == blessing
    (tmp_path / keys.INFRA_BLESSING_FILE).write_text(json.dumps({"blessed": "no", "reasons": []}))
    with pytest.raises(Exception, match="field 'blessed' is a string \\('no'\\), expected true or false. This file "
                                        "is written by infra_validate"):
        artifacts.InfraBlessing.read(str(tmp_path))


# ---- the run summary ----------------------------------------------------------------------------

def test_the_run_summary_shows_the_infra_blessing_and_figures(tmp_path):
    import types

    from prodml.pipelines.cli import _human_summary
    from prodml.pipelines.run_summary import summarize_run

    run = tmp_path / "run"  # kfp.local's layout: <run>/<task>/<output>
    artifacts.Blessing(blessed=True, reasons=["auc 0.9 > baseline 0.5 (majority class)"]).write(
        str(run / "evaluate" / keys.BLESSING_KEY))
    artifacts.Evaluation(metrics={"auc": 0.9}, key_metric="auc").write(str(run / "evaluate" / keys.EVALUATION_KEY))
    artifacts.DataVersion(source_uri="/d.csv", sha256="ab" * 32, size_bytes=1, row_counts={"train": 8, "eval": 2},
                          split_ratios={"train": 0.8, "eval": 0.2}, columns={"fare": keys.FLOAT, "y": keys.INT},
                          dropped_columns=[], label=artifacts.Label("y", keys.BINARY, ["0", "1"])).write(
        str(run / "ingest" / keys.EXAMPLES_KEY))
    figures = {"ready_seconds": 9.81, "p50_ms": 4.12, "p99_ms": 3000.0, "concurrency": 8,
               "max_difference": {"v1": 1e-8, "v2": 2e-8, "grpc": None}}
    artifacts.InfraBlessing(blessed=False, reasons=["ready in 9.8 s", "too slow: p99 latency 3000.0 ms"],
                            figures=figures).write(str(run / "infra-validate" / keys.INFRA_BLESSING_KEY))
    pushed_model = types.SimpleNamespace(path=str(run / "push" / keys.PUSHED_MODEL_KEY),
                                         metadata={"pushed": False, "run_id": "r1"})

    summary = summarize_run(pushed_model)

    assert summary["infra"] == {"blessed": False, "reasons": ["ready in 9.8 s", "too slow: p99 latency 3000.0 ms"],
                                "figures": figures}
    text = _human_summary({**summary, "metadata_db": "m.sqlite", "log_file": "run.log"})
    assert ("Infra-validated (served by KServe): no\n"
            "  ready in 9.8s; p50 4.1 ms, p99 3000.0 ms at concurrency 8; largest prediction difference 2e-08\n"
            "  - ready in 9.8 s\n  - too slow: p99 latency 3000.0 ms\n"
            "Pushed: nothing (the registry is unchanged)") in text
