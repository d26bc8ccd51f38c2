"""The ``prodml`` command: run, compile, inspect lineage, serve."""

import argparse
import json
import os
import subprocess
import sys
from typing import Any, Callable, Dict, List, Optional

from prodml.components.common import defaults, names
from prodml.components.common.errors import EXIT_INTERRUPTED, ConfigError, ProdmlError
from prodml.components.common.logs import silence_tensorflow

SERVING_PYTHON_ENV = "PRODML_SERVING_PYTHON"


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ["PRODML_VERBOSE"] = "1"
    silence_tensorflow()
    try:
        return args.handler(args) or 0
    except ProdmlError as e:
        if os.environ.get("PRODML_VERBOSE"):
            raise
        print(f"prodml: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("prodml: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _checked(parse: Callable[[str], Any], check: Callable[[Any], Any]) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse`` the text, then ``check`` the value; failures are usage errors (exit 2)."""
    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            kind = "a whole number" if parse is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind}") from None
        try:
            return check(value)
        except ConfigError as e:
            raise argparse.ArgumentTypeError(str(e)) from e

    convert.__name__ = getattr(check, "__name__", "value")
    return convert


def _bound(name: str) -> Callable[[Any], Any]:
    """An infra_validate bound: a finite number above 0."""
    def check(value: Any) -> float:
        from prodml.components.infra_validate.checks import positive

        return positive(name, value)

    check.__name__ = name
    return check


def _port(port: int) -> int:
    if not 1 <= port <= 65535:
        raise ConfigError(f"{port} is not a TCP port: give a number from 1 to 65535.")
    return port


def _preflight(check: str, *args: Any) -> Callable[[Any], Any]:
    """``preflight.<check>(value, *args)``, imported when a flag is parsed (it loads pandas)."""
    def run(value: Any) -> Any:
        from prodml.pipelines import preflight

        return getattr(preflight, check)(value, *args)

    run.__name__ = check
    return run


_MODEL_NAME = _checked(str, names.check_model_name)
_VERSION = _checked(int, names.check_version)
_PORT = _checked(int, _port)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prodml", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run a pipeline locally through kfp.local")
    run_what = run.add_subparsers(dest="pipeline", required=True)
    training = run_what.add_parser("training", help="ingest → validate → transform → train → evaluate → push")
    training.add_argument("--data", required=True, help="CSV or Parquet file, folder or glob (path or gfile URI)")
    training.add_argument("--label", required=True, help="label column")
    training.add_argument("--model-name", required=True, type=_MODEL_NAME,
                          help="registry model name (a DNS-1123 label)")
    training.add_argument("--problem", default="auto", choices=["auto", "binary", "multiclass", "regression"])
    training.add_argument("--preprocessing", default="", help="Python file defining preprocessing_fn")
    training.add_argument("--trainer", default="", help="Python file defining run_fn")
    training.add_argument("--drop-columns", default="", help="comma-separated columns to leave out")
    training.add_argument("--na-values", default=None, metavar="MARKERS",
                          help="comma-separated CSV cells read as missing, replacing the default markers "
                               "(pandas' set: NA, N/A, NaN, nan, null, NULL, None, #N/A, ...); an empty value "
                               "(--na-values='') means only empty cells are missing; write --na-values=-,? "
                               "when the list starts with a dash")
    training.add_argument("--split-column", default="", metavar="COLUMN",
                          help="a column naming each row's split (train or eval; empty: hash split); not a feature")
    training.add_argument("--schema", default="", help="schema.pbtxt to validate against instead of inferring")
    training.add_argument("--baseline-statistics", default="", help="a previous run's statistics, for drift")
    training.add_argument("--slice-feature", default="", help="raw feature to slice eval metrics by")
    training.add_argument("--threshold", action="append", default=[], metavar="METRIC=VALUE",
                          help="absolute blessing bound, e.g. auc=0.9 (repeatable)")
    training.add_argument("--tolerance", type=_checked(float, _preflight("check_tolerance")),
                          default=defaults.TOLERANCE, help="how far the candidate may fall behind the pushed model")
    training.add_argument("--infra-max-load-seconds", type=_checked(float, _bound("infra_max_load_seconds")),
                          default=defaults.INFRA_MAX_LOAD_SECONDS,
                          help="most seconds the predictor may take to load and warm up the candidate before push")
    training.add_argument("--infra-max-p99-ms", type=_checked(float, _bound("infra_max_p99_ms")),
                          default=defaults.INFRA_MAX_P99_MS,
                          help="most p99 latency (ms) of single-row requests at concurrency "
                               f"{defaults.INFRA_CONCURRENCY} to the served candidate before push")
    training.add_argument("--export-formats", type=_export_formats, default=[], metavar="tflite,onnx",
                          help="edge formats to write into the pushed version (edge/model.*), each only if it "
                               "predicts what the SavedModel does (default: none)")
    training.add_argument("--epochs", type=_checked(int, _preflight("check_positive_int", "epochs")),
                          default=defaults.EPOCHS)
    training.add_argument("--batch-size", type=_checked(int, _preflight("check_positive_int", "batch_size")),
                          default=defaults.BATCH_SIZE)
    training.add_argument("--seed", type=_checked(int, _preflight("check_seed")), default=defaults.SEED)
    training.add_argument("--root", default=None, help="local home (default $PRODML_HOME or ~/.prodml)")
    training.add_argument("--json", action="store_true", help="end with one JSON line on stdout")
    training.add_argument("--verbose", action="store_true", help="show every log line and tracebacks")
    training.set_defaults(handler=_run_training)

    batch = run_what.add_parser("batch-predict", help="score a file with a pushed model (Beam, Spark or in process)",
                                description="Scores every row of CSV, Parquet or gzipped tf.Example files with a "
                                            "version from the local registry and records the run in ML Metadata.")
    batch.add_argument("--data", required=True, help="CSV, Parquet or .tfrecord.gz file, folder or glob")
    batch.add_argument("--model-name", required=True, type=_MODEL_NAME, help="registry model name")
    batch.add_argument("--version", default="latest", help="a version ≥ 1, or latest (default)")
    batch.add_argument("--output", default="", help="folder for the predictions (default: "
                                                    "<root>/predictions/<model-name>/<UTC time>)")
    batch.add_argument("--format", default="parquet", choices=["parquet", "csv", "jsonl"])
    batch.add_argument("--id-columns", default="", help="comma-separated columns to carry (default: all columns)")
    batch.add_argument("--runner", default="beam", choices=["beam", "spark", "local"],
                       help="beam: DirectRunner on every core, or --beam-arg options; spark: --spark-master; "
                            "local: this process")
    batch.add_argument("--beam-arg", action="append", default=[], metavar="OPTION",
                       help="Beam pipeline option, e.g. --beam-arg=--runner=DataflowRunner (repeatable)")
    batch.add_argument("--spark-master", default="local[2]", help="with --runner spark")
    batch.add_argument("--max-error-rate", type=float, default=0.0,
                       help="share of rows allowed to fail scoring (default 0: any bad row fails the run)")
    batch.add_argument("--overwrite", action="store_true", help="replace a non-empty --output")
    batch.add_argument("--root", default=None, help="local home (default $PRODML_HOME or ~/.prodml)")
    batch.add_argument("--json", action="store_true", help="end with one JSON line on stdout")
    batch.add_argument("--verbose", action="store_true", help="show every log line and tracebacks")
    batch.set_defaults(handler=_run_batch_predict)

    mon = commands.add_parser(
        "monitor", help="measure drift, skew and live quality of served traffic; retrain and push when needed",
        description="Runs the monitor on a window of logged traffic of a locally pushed model (drift against its "
                    "training statistics, skew, live quality when labels are given) and prints the decision. "
                    "When it decides to retrain, runs the training pipeline on the new labelled data (with "
                    "--with-old-data, plus the data the served version was trained on, kept out of the eval "
                    "split) with the served version's configuration; evaluate blesses the candidate against the "
                    "served version on the new data only, and push publishes it. A 'prodml serve --poll' server "
                    "then serves it without a restart.")
    mon.add_argument("--model-name", required=True, type=_MODEL_NAME, help="registry model name")
    mon.add_argument("--traffic", required=True, metavar="LOGS",
                     help="request-log file (its rotated files are read too), folder, glob, CloudEvents file or "
                          "batch-prediction output")
    mon.add_argument("--labels", default="", metavar="FILE",
                     help="late labels: CSV or Parquet with the join key and the model's label column")
    mon.add_argument("--join-key", default="", metavar="KEY",
                     help="column joining labels to traffic: a key logged with --log_passthrough, or request_id")
    mon.add_argument("--version", type=_VERSION, default=None, help="the served version (default: the latest)")
    mon.add_argument("--window-start", default="", metavar="TIME",
                     help="only rows logged at or after this ISO time, e.g. 2026-12-01T00:00:00Z (no offset: UTC)")
    mon.add_argument("--window-end", default="", metavar="TIME", help="only rows logged before this ISO time")
    mon.add_argument("--business-metrics", default="", metavar="FILE",
                     help="Python file defining business_metrics(features, predictions, labels) -> dict")
    mon.add_argument("--retrain-data", default="", metavar="FILE",
                     help="new labelled data to retrain on (CSV or Parquet with the raw features and the label); "
                          "default: the logged traffic joined with --labels, each join key once")
    mon.add_argument("--with-old-data", action="store_true",
                     help="retrain on the new data plus the data the served version was trained on (found through "
                          "ML Metadata); the eval split still holds new data only")
    mon.add_argument("--no-retrain", action="store_true", help="report the decision only; never retrain")
    mon.add_argument("--epochs", type=_checked(int, _preflight("check_positive_int", "epochs")), default=None,
                     help="retraining epochs (default: the served version's)")
    mon.add_argument("--batch-size", type=_checked(int, _preflight("check_positive_int", "batch_size")),
                     default=None, help="retraining batch size (default: the served version's)")
    mon.add_argument("--root", default=None, help="local home (default $PRODML_HOME or ~/.prodml)")
    mon.add_argument("--json", action="store_true", help="end with one JSON line on stdout")
    mon.add_argument("--verbose", action="store_true", help="show every log line and tracebacks")
    mon.set_defaults(handler=_monitor)

    comp = commands.add_parser("compile", help="write the pipeline and each component as KFP YAML")
    comp.add_argument("--output-dir", default=None, help="default: the repository's manifests/")
    comp.set_defaults(handler=_compile)

    lin = commands.add_parser("lineage", help="show the lineage of a pushed model from ML Metadata")
    lin.add_argument("--model-name", required=True, type=_MODEL_NAME)
    lin.add_argument("--version", type=_VERSION, default=None, help="a version ≥ 1 (default: the latest version)")
    lin.add_argument("--root", default=None)
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(handler=_lineage)

    gc = commands.add_parser("gc", help="remove what killed runs left behind; record pushes they did not",
                             description="Finds staging folders, dead pushers' claims, incomplete versions, "
                                         ".tmp-* files and pipeline_root folders of killed runs under --root, "
                                         "removes them, and records the lineage of a version whose push was "
                                         "killed after publishing. Anything newer than --older-than is left "
                                         "alone, except claims, staging folders and pushes whose process on "
                                         "this host is known to be dead (run folders record no process: use "
                                         "--older-than 0 when no run is in progress).")
    gc.add_argument("--root", default=None, help="local home (default $PRODML_HOME or ~/.prodml)")
    gc.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    gc.add_argument("--older-than", type=float, default=None, metavar="SECONDS",
                    help="leave alone what changed more recently (default 3600; 0 when no run is in progress)")
    gc.add_argument("--json", action="store_true", help="end with one JSON line on stdout")
    gc.set_defaults(handler=_gc)

    sub = commands.add_parser("submit", help="submit the pipeline to a Kubeflow Pipelines server (kfp.Client)",
                              description="Creates a run, or a recurring run, of the training pipeline (or of "
                                          "--package) on a Kubeflow Pipelines server and prints its URL.")
    sub.add_argument("--host", default=None,
                     help="KFP API endpoint, e.g. http://localhost:8080 (default $KF_PIPELINES_ENDPOINT)")
    sub.add_argument("--existing-token", default=None,
                     help="bearer token for kfp.Client (default $KF_PIPELINES_TOKEN, better: a flag shows in "
                          "shell history); never stored")
    sub.add_argument("--kube-context", default=None, help="kubeconfig context, when no host is given")
    sub.add_argument("--service-account", default=None, metavar="NAME",
                     help="Kubernetes service account the run's pods use, e.g. prodml-deployer from "
                          "manifests/kserve/rbac.yaml so that deploy may apply InferenceServices (default: the "
                          "server's, usually pipeline-runner)")
    sub.add_argument("--namespace", default=None, help="your profile namespace (multi-user Kubeflow)")
    sub.add_argument("--experiment", default="prodml", help="experiment to run in (created if needed)")
    sub.add_argument("--run-name", default=None, help="default: '<pipeline name> <timestamp>'")
    sub.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                     help="pipeline parameter (repeatable); int, float, bool, list and dict values are JSON")
    sub.add_argument("--package", default=None,
                     help="compiled pipeline YAML (default: compile the training pipeline from the code)")
    sub.add_argument("--pipeline", default="training", choices=["training", "batch-prediction", "monitoring"],
                     help="which of prodml's pipelines to compile and submit, without --package")
    sub.add_argument("--recurring", default=None, metavar="CRON",
                     help="create a recurring run on this cron schedule instead, e.g. '0 2 * * *'")
    sub.add_argument("--upload", action="store_true",
                     help="register the pipeline in KFP (new pipeline, or new version) and run that version")
    sub.add_argument("--pipeline-name", default=None, help="with --upload; default: the name in the spec")
    sub.add_argument("--version-name", default=None,
                     help="with --upload, for a new version of an existing pipeline; default: name-timestamp")
    sub.add_argument("--json", action="store_true", help="end with one JSON line on stdout")
    sub.set_defaults(handler=_submit)

    serve = commands.add_parser("serve", help="serve a pushed model with the KServe predictor")
    serve.add_argument("--model-name", required=True, type=_MODEL_NAME)
    serve.add_argument("--root", default=None)
    serve.add_argument("--version", type=_VERSION, default=None, help="pin a version ≥ 1 (default: latest)")
    serve.add_argument("--http-port", type=_PORT, default=8080)
    serve.add_argument("--grpc-port", type=_PORT, default=8081)
    serve.add_argument("--poll", action="store_true", help="pick up newly pushed versions without a restart")
    serve.add_argument("--demo-requests", default="", metavar="CSV",
                       help="start, send one V1 and one V2 prediction made from rows of CSV, and stop")
    serve.add_argument("--log-requests", default="", metavar="FILE|URL",
                       help="log every served row (request id, pass-through keys, features, prediction): a "
                            "JSON-lines file, or the http(s) URL of a CloudEvents sink")
    serve.add_argument("--log-passthrough", default="", metavar="KEY[,KEY...]",
                       help="with --log-requests: request fields that are not features (e.g. trip_id) to log "
                            "with each row, so that late labels can be joined to predictions; null when absent")
    serve.set_defaults(handler=_serve)
    return parser


def _run_training(args) -> int:
    from prodml.pipelines.local import run_training

    summary = run_training(
        data_uri=args.data, label=args.label, model_name=args.model_name, root=args.root,
        verbose=args.verbose, problem_type=args.problem, preprocessing_module=args.preprocessing,
        trainer_module=args.trainer, drop_columns=_split_list(args.drop_columns),
        user_schema_uri=args.schema, baseline_statistics_uri=args.baseline_statistics,
        slice_feature=args.slice_feature, thresholds=_parse_thresholds(args.threshold),
        tolerance=args.tolerance, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        infra_max_load_seconds=args.infra_max_load_seconds, infra_max_p99_ms=args.infra_max_p99_ms,
        export_formats=args.export_formats, split_column=args.split_column,
        **({} if args.na_values is None else {"na_values": _split_list(args.na_values)}))
    print(_human_summary(summary))
    if args.json:
        keys = ("run_id", "metrics", "blessed", "reasons", "infra", "pushed", "metadata_db", "data_version")
        print(json.dumps({k: summary.get(k) for k in keys}, sort_keys=True))
    return 0


def _run_batch_predict(args) -> int:
    from prodml.pipelines.batch_prediction import run_batch_prediction

    result = run_batch_prediction(
        data_uri=args.data, model_name=args.model_name, root=args.root, version=args.version,
        output_uri=args.output, output_format=args.format, id_columns=_split_list(args.id_columns),
        engine=args.runner, beam_args=args.beam_arg, spark_master=args.spark_master,
        max_error_rate=args.max_error_rate, overwrite=args.overwrite)
    print(f"Scored {result['scored']:,} of {result['rows']:,} rows with {args.model_name} "
          f"v{result['model_version']} in {result['seconds']:.1f}s ({result['rows_per_second']:,.0f} rows/s)")
    print(f"Predictions: {result['output_uri']} ({result['output_format']})")
    if result["errors"]:
        print(f"Dead letters: {result['errors']:,} rows in {result['dead_letter_uri']}")
    print(f"Run {result['run_id']} recorded in {result['metadata_db']}")
    if args.json:
        keys = ("run_id", "output_uri", "dead_letter_uri", "rows", "scored", "errors", "model_version",
                "data_sha256", "seconds", "rows_per_second")
        print(json.dumps({k: result[k] for k in keys}, sort_keys=True))
    return 0


def _monitor(args) -> int:
    from prodml.pipelines import retrain

    if args.join_key and not args.labels:
        raise ConfigError("--join-key joins late labels to the traffic: give the labels with --labels FILE too.")
    overrides = {name: value for name, value in (("epochs", args.epochs), ("batch_size", args.batch_size))
                 if value is not None}
    outcome = retrain.monitor(args.model_name, args.traffic, root=args.root, version=args.version or "latest",
                              labels_uri=args.labels, join_key=args.join_key, business_module=args.business_metrics,
                              window_start=args.window_start, window_end=args.window_end)
    outcome.update(prepared=None, retraining=None, not_retrained=retrain.why_not_retrain(
        outcome, args.retrain_data, args.labels, allow_retrain=not args.no_retrain))
    print(_monitor_summary(outcome), flush=True)  # the decision shows before a retraining run starts
    if not outcome["not_retrained"]:
        outcome.update(retrain.retrain_after(
            outcome, args.model_name, args.traffic, root=args.root, labels_uri=args.labels, join_key=args.join_key,
            retrain_data=args.retrain_data, with_old_data=args.with_old_data, overrides=overrides,
            verbose=args.verbose))
        print(_retraining_summary(outcome))
    if args.json:
        result = outcome["monitoring"]
        keys = ("model_name", "version", "rows", "retrain", "reasons", "drift", "drifted_features", "quality",
                "evaluation", "label_match_rate")
        line = {"monitoring": {**{k: result.get(k) for k in keys}, "monitoring_dir": outcome["monitoring_dir"]},
                "not_retrained": outcome["not_retrained"], "retraining": None}
        retraining = outcome["retraining"]
        if retraining is not None:
            line["retraining"] = {**{k: retraining.get(k) for k in ("run_id", "metrics", "blessed", "reasons",
                                                                     "pushed", "data_version")},
                                  "data": outcome["prepared"]}
        print(json.dumps(line, sort_keys=True, default=str))
    return 0


def _monitor_summary(outcome: Dict) -> str:
    """What the monitor found and decided, in a few lines (the full report is report.html)."""
    from prodml.components.common import keys as artifact_keys

    result = outcome["monitoring"]
    lines = ["", f"Monitored {result.get('model_name')} v{result.get('version')}: {result.get('rows', 0):,} rows"]
    drift = result.get("drift") or {}
    drifted = result.get("drifted_features") or []
    if drift:
        lines.append("Drifted features: " + (", ".join(drifted) if drifted else "none"))
        others = sorted((f for f in drift if f not in drifted), key=lambda f: -_largest(drift[f]))
        shown = drifted + others[:max(0, 3 - len(drifted))]  # the drifted ones; at least three rows
        for name in shown:
            scores = ", ".join(f"{k} {v:.3f}" for k, v in sorted(drift[name].items()) if isinstance(v, (int, float)))
            lines.append(f"  {name:<24} {scores}{'  (drifted)' if name in drifted else ''}")
    quality = result.get("quality") or {}
    if quality:
        rate = result.get("label_match_rate")
        lines.append("Live quality" + (f" ({rate:.0%} of the rows found a label)" if isinstance(rate, (int, float))
                                       else "") + "; at evaluation in brackets:")
        evaluation = result.get("evaluation") or {}
        for name, value in sorted(quality.items()):
            then = evaluation.get(name)
            lines.append(f"  {name:<16} {_number(value)}" + (f"  ({_number(then)})" if then is not None else ""))
    lines.append(f"Decision: {'retrain' if result.get('retrain') else 'keep the served version'}")
    lines += [f"  - {reason}" for reason in result.get("reasons", [])]
    lines.append(f"Report: {os.path.join(outcome['monitoring_dir'], artifact_keys.MONITORING_REPORT_HTML)}")
    if result.get("retrain") and outcome["not_retrained"]:
        lines.append(f"Not retrained: {outcome['not_retrained']}.")
    return "\n".join(lines)


def _retraining_summary(outcome: Dict) -> str:
    """The retraining data and the training run's summary."""
    prepared = outcome["prepared"]
    old = (f" and {prepared['old_rows']:,} rows of {prepared['old_source']} (train split only)"
           if prepared["old_rows"] else "")
    lines = [f"Retrained on {prepared['new_rows']:,} new labelled rows{old}: {prepared['path']}",
             "(evaluated and compared with the served version on new rows only)", _human_summary(outcome["retraining"])]
    if outcome["retraining"].get("pushed"):
        lines.append("A server started with --poll serves the new version at its next check.")
    return "\n".join(lines)


def _number(value: Any) -> str:
    """A metric for a person: counts as whole numbers, scores with four decimals."""
    if isinstance(value, (int, float)) and float(value).is_integer() and abs(value) >= 2:
        return f"{int(value):,}"
    return f"{value:.4f}" if isinstance(value, (int, float)) else str(value)


def _largest(scores: Dict) -> float:
    return max((v for v in scores.values() if isinstance(v, (int, float))), default=0.0)


def _human_summary(summary: Dict) -> str:
    lines = ["", f"Run {summary['run_id']}", "Eval metrics:"]
    lines += [f"  {name:<16} {value:.4f}" if isinstance(value, float) else f"  {name:<16} {value}"
              for name, value in sorted(summary["metrics"].items())]
    lines.append(f"Blessed: {'yes' if summary['blessed'] else 'no'}")
    lines += [f"  - {reason}" for reason in summary.get("reasons", [])]
    lines += _infra_summary(summary.get("infra"))
    pushed = summary.get("pushed")
    lines.append(f"Pushed: version {pushed['version']} at {pushed['uri']}" if pushed
                 else "Pushed: nothing (the registry is unchanged)")
    lines.append(f"Data: sha256 {summary['data_version']['sha256']} ({summary['data_version']['source_uri']})")
    lines.append(f"Metadata: {summary['metadata_db']}")
    lines.append(f"Log: {summary['log_file']}")
    return "\n".join(lines)


def _export_formats(text: str) -> List[str]:
    """``--export-formats tflite,onnx``: known formats, in order, once each (argparse: exit 2 otherwise)."""
    from prodml.components.export.executor import check_formats

    try:
        return check_formats(_split_list(text))
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def _infra_summary(infra: Optional[Dict]) -> List[str]:
    """The infra blessing and its figures (ready time, latency, prediction difference)."""
    if not infra:
        return []
    figures = infra.get("figures", {})
    lines = [f"Infra-validated (served by KServe): {'yes' if infra['blessed'] else 'no'}"]
    measured = []
    if figures.get("ready_seconds") is not None:
        measured.append(f"ready in {figures['ready_seconds']:.1f}s")
    if figures.get("p99_ms") is not None:
        measured.append(f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms at concurrency "
                        f"{figures.get('concurrency')}")
    gaps = [g for g in (figures.get("max_difference") or {}).values() if g is not None]
    if gaps:
        measured.append(f"largest prediction difference {max(gaps):.2g}")
    if measured:
        lines.append("  " + "; ".join(measured))
    if not infra["blessed"]:
        lines += [f"  - {reason}" for reason in infra.get("reasons", [])]
    return lines


def _compile(args) -> int:
    from prodml.pipelines.compile import REPO_MANIFESTS, compile_all

    for path in compile_all(args.output_dir or REPO_MANIFESTS):
        print(path)
    return 0


def _lineage(args) -> int:
    from prodml.pipelines.lineage_report import format_lineage, model_lineage
    from prodml.pipelines.local import prepare_root

    root = prepare_root(args.root)
    report = model_lineage(root.metadata_connection, root.registry, args.model_name, args.version)
    print(json.dumps(report, default=str) if args.json else format_lineage(report))
    return 0


def _gc(args) -> int:
    import dataclasses

    from prodml.pipelines.gc import DEFAULT_OLDER_THAN, collect_garbage, format_findings

    older_than = DEFAULT_OLDER_THAN if args.older_than is None else args.older_than
    findings = collect_garbage(args.root, dry_run=args.dry_run, older_than=older_than)
    print(format_findings(findings, args.dry_run))
    if args.json:
        print(json.dumps([dataclasses.asdict(f) for f in findings], sort_keys=True))
    return 0


def _submit(args) -> int:
    import dataclasses
    import tempfile

    from prodml.pipelines import submit

    if (args.pipeline_name or args.version_name) and not args.upload:
        raise ConfigError("--pipeline-name and --version-name name an upload: add --upload.")
    submit.check_service_account(args.service_account)
    with tempfile.TemporaryDirectory(prefix="prodml-submit-") as folder:
        package = args.package or submit.default_package(folder, args.pipeline)
        arguments = submit.parse_arguments(args.param, submit.pipeline_parameters(package))
        if not args.package and args.pipeline in ("training", "monitoring"):  # their training values are known here
            from prodml.pipelines import preflight

            preflight.check_values(arguments)
        with submit.redacted(args.existing_token or os.environ.get(submit.TOKEN_ENV)) as redact:
            client = submit.connect(host=args.host, existing_token=args.existing_token, namespace=args.namespace,
                                    kube_context=args.kube_context)
            result = submit.submit(client, package, arguments, namespace=args.namespace,
                                   experiment=args.experiment, run_name=args.run_name, cron=args.recurring,
                                   upload=args.upload, pipeline_name=args.pipeline_name,
                                   version_name=args.version_name, host=args.host,
                                   service_account=args.service_account)
    lines = []
    if result.pipeline_url:
        lines.append(f"Pipeline version: {result.pipeline_url}")
    if result.kind == "recurring_run":
        lines.append(f"Recurring run '{result.name}' ({result.cron}): {result.url}")
    else:
        lines.append(f"Run '{result.name}': {result.url}")
    if args.json:
        lines.append(json.dumps(dataclasses.asdict(result), sort_keys=True))
    print(redact("\n".join(lines)))
    return 0


def _serve(args) -> int:
    import signal

    from prodml.pipelines.local import prepare_root

    root = prepare_root(args.root)
    python = serving_python()
    command = [python, "-m", "prodml.serving", "--model_name", args.model_name, "--registry", root.registry,
               "--http_port", str(args.http_port), "--grpc_port", str(args.grpc_port)]
    if args.version is not None:
        command += ["--version", str(args.version)]
    if args.poll:
        command += ["--poll", "2"]
    if args.log_requests:
        command += ["--log_requests", args.log_requests]
    if args.log_passthrough:
        command += ["--log_passthrough", args.log_passthrough]
    if args.demo_requests:
        command = [python, "-m", "prodml.serving.demo", "--rows", args.demo_requests, "--"] + command[3:]

    def stop_with_parent():  # Linux: the server gets SIGTERM if this process dies without forwarding
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    # The server has its own process group, so a terminal's Ctrl-C reaches it once, through this
    # process: SIGTERM and SIGINT are forwarded, then the server's graceful shutdown is awaited.
    server = subprocess.Popen(command, process_group=0, preexec_fn=stop_with_parent)
    received = []

    def forward(signum, _frame):
        received.append(signum)
        if server.poll() is None:
            server.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        code = server.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_INTERRUPTED if signal.SIGINT in received else code


def serving_python() -> str:
    """The serving environment's interpreter: $PRODML_SERVING_PYTHON or the repository's .venv/serving."""
    explicit = os.environ.get(SERVING_PYTHON_ENV)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    python = explicit or os.path.join(repo, ".venv", "serving", "bin", "python")
    if not os.path.exists(python):
        raise ConfigError(f"The serving environment is missing ({python}). Run 'make setup' in the repository, "
                          f"or set {SERVING_PYTHON_ENV} to a Python with kserve installed.")
    return python


def _split_list(value: str) -> List[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _parse_thresholds(items: List[str]) -> Dict[str, float]:
    thresholds = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            thresholds[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--threshold {item!r} is not METRIC=NUMBER, e.g. --threshold auc=0.9.")
    return thresholds


if __name__ == "__main__":
    sys.exit(main())
