"""``python -m prodml.serving``: serve a pushed prodml model with KServe (V1/V2 REST, V2 gRPC).

Example::

    python -m prodml.serving --model_name chicago-taxi --model_dir .prodml-demo/registry --poll 10

Takes every flag of ``kserve.ModelServer`` (``--http_port``, ``--grpc_port``, ``--enable_grpc``,
``--max_threads``, ...) plus the prodml flags below.
"""

import argparse
import sys
from typing import List, Optional

from prodml.components.common.errors import ProdmlError
from prodml.components.common.logs import get_logger, silence_tensorflow

logger = get_logger("serving")


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server parser plus the prodml predictor's flags."""
    from kserve.model_server import parser as kserve_parser

    from prodml.serving.server import DEFAULT_MAX_REQUEST_BYTES

    parser = argparse.ArgumentParser(
        prog="python -m prodml.serving", parents=[kserve_parser],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Serve a pushed prodml model: raw features in, predictions out.")
    parser.add_argument("--model_dir", required=True,
                        help="The registry root (<model_dir>/<model_name>/<version>/), one model's folder of "
                             "integer versions, or a single SavedModel folder. Local path or gs://, s3:// URI.")
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
    parser.add_argument("--max_request_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                        help="Larger REST bodies get HTTP 413, larger gRPC messages RESOURCE_EXHAUSTED.")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    silence_tensorflow()
    args = build_parser().parse_args(argv)

    from prodml.serving.predictor import ProdmlModel
    from prodml.serving.server import ProdmlModelServer

    try:
        model = ProdmlModel(args.model_name, args.model_dir, version=args.version, poll_seconds=args.poll,
                            max_batch_size=args.max_batch_size, max_batch_wait_ms=args.max_batch_wait_ms,
                            log_requests=args.log_requests)
        model.check_source()
    except ProdmlError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    server = ProdmlModelServer(
        http_port=args.http_port, grpc_port=args.grpc_port, max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers, enable_grpc=args.enable_grpc,
        event_loop=args.event_loop, timeout_keep_alive=args.timeout_keep_alive,
        ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile,
        max_request_bytes=args.max_request_bytes)
    logger.info("serving model '%s' from %s on http :%d%s", args.model_name, model.source.where, args.http_port,
                f", grpc :{args.grpc_port}" if args.enable_grpc else "")
    server.start([model])
    if model.failure:
        print(f"error: {model.failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
