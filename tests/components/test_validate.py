"""Validate on ingested golden data: statistics, schema, anomalies, drift and reports."""

import html
import json
import pathlib
import re
import shutil

import pytest

from prodml.components.common import keys, schemas
from prodml.components.common.errors import ConfigError, SchemaError
from prodml.components.ingest.executor import run_ingest
from prodml.components.validate.executor import run_validate

TESTDATA = pathlib.Path(__file__).parent.parent / "testdata"
TYPES = TESTDATA / "ingest" / "types.csv"
USER_SCHEMA = TESTDATA / "validate" / "user_schema.pbtxt"
EVAL_WRONG_TYPES = TESTDATA / "validate" / "eval_wrong_types.csv"


def validate(examples, out: pathlib.Path, **kwargs):
    """Runs validate with all outputs under ``out``."""
    return run_validate(examples_dir=str(examples), statistics_dir=str(out / "statistics"),
                        schema_dir=str(out / "schema"), anomalies_md_path=str(out / "anomalies.md"),
                        statistics_html_path=str(out / "statistics.html"), **kwargs)


@pytest.fixture(scope="module")
def types_examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("types_examples")
    run_ingest(str(TYPES), str(out), label="tip_binary")
    return out


@pytest.fixture(scope="module")
def shifted_statistics(tmp_path_factory):
    """Statistics of types.csv with fares four times higher and every trip in Chicago."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("shifted")
    frame = pd.read_csv(TYPES)
    frame["fare ($)"] = frame["fare ($)"] * 4
    frame["city"] = "Chicago"
    frame.to_csv(folder / "shifted.csv", index=False)
    run_ingest(str(folder / "shifted.csv"), str(folder / "examples"), label="tip_binary")
    validate(folder / "examples", folder)
    return folder / "statistics"


def test_statistics_of_both_splits_load_in_tfdv(ingested, validated):
    import tensorflow_data_validation as tfdv

    statistics_dir, _ = validated
    row_counts = json.loads((ingested / keys.DATA_VERSION_FILE).read_text())["row_counts"]
    for split in (keys.TRAIN, keys.EVAL):
        stats = tfdv.load_stats_binary(str(statistics_dir / f"Split-{split}" / keys.STATS_FILE))
        assert stats.datasets[0].num_examples == row_counts[split]
        assert stats.datasets[0].name == split
    anomalies = tfdv.load_anomalies_text(str(statistics_dir / keys.ANOMALIES_FILE))
    assert not anomalies.anomaly_info


def test_inferred_schema_has_every_column_and_no_fixed_shape(ingested, validated):
    _, schema_dir = validated
    schema = schemas.load_schema(str(schema_dir))
    columns = json.loads((ingested / keys.DATA_VERSION_FILE).read_text())["columns"]
    assert schemas.feature_kinds(schema) == columns
    assert not any(f.HasField("shape") for f in schema.feature)
    label = next(f for f in schema.feature if f.name == "big_tipper")
    assert label.presence.min_fraction == 1.0
    company = next(f for f in schema.feature if f.name == "company")
    assert company.distribution_constraints.min_domain_mass > 0.9


def test_reports_are_written(validated, artifacts):
    markdown = (artifacts / "anomalies.md").read_text()
    assert "No anomalies" in markdown
    page = (artifacts / "statistics.html").read_text()
    assert "<title>Statistics: train vs eval</title>" in page
    _, schema_dir = validated
    features = sorted(f.name for f in schemas.load_schema(str(schema_dir)).feature)
    charted = re.findall(r'<figure class="feature" data-feature="([^"]*)">', page)
    assert sorted(html.unescape(f) for f in charted) == features
    summarized = re.findall(r'<tr(?: class="highlight")?><td>([^<]*)</td><td>(train|eval)</td>', page)
    assert sorted((html.unescape(f), split) for f, split in summarized) == sorted(
        (f, split) for f in features for split in ("train", "eval"))
    # self-contained: no script, no stylesheet or image to fetch (the browser test renders it offline)
    assert not re.search(r"<script|<link|\b(src|href)\s*=|url\(|@import", page)


def test_user_schema_is_used(types_examples, tmp_path):
    result = validate(types_examples, tmp_path, user_schema_uri=str(USER_SCHEMA))
    assert result == {"anomalies": {"eval": {}, "train": {}}, "drift": {}, "blocking": False,
                      "num_features": 12, "schema_inferred": False}
    written = schemas.load_schema(str(tmp_path / "schema"))
    assert written == schemas.load_schema(str(USER_SCHEMA))


def test_wrong_types_and_missing_feature_in_eval_block(types_examples, tmp_path):
    wrong = tmp_path / "wrong"
    run_ingest(str(EVAL_WRONG_TYPES), str(wrong), label="tip_binary")
    examples = tmp_path / "examples"
    shutil.copytree(types_examples / "Split-train", examples / "Split-train")
    (examples / "Split-eval").mkdir()
    for i, f in enumerate(sorted(wrong.glob("Split-*/data-*"))):
        shutil.copy(f, examples / "Split-eval" / f"data-{i:05d}-of-00002.tfrecord.gz")

    with pytest.raises(SchemaError) as error:
        validate(examples, tmp_path, user_schema_uri=str(USER_SCHEMA))
    message = str(error.value)
    assert "eval: feature 'passengers': Unexpected data type (Expected data of type: INT" in message
    assert "eval: feature 'city'" in message
    assert "train:" not in message
    markdown = (tmp_path / "anomalies.md").read_text()
    assert "| eval | passengers | ERROR |" in markdown and "| eval | city | ERROR |" in markdown
    assert (tmp_path / "statistics" / "Split-eval" / keys.STATS_FILE).exists()
    assert (tmp_path / "statistics.html").exists()


def _train_with_wrong_eval(types_examples, tmp_path):
    wrong = tmp_path / "wrong"
    run_ingest(str(EVAL_WRONG_TYPES), str(wrong), label="tip_binary")
    examples = tmp_path / "examples"
    shutil.copytree(types_examples / "Split-train", examples / "Split-train")
    (examples / "Split-eval").mkdir()
    for i, f in enumerate(sorted(wrong.glob("Split-*/data-*"))):
        shutil.copy(f, examples / "Split-eval" / f"data-{i:05d}-of-00002.tfrecord.gz")
    shutil.copy(types_examples / keys.DATA_VERSION_FILE, examples / keys.DATA_VERSION_FILE)
    return examples


@pytest.mark.slow
def test_inferred_schema_still_blocks_a_type_change_and_a_missing_feature(types_examples, tmp_path):
    """The schema is inferred from every split, but train decides types and required features."""
    examples = _train_with_wrong_eval(types_examples, tmp_path)
    with pytest.raises(SchemaError) as error:
        validate(examples, tmp_path)
    message = str(error.value)
    assert "eval: feature 'passengers': Unexpected data type (Expected data of type: INT" in message
    assert "eval: feature 'city': Column dropped (" in message
    assert "train:" not in message
    schema = schemas.load_schema(str(tmp_path / "schema"))
    assert schemas.feature_kinds(schema)["passengers"] == "INT"
    assert "Schema: inferred from every split (types from train)." in (tmp_path / "anomalies.md").read_text()


@pytest.mark.slow
def test_categories_seen_in_one_split_only_do_not_block(tmp_path):
    """Long-tail values and identifiers land in eval only; the inferred schema takes every split."""
    rows = ["id,product,order_id,label"] + [
        f"{i},{'common' if i % 3 else f'rare{i}'},ORD{i * 7919 % 10007},{i % 2}" for i in range(90)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    run_ingest(str(tmp_path / "d.csv"), str(tmp_path / "examples"), label="label")
    result = validate(tmp_path / "examples", tmp_path)
    assert result["anomalies"] == {"eval": {}, "train": {}}
    schema = schemas.load_schema(str(tmp_path / "schema"))
    features = {f.name: f for f in schema.feature}
    domain = next(d for d in schema.string_domain if d.name == features["product"].domain)
    assert len(domain.value) == 31  # 'common' and the 30 rare values of both splits
    assert features["product"].distribution_constraints.min_domain_mass == 0.95
    assert not features["order_id"].HasField("domain")  # every value distinct: an identifier


def test_drift_against_a_shifted_baseline_is_reported(types_examples, shifted_statistics, tmp_path):
    result = validate(types_examples, tmp_path, baseline_statistics_dir=str(shifted_statistics))
    assert {"fare____", "city"} <= set(result["drift"])
    assert result["anomalies"] == {"eval": {}, "train": {}}
    assert "(drift)" in (tmp_path / "anomalies.md").read_text()
    anomalies = (tmp_path / "statistics" / keys.ANOMALIES_FILE).read_text()
    assert "train vs baseline" in anomalies and "drift_skew_info" in anomalies


def test_drift_blocks_with_fail_on_drift(types_examples, shifted_statistics, tmp_path):
    with pytest.raises(SchemaError, match=r"train vs baseline: feature 'fare____'"):
        validate(types_examples, tmp_path, baseline_statistics_dir=str(shifted_statistics),
                 fail_on_drift=True)


def test_missing_user_schema_or_baseline_fails_before_any_work(types_examples, tmp_path):
    with pytest.raises(ConfigError, match="nowhere.pbtxt does not exist"):
        validate(types_examples, tmp_path, user_schema_uri=str(tmp_path / "nowhere.pbtxt"))
    with pytest.raises(ConfigError, match="has no .*Split-train"):
        validate(types_examples, tmp_path, baseline_statistics_dir=str(tmp_path / "old"))
    assert not (tmp_path / "statistics").exists()
