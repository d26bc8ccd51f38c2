"""Model quality: prodml's zero-code default model vs scikit-learn's HistGradientBoosting.

For each dataset, in the same run and on the same rows:
  * prodml — `prodml.pipelines.local.run_training` with default settings (the code path of
    `prodml run training`); its exported SavedModel scores the eval split through the
    `serving_examples` signature, so the figures are in the label's own units, as served;
  * gradient boosting — `HistGradientBoostingClassifier/Regressor` with scikit-learn's defaults
    (one thread), fitted on prodml's own train split (read back from the ingest output) and
    scored on the same eval split;
  * for regression, also predicting the train mean.
Metrics: ROC AUC (binary), accuracy (multiclass), RMSE (regression), all computed here with
scikit-learn from the predictions. prodml's early stopping watches the eval loss, as the
pipeline does; gradient boosting never sees the eval split. Times: prodml's fit (the train
step's "trained in" line, export excluded) and gradient boosting's fit, in the same run.
Targets (issue 13): RMSE <= 1.1x gradient boosting's and below the mean's; AUC within 0.01;
accuracy within 0.02.

    python benchmarks/model_quality.py [--only diabetes,wine] [--json benchmarks/results/model_quality.json]
"""

import argparse
import contextlib
import glob
import json
import os
import platform
import re
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAXI = os.path.join(REPO, "data", "chicago_taxi", "data.csv")
RESULTS = os.path.join(REPO, "benchmarks", "results", "model_quality.json")
RMSE_RATIO_TARGET = 1.1
AUC_GAP_TARGET = 0.01
ACCURACY_GAP_TARGET = 0.02


def _sklearn_csv(loader: Callable, path: str) -> None:
    """A bundled scikit-learn dataset as a CSV; column names made of letters, digits and '_'."""
    frame = loader(as_frame=True).frame
    frame.columns = [c.strip().replace(" ", "_").replace("/", "_") for c in frame.columns]
    frame.to_csv(path, index=False)


def datasets() -> Dict[str, dict]:
    """Name -> how to build the CSV and the ``run_training`` arguments for it."""
    from sklearn import datasets as sk

    return {
        "diabetes": {"make": lambda p: _sklearn_csv(sk.load_diabetes, p), "label": "target",
                     "params": {"problem_type": "regression"}},
        "wine": {"make": lambda p: _sklearn_csv(sk.load_wine, p), "label": "target", "params": {}},
        "breast_cancer": {"make": lambda p: _sklearn_csv(sk.load_breast_cancer, p), "label": "target",
                          "params": {}},
        "iris": {"make": lambda p: _sklearn_csv(sk.load_iris, p), "label": "target", "params": {}},
        "taxi_big_tipper": {"csv": TAXI, "label": "big_tipper", "params": {"drop_columns": ["tips"]}},
        "taxi_fare": {"csv": TAXI, "label": "fare",
                      "params": {"drop_columns": ["tips", "big_tipper"], "problem_type": "regression"}},
    }


def read_examples(examples_dir: str, split: str):
    """A split of an ingest output as a pandas DataFrame; an absent feature is NaN / None."""
    import pandas as pd
    import tensorflow as tf

    files = sorted(glob.glob(os.path.join(examples_dir, f"Split-{split}", "*.tfrecord.gz")))
    rows, records = [], []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        records.append(record.numpy())
        row = {}
        for name, feature in tf.train.Example.FromString(records[-1]).features.feature.items():
            kind = feature.WhichOneof("kind")
            values = getattr(feature, kind).value
            if values:
                row[name] = values[0].decode("utf-8") if kind == "bytes_list" else values[0]
        rows.append(row)
    return pd.DataFrame(rows), records


def gradient_boosting(train, eval_, label: str, problem_type: str):
    """Fits scikit-learn's HistGradientBoosting (defaults) on train; returns (predictions, seconds).

    Text columns become pandas categoricals with the train split's categories.
    """
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    x_train, x_eval = train.drop(columns=[label]), eval_.reindex(columns=train.columns).drop(columns=[label])
    for name in x_train.columns:
        if x_train[name].dtype == object:
            categories = sorted(x_train[name].dropna().unique())
            if len(categories) > 255:  # HistGradientBoosting's limit: code them as numbers instead
                codes = {c: i for i, c in enumerate(categories)}
                x_train[name] = x_train[name].map(codes).astype(float)
                x_eval[name] = x_eval[name].map(codes).astype(float)
            else:
                x_train[name] = pd.Categorical(x_train[name], categories=categories)
                x_eval[name] = pd.Categorical(x_eval[name], categories=categories)
    started = time.perf_counter()
    # One OpenMP thread: its spinning threads crawl on a shared, loaded machine.
    with threadpool_limits(1):
        if problem_type == "regression":
            model = HistGradientBoostingRegressor(random_state=0).fit(x_train, train[label])
            predicted = model.predict(x_eval)
        else:
            model = HistGradientBoostingClassifier(random_state=0).fit(x_train, train[label].astype(str))
            predicted = model.predict_proba(x_eval), [str(c) for c in model.classes_]
    return predicted, time.perf_counter() - started


