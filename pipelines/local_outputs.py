"""Finding the artifacts of a local run, to look at them (e.g. in a notebook).

``kfp.local`` keeps each run under ``<root>/pipeline_root/<pipeline name>-<timestamp>/``, with
one folder per task and one file or folder per output: ``validate/statistics_view`` (HTML),
``validate/anomalies`` and ``evaluate/report`` (Markdown), ``push/model_card`` (Markdown), ...
"""

import os
from typing import List, Optional

from prodml.components.common.errors import ConfigError
from prodml.pipelines.local import LocalRoot, default_root
from prodml.pipelines.training import PIPELINE_NAME


def run_folders(root: Optional[str] = None, pipeline_name: str = PIPELINE_NAME) -> List[str]:
    """The folders of the local runs of ``pipeline_name`` under ``root``, oldest first."""
    pipeline_root = LocalRoot(os.path.abspath(root or default_root())).pipeline_root
    if not os.path.isdir(pipeline_root):
        return []
    prefix = f"{pipeline_name}-"
    # kfp.local stamps run folders %Y-%m-%d-%H-%M-%S-%f, so names sort by time.
    return [os.path.join(pipeline_root, name) for name in sorted(os.listdir(pipeline_root))
            if name.startswith(prefix) and name[len(prefix):][:1].isdigit()]


def output_path(task: str, output: str, root: Optional[str] = None, run_folder: Optional[str] = None,
                pipeline_name: str = PIPELINE_NAME) -> str:
    """The file or folder of one task output of a local run; by default of the latest run."""
    if run_folder is None:
        runs = run_folders(root, pipeline_name)
        if not runs:
            raise ConfigError(f"No local run of {pipeline_name} under {root or default_root()}. "
                              "Run the pipeline first (prodml run training, or run_training()).")
        run_folder = runs[-1]
    path = os.path.join(run_folder, task, output)
    if not os.path.exists(path):
        raise ConfigError(f"The run {os.path.basename(run_folder)} has no output '{output}' of task '{task}' "
                          f"({path}): the task did not run or failed; see the run's log.")
    return path
