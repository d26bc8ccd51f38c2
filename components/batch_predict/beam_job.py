"""The Beam engine: tasks are spread over workers by a reshuffle and scored by a batched DoFn.

The pipeline is ``Create(tasks) | Reshuffle | ParDo(ScoreTask)``. Each task is a few thousand
rows (see :mod:`sources`); :class:`ScoreTask` loads the SavedModel once per worker in ``setup``
and scores a task in batches of ``core.PREDICT_BATCH_ROWS`` rows, the batched equivalent of
``RunInference`` with prodml's own raw-row parsing and dead letters. Only the small task
descriptions travel through the runner: workers read their rows from the input and write their
parts themselves, so memory does not grow with the input.

Runners, chosen by ``beam_args`` (Beam's own pipeline options):

- default (nothing given): ``--runner=DirectRunner --direct_running_mode=multi_threading
  --direct_num_workers=<usable cores>``. Scoring spends its time in TensorFlow and Arrow, which
  release the GIL, so worker threads keep every core busy while TensorFlow is imported and the
  model loaded once. ``--direct_running_mode=multi_processing`` gives one process per worker
  instead; it pays TensorFlow's start-up (import, model load, a few seconds) in every process,
  which ``benchmarks/batch_predict.py`` measures side by side.
- Dataflow: ``--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp
  --sdk_container_image=<the prodml runtime image>``, with input, output and model on gs://.
- Flink: ``--runner=FlinkRunner --flink_master=HOST:8081 --environment_type=DOCKER
  --environment_config=<the prodml runtime image>``.
- Spark (Beam's portable Spark runner): ``--runner=SparkRunner --spark_master_url=spark://HOST:7077
  --environment_type=DOCKER --environment_config=<the prodml runtime image>``.

Only the DirectRunner is exercised here; the others are Beam's documented options, untested in
this repository. Beam's Prism runner (``--runner=PrismRunner``) downloads a binary at run time.
"""

import os
from typing import List, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from prodml.components.batch_predict import sources, worker


def default_beam_args() -> List[str]:
    """The local DirectRunner options: one worker thread per core this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return ["--runner=DirectRunner", "--direct_running_mode=multi_threading", f"--direct_num_workers={cores}"]


def beam_args_with_defaults(beam_args: Sequence[str]) -> List[str]:
    """``beam_args``, plus the local defaults for the options it does not set."""
    args = list(beam_args or [])
    given = {a.split("=", 1)[0].lstrip("-") for a in args if a.startswith("--")}
    if "runner" in given and not any(a.endswith("DirectRunner") for a in args):
        return args
    return args + [a for a in default_beam_args() if a.split("=", 1)[0].lstrip("-") not in given]


class ScoreTask(beam.DoFn):
    """Scores one task per element; the model is loaded once per worker process."""

    def __init__(self, settings: worker.Settings):
        self.settings = settings

    def setup(self):
        from prodml.components.common.logs import silence_tensorflow

        silence_tensorflow()
        worker.load_model(self.settings.model_dir, self.settings.model_version)

    def process(self, task):
        yield worker.run_task_reporting_errors(task, self.settings)


def run(tasks: Sequence[sources.Task], settings: worker.Settings, beam_args: Sequence[str] = ()) -> None:
    """Runs every task on Beam and waits for the end; the parts land in ``settings.staging_uri``."""
    options = PipelineOptions(beam_args_with_defaults(beam_args))
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline
             | "Tasks" >> beam.Create(list(tasks))
             | "Spread" >> beam.Reshuffle()
             | "Score" >> beam.ParDo(ScoreTask(settings)))
