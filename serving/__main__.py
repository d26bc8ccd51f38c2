"""``python -m prodml.serving``: serve a pushed prodml model with KServe (V1/V2 REST, V2 gRPC).

Example::

    python -m prodml.serving --model_name chicago-taxi --registry .prodml-demo/registry --poll 10

``--registry ROOT`` serves ``ROOT/<model_name>/<version>/``; ``--model_dir DIR`` serves one model's
folder of versions ``DIR/<version>/`` (KServe's ``/mnt/models``); ``--saved_model DIR`` serves one
SavedModel folder. The flag says which; nothing is guessed from what is on disk.

Takes every flag of ``kserve.ModelServer`` (``--http_port``, ``--grpc_port``, ``--enable_grpc``,
``--max_threads``, ...) plus the prodml flags below.
"""

import argparse
import os
import sys
from typing import List, Optional

from prodml.components.common.errors import ProdmlError
from prodml.components.common.logs import get_logger, silence_tensorflow

logger = get_logger("serving")

# After the server stops, how long to wait for a version still loading before exiting anyway.
LOADER_EXIT_WAIT_SECONDS = 5.0


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server parser plus the prodml predictor's flags."""
    from kserve.model_server import parser as kserve_parser

    from prodml.serving.request_log import DEFAULT_BACKUP_COUNT, DEFAULT_MAX_BYTES
    from prodml.serving.server import DEFAULT_MAX_REQUEST_BYTES

    parser = argparse.ArgumentParser(
        prog="python -m prodml.serving", parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve a pushed prodml model: raw features in, predictions out.")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--registry", default=None,
                       help="A registry root: the versions are <registry>/<model_name>/<version>/ (what prodml "
                            "push writes). Local path or gs://, s3:// URI.")
    where.add_argument("--model_dir", default=None,
                       help="One model's folder of integer versions <model_dir>/<version>/ (what KServe mounts at "
                            "/mnt/models). Local path or gs://, s3:// URI.")
    where.add_argument("--saved_model", default=None,
                       help="One SavedModel folder, served as its only version (its folder name if an integer, "
                            "else 1).")
    parser.add_argument("--version", type=int, default=None,
                        help="Serve this version only. Default: the latest version.")
    parser.add_argument("--poll", type=float, default=0.0,
                        help="Seconds between checks for a newer version, served without a restart (0: never).")
    parser.add_argument("--max_batch_size", type=int, default=64,
                        help="Most rows in one model call when concurrent requests are batched together.")
    parser.add_argument("--max_batch_wait_ms", type=float, default=2.0,
                        help="Under load, longest a forming batch waits for more requests while they keep "
                             "arriving. A lone request is served at once.")
    parser.add_argument("--log_requests", default=None,
                        help="Log every served row: a JSON-lines file path, or an http(s) URL of a "
                             "CloudEvents sink (KServe inference logger format).")
    parser.add_argument("--log_passthrough", "--log-passthrough", default=None, metavar="KEY[,KEY...]",
                        help="With --log_requests: request fields that are not model features (an id column "
                             "such as trip_id: an extra field of each V1 instance, or an extra V2 input) to "
                             "write into each row's log record under \"passthrough\", so that labels arriving "
                             "later can be joined to the prediction. A named key a request does not carry is "
                             "logged as null; these keys are never fed to the model.")
    parser.add_argument("--log_max_bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help="With a --log_requests file: rotate it when it would grow past this many bytes "
                             "(0: never).")
    parser.add_argument("--log_backup_count", type=int, default=DEFAULT_BACKUP_COUNT,
                        help="With a --log_requests file: rotated files kept (<file>.1 is the newest).")
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="Larger REST bodies get HTTP 413, larger gRPC messages RESOURCE_EXHAUSTED.")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    silence_tensorflow()
    args = build_parser().parse_args(argv)

    from prodml.serving.model_source import ModelSource
    from prodml.serving.predictor import ProdmlModel
    from prodml.serving.request_ids import parse_names
    from prodml.serving.request_log import RequestLogger
    from prodml.serving.server import ProdmlModelServer

    try:
        _check_numbers(args)
        passthrough = parse_names(args.log_passthrough)
        if passthrough and not args.log_requests:
            logger.warning("--log_passthrough without --log_requests: nothing is logged, so the pass-through "
                           "keys are ignored")
        source = ModelSource.from_flags(args.model_name, args.registry, args.model_dir, args.saved_model)
        model = ProdmlModel(args.model_name, source, version=args.version, poll_seconds=args.poll,
                            max_batch_size=args.max_batch_size, max_batch_wait_ms=args.max_batch_wait_ms,
                            passthrough=passthrough)
        model.check_source()
        if passthrough:
            _check_passthrough(model, source, args.version)
        if args.log_requests:
            model.request_log = RequestLogger(args.log_requests, args.model_name, max_bytes=args.log_max_bytes,
                                              backup_count=args.log_backup_count)
    except ProdmlError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    server = ProdmlModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers, enable_grpc=args.enable_grpc,
        event_loop=args.event_loop, timeout_keep_alive=args.timeout_keep_alive,
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        max_request_bytes=args.max_request_bytes)
    logger.info("serving model '%s' from %s on http :%d%s", args.model_name, source.where, args.http_port,
                f", grpc :{args.grpc_port}" if args.enable_grpc else "")
    server.start([model])
    code = 0
    if model.failure:
        print(f"error: {model.failure}", file=sys.stderr)
        code = 1
    if not model.versions_manager.join(LOADER_EXIT_WAIT_SECONDS):
        # Stopped while a version was still loading (a SIGTERM during start-up): TensorFlow's
        # native code cannot be interrupted, and tearing the interpreter down under it crashes.
        from prodml.serving.quiet_tf import restore_stderr

        restore_stderr()
        logger.info("model %s: exiting while a version was still loading", args.model_name)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _check_passthrough(model, source, pinned: Optional[int]) -> None:
    """ConfigError, before anything loads, when a --log_passthrough key is a feature of the version
    to serve (from its prodml_model.json; each version is checked again by its signature when loaded)."""
    from prodml.components.common.artifacts import ModelInfo

    version = pinned if pinned is not None else source.latest()
    if version is None:
        return
    path = source.path(version)
    if ModelInfo.exists(path):
        model.passthrough.check_features(ModelInfo.read(path).raw_features, f"{path} (version {version})")


def _check_numbers(args) -> None:
    """Flags that argparse types cannot check alone; ConfigError names the flag."""
    from prodml.components.common.errors import ConfigError

    if args.version is not None and args.version < 1:
        raise ConfigError(f"--version {args.version} is not a model version: versions are numbered 1, 2, 3, ... "
                          "Give one of those, or leave --version out for the latest.")
    for flag, value in (("--poll", args.poll), ("--max_batch_wait_ms", args.max_batch_wait_ms),
                        ("--log_max_bytes", args.log_max_bytes), ("--log_backup_count", args.log_backup_count)):
        if value < 0:
            raise ConfigError(f"{flag} {value} is negative: give 0 or more.")
    for flag, value in (("--max_batch_size", args.max_batch_size), ("--max_request_bytes", args.max_request_bytes)):
        if value < 1:
            raise ConfigError(f"{flag} {value} must be at least 1.")


if __name__ == "__main__":
    sys.exit(main())
