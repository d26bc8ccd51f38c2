"""Every copy of a default agrees with components/common/defaults.py.

A KFP component's signature must spell its defaults as literals (KFP compiles the function's
source into the YAML, where ``defaults`` is not importable), so those copies are checked here:
in each component's spec, in the compiled pipeline (what the KFP UI shows and a run gets),
in the CLI parser, and in the executors' signatures.
"""

import inspect

import pytest
import yaml

from prodml.components.common import defaults, keys
from prodml.pipelines.compile import COMPONENTS, compile_pipeline

DEFAULTS = {"epochs": defaults.EPOCHS, "batch_size": defaults.BATCH_SIZE, "seed": defaults.SEED,
            "tolerance": defaults.TOLERANCE, "split_ratios": defaults.SPLIT_RATIOS,
            "pipeline_name": defaults.PIPELINE_NAME, "na_values": defaults.NA_VALUES,
            "infra_max_load_seconds": defaults.INFRA_MAX_LOAD_SECONDS, "infra_max_p99_ms": defaults.INFRA_MAX_P99_MS}


def _disagreements(where, params):
    """``params`` maps parameter names to their default; returns the ones that differ from defaults.py."""
    expected = dict(DEFAULTS)
    if "batch" in where:  # batch runs have their own pipeline context
        expected["pipeline_name"] = defaults.BATCH_PIPELINE_NAME
    if "monitor" in where:  # so do monitoring runs
        expected["pipeline_name"] = defaults.MONITOR_PIPELINE_NAME
    return [f"{where}: {name} = {value!r}, defaults.py says {expected[name]!r}"
            for name, value in params.items() if name in expected and value != expected[name]]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = compile_pipeline(str(tmp_path_factory.mktemp("defaults") / "training_pipeline.yaml"))
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def test_component_signatures_agree():
    seen, wrong = set(), []
    for name, component in COMPONENTS.items():
        params = {p: spec.default for p, spec in component.component_spec.inputs.items() if spec.optional}
        seen |= set(params) & set(DEFAULTS)
        wrong += _disagreements(f"component {name}", params)
    assert wrong == []
    assert {"epochs", "batch_size", "seed", "tolerance", "split_ratios", "pipeline_name"} <= seen


def test_the_compiled_pipeline_agrees(compiled):
    assert compiled["pipelineInfo"]["name"] == defaults.PIPELINE_NAME
    wrong, seen = [], set()
    definitions = {"pipeline": compiled["root"]}
    definitions.update(compiled["components"])
    for where, definition in definitions.items():
        params = {name: spec["defaultValue"]
                  for name, spec in definition.get("inputDefinitions", {}).get("parameters", {}).items()
                  if "defaultValue" in spec}
        seen |= set(params) & set(DEFAULTS)
        wrong += _disagreements(where, params)
    assert wrong == []
    pipeline_params = compiled["root"]["inputDefinitions"]["parameters"]
    assert {"epochs", "batch_size", "seed", "tolerance", "split_ratios"} <= set(pipeline_params)


def test_the_cli_agrees():
    from prodml.pipelines import cli

    args = vars(cli._parser().parse_args(["run", "training", "--data", "d.csv", "--label", "y",
                                           "--model-name", "m"]))
    checked = {name: args[name] for name in ("epochs", "seed", "tolerance", "batch_size", "infra_max_load_seconds",
                                             "infra_max_p99_ms") if name in args}
    assert {"epochs", "seed", "tolerance", "infra_max_load_seconds", "infra_max_p99_ms"} <= set(checked)
    assert _disagreements("prodml run training", checked) == []


def test_the_executors_agree():
    from prodml.components.evaluate.executor import run_evaluate
    from prodml.components.infra_validate.executor import run_infra_validate
    from prodml.components.ingest import splits
    from prodml.components.train.executor import run_train

    params = {name: p.default for name, p in inspect.signature(run_train).parameters.items()}
    params["tolerance"] = inspect.signature(run_evaluate).parameters["tolerance"].default
    infra = inspect.signature(run_infra_validate).parameters
    params["infra_max_load_seconds"] = infra["max_load_seconds"].default
    params["infra_max_p99_ms"] = infra["max_p99_ms"].default
    assert _disagreements("executors", params) == []
    assert set(params) >= {"epochs", "batch_size", "seed", "tolerance"}
    # Ingest without split_ratios splits by the default ratios.
    assert splits.normalise_ratios(None) == {k: v / sum(defaults.SPLIT_RATIOS.values())
                                             for k, v in defaults.SPLIT_RATIOS.items()}
    assert keys.DEFAULT_SPLIT_RATIOS == defaults.SPLIT_RATIOS
