"""Builds the serving tests' model in the runtime environment and publishes it to a registry.

Run by ``conftest.py`` with the runtime interpreter (TF 2.16, TFT):

    python build_model.py CSV WORKDIR REGISTRY MODEL_NAME EPOCHS

It chains the real executors (ingest, validate, transform, train) as ``tests/conftest.py`` does,
publishes the model folder as a new registry version, and prints the version number as the
last line of stdout. With ``EPOCHS`` set to 0 it only publishes ``WORKDIR/model`` again (a
second version for rollover tests, without training twice).
"""

import os
import shutil
import sys

from prodml.components.common.logs import silence_tensorflow

silence_tensorflow()


def main(csv: str, workdir: str, registry_uri: str, model_name: str, epochs: int) -> int:
    from prodml.components.common import registry

    model = os.path.join(workdir, "model")
    if epochs > 0:
        from prodml.components.ingest.executor import run_ingest
        from prodml.components.train.executor import run_train
        from prodml.components.transform.executor import run_transform
        from prodml.components.validate.executor import run_validate

        examples = os.path.join(workdir, "examples")
        stats, schema = os.path.join(workdir, "statistics"), os.path.join(workdir, "schema")
        graph, transformed = os.path.join(workdir, "transform_graph"), os.path.join(workdir, "transformed")
        run_ingest(data_uri=csv, output_dir=examples, label="big_tipper", drop_columns=["tips"])
        run_validate(examples_dir=examples, statistics_dir=stats, schema_dir=schema,
                     anomalies_md_path=os.path.join(workdir, "anomalies.md"),
                     statistics_html_path=os.path.join(workdir, "statistics.html"))
        run_transform(examples_dir=examples, schema_dir=schema, transform_graph_dir=graph,
                      transformed_examples_dir=transformed)
        run_train(transform_graph_dir=graph, transformed_examples_dir=transformed, model_dir=model,
                  epochs=epochs)
    version = registry.publish(registry_uri, model_name, lambda staging: shutil.copytree(model, staging))
    print(version)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