def served_predictions(model_dir: str, records: List[bytes]):
    """The exported SavedModel's ``serving_examples`` output on serialized examples."""
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(model_dir)
    predict = loaded.signatures["serving_examples"]
    out = [predict(examples=tf.constant(records[i:i + 4096]))["predictions"].numpy()
           for i in range(0, len(records), 4096)]
    return np.concatenate(out)


def score(problem_type: str, classes: Optional[List[str]], truth, prodml_out, gbt_out, train_mean) -> dict:
    """The metric of both models (and the mean for regression), the gap and whether it meets the target."""
    import numpy as np
    from sklearn.metrics import accuracy_score, roc_auc_score

    if problem_type == "regression":
        y = truth.astype(float).to_numpy()
        rmse = lambda p: float(np.sqrt(np.mean((y - p) ** 2)))  # noqa: E731
        ours, theirs, mean = rmse(prodml_out), rmse(gbt_out), rmse(np.full_like(y, train_mean))
        ratio = ours / theirs
        return {"metric": "rmse", "prodml": ours, "gbt": theirs, "mean_baseline": mean,
                "ratio_to_gbt": ratio, "target": f"<= {RMSE_RATIO_TARGET}x gbt and < mean",
                "met": bool(ratio <= RMSE_RATIO_TARGET and ours < mean)}
    probabilities, gbt_classes = gbt_out
    labels = truth.astype(str).to_numpy()
    # ingest's class strings vs the label as read back ("1" vs "1.0" cannot happen: both from the examples)
    gbt_by_class = probabilities[:, [gbt_classes.index(c) for c in classes]]
    if problem_type == "binary":
        positive = labels == classes[1]
        ours, theirs = roc_auc_score(positive, prodml_out), roc_auc_score(positive, gbt_by_class[:, 1])
        gap = theirs - ours
        return {"metric": "auc", "prodml": float(ours), "gbt": float(theirs), "gap_to_gbt": float(gap),
                "target": f"within {AUC_GAP_TARGET} of gbt", "met": bool(gap <= AUC_GAP_TARGET)}
    names = np.array(classes)
    ours = accuracy_score(labels, names[np.argmax(prodml_out, axis=1)])
    theirs = accuracy_score(labels, names[np.argmax(gbt_by_class, axis=1)])
    gap = theirs - ours
    return {"metric": "accuracy", "prodml": float(ours), "gbt": float(theirs), "gap_to_gbt": float(gap),
            "target": f"within {ACCURACY_GAP_TARGET} of gbt", "met": bool(gap <= ACCURACY_GAP_TARGET)}


def compare(examples_dir: str, model_dir: str, label_info: dict) -> dict:
    """Scores the exported model and gradient boosting on the ingest output's eval split."""
    train, _ = read_examples(examples_dir, "train")
    eval_, records = read_examples(examples_dir, "eval")
    label, problem_type = label_info["name"], label_info["problem_type"]
    classes = label_info.get("classes")
    if classes is not None:  # the label as the examples hold it, in the classes' string form
        for frame in (train, eval_):
            frame[label] = frame[label].map(lambda v: _class_string(v, classes))
    gbt_out, gbt_seconds = gradient_boosting(train, eval_, label, problem_type)
    result = score(problem_type, classes, eval_[label], served_predictions(model_dir, records), gbt_out,
                   float(train[label].astype(float).mean()) if classes is None else None)
    result.update(problem_type=problem_type, rows={"train": len(train), "eval": len(eval_)},
                  features=train.shape[1] - 1, gbt_fit_seconds=round(gbt_seconds, 3))
    return result


def _class_string(value, classes: List[str]) -> str:
    text = str(value)
    if text in classes:
        return text
    for c in classes:  # a float label 1.0 for class "1"
        with contextlib.suppress(ValueError):
            if float(c) == float(value):
                return c
    return text


