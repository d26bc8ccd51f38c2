"""Session fixtures: the upstream artifacts each executor test builds on.

Each fixture runs one real executor once per session on ``testdata/taxi_small.csv``, so a
downstream executor is tested alone against real upstream output.
"""

import os
import pathlib

import pytest

from prodml.components.common.logs import silence_tensorflow

silence_tensorflow()

TESTDATA = pathlib.Path(__file__).parent / "testdata"
REPO = pathlib.Path(__file__).parent.parent
TAXI_SMALL = TESTDATA / "taxi_small.csv"
TAXI_FULL = REPO / "data" / "chicago_taxi" / "data.csv"
LABEL = "big_tipper"


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def ingested(artifacts):
    """The examples artifact folder of the small taxi file, without ``tips``."""
    from prodml.components.ingest.executor import run_ingest

    out = artifacts / "examples"
    run_ingest(data_uri=str(TAXI_SMALL), output_dir=str(out), label=LABEL,
               drop_columns=["tips"])
    return out


@pytest.fixture(scope="session")
def validated(artifacts, ingested):
    """(statistics folder, schema folder) of the ingested examples."""
    from prodml.components.validate.executor import run_validate

    stats, schema = artifacts / "statistics", artifacts / "schema"
    run_validate(examples_dir=str(ingested), statistics_dir=str(stats), schema_dir=str(schema),
                 anomalies_md_path=str(artifacts / "anomalies.md"),
                 statistics_html_path=str(artifacts / "statistics.html"))
    return stats, schema


@pytest.fixture(scope="session")
def transformed(artifacts, ingested, validated):
    """(transform graph folder, transformed examples folder) with the default preprocessing."""
    from prodml.components.transform.executor import run_transform

    graph, examples = artifacts / "transform_graph", artifacts / "transformed_examples"
    run_transform(examples_dir=str(ingested), schema_dir=str(validated[1]),
                  transform_graph_dir=str(graph), transformed_examples_dir=str(examples))
    return graph, examples


@pytest.fixture(scope="session")
def trained(artifacts, transformed):
    """The model folder (SavedModel + prodml_model.json) of the default model."""
    from prodml.components.train.executor import run_train

    model = artifacts / "model"
    run_train(transform_graph_dir=str(transformed[0]), transformed_examples_dir=str(transformed[1]),
              model_dir=str(model), epochs=3)
    return model