def run_one(name: str, spec: dict, work: str) -> dict:
    """Runs the default pipeline on one dataset and compares it with gradient boosting."""
    from prodml.pipelines.local import PipelineFailed, run_training

    csv = spec.get("csv") or os.path.join(work, f"{name}.csv")
    if "make" in spec:
        spec["make"](csv)
    root = os.path.join(work, name)
    failure = None
    with open(os.devnull, "w") as quiet:
        try:
            summary = run_training(csv, label=spec["label"], model_name=name.replace("_", "-"), root=root,
                                   progress=quiet, **spec["params"])
        except PipelineFailed as e:  # a step after train (gate, push) failing leaves the model to score
            summary, failure = None, f"{e.step or 'a step'} failed: {e}"
    run_folder = max(glob.glob(os.path.join(root, "pipeline_root", "*", "ingest")), key=os.path.getmtime)
    run_folder = os.path.dirname(run_folder)
    examples_dir = os.path.join(run_folder, "ingest", "examples")
    model_dir = os.path.join(run_folder, "train", "model")
    if not os.path.exists(os.path.join(model_dir, "prodml_model.json")):
        raise RuntimeError(f"{name}: the pipeline trained no model: {failure}")
    with open(os.path.join(examples_dir, "data_version.json")) as f:
        label_info = json.load(f)["label"]
    with open(os.path.join(model_dir, "prodml_model.json")) as f:
        history = json.load(f).get("history", {})
    result = compare(examples_dir, model_dir, label_info)
    result.update(dataset=name, epochs_run=len(history.get("loss", [])), prodml_train_seconds=fit_seconds(root),
                  prodml_pipeline_seconds=summary["total_seconds"] if summary else None,
                  blessed=summary["blessed"] if summary else None, pipeline_failure=failure)
    return result


def fit_seconds(root: str) -> Optional[float]:
    """Seconds the train step spent fitting (its "trained in" log line), from the newest run log."""
    logs = sorted(glob.glob(os.path.join(root, "logs", "*.log")), key=os.path.getmtime)
    if not logs:
        return None
    with open(logs[-1], encoding="utf-8", errors="replace") as f:
        found = re.findall(r"prodml trained in ([0-9.]+)s", f.read())
    return float(found[-1]) if found else None


def markdown(results: List[dict]) -> str:
    """The README table."""
    lines = ["| dataset | task (train/eval rows) | metric | prodml default | gradient boosting | mean | gap | "
             "target met | prodml fit | GBT fit |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        gap = (f"{r['ratio_to_gbt']:.2f}× GBT" if r["metric"] == "rmse" else f"{r['gap_to_gbt']:+.3f}")
        mean = f"{r['mean_baseline']:.3f}" if "mean_baseline" in r else ""
        lines.append(f"| {r['dataset']} | {r['problem_type']} ({r['rows']['train']}/{r['rows']['eval']}) | "
                     f"{r['metric']} | {r['prodml']:.3f} | {r['gbt']:.3f} | {mean} | {gap} | "
                     f"{'yes' if r['met'] else 'NO'} | {_seconds(r['prodml_train_seconds'])} | "
                     f"{r['gbt_fit_seconds']:.1f} s |")
    return "\n".join(lines)


def _seconds(value: Optional[float]) -> str:
    return "?" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated dataset names (default: all)")
    parser.add_argument("--json", default=RESULTS, help="results file ('' writes none)")
    parser.add_argument("--workdir", default="", help="keep the CSVs and runs here (default: a temporary folder)")
    args = parser.parse_args()
    from prodml.components.common.logs import silence_tensorflow

    silence_tensorflow()
    specs = datasets()
    names = [n for n in args.only.split(",") if n] or list(specs)
    unknown = sorted(set(names) - set(specs))
    if unknown:
        parser.error(f"unknown datasets {unknown}; known: {sorted(specs)}")
    results = []
    with (contextlib.nullcontext(args.workdir) if args.workdir else tempfile.TemporaryDirectory()) as work:
        for name in names:
            results.append(run_one(name, specs[name], work))
            r = results[-1]
            print(f"{name}: {r['metric']} prodml {r['prodml']:.4f} gbt {r['gbt']:.4f} met={r['met']} "
                  f"(train {_seconds(r['prodml_train_seconds'])}) {r['pipeline_failure'] or ''}", file=sys.stderr)
            if args.json:  # after each dataset, so a long run that stops keeps what it measured
                write_results(args.json, results, complete=len(results) == len(names))
    print(markdown(results))


def write_results(path: str, results: List[dict], complete: bool) -> None:
    """The results JSON (with the Markdown table), written then renamed."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"results": results, "table": markdown(results), "complete": complete,
                   "all_targets_met": all(r["met"] for r in results), "machine": platform.machine(),
                   "cpus": os.cpu_count(), "python": platform.python_version()}, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
