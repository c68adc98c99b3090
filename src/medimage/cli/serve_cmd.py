"""`medimage serve`: the inference API on this machine, through the real Lambda handler.

Each HTTP request becomes an API Gateway REST proxy event (binary bodies base64-encoded exactly as the
deployed API's binary media types make them), is passed to ``functions/inference/app.py``'s
`lambda_handler`, and the proxy response is written back. What works here works behind API Gateway.
"""

from __future__ import annotations

import argparse
import os
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

from medimage.local.apigateway import ProxyInvoke, make_http_handler
from medimage.local.functions import LambdaContext, load_handler_module
from medimage.local.log_format import apply_json_log_format


def module_invoke(module: ModuleType) -> ProxyInvoke:
    """The handler module's ``lambda_handler`` called as Lambda calls it for an API Gateway event: one
    invocation at a time, as in one warm container (the model interpreter is not shared between threads)."""
    lock = threading.Lock()

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        with lock:
            return module.lambda_handler(
                event, LambdaContext(aws_request_id=event["requestContext"]["requestId"])
            )

    return invoke


class ServeHTTPServer(ThreadingHTTPServer):
    """One thread per connection, so a slow or stalled client holds only its own thread (reading and
    writing overlap; the handler still runs one request at a time), and a listen backlog that takes a
    burst of clients instead of resetting connections beyond the default five."""

    daemon_threads = True
    request_queue_size = 128


NAME = "serve"
HELP = "serve the inference API locally through the real Lambda handler"
DESCRIPTION = (
    "Serve POST /predict, STOW-RS POST /studies and the review worklist GET|POST /review... (both with a "
    "data bucket), GET /health and the page at GET / on this machine. Each request "
    "is turned into an API Gateway proxy event for functions/inference/app.py.\n\nexamples:\n"
    "  medimage serve --model out/model/model.tflite --port 8080\n"
    "  medimage serve --model out/model --review-threshold 0.9   # review below 90 % confidence\n"
    "  DATA_BUCKET=my-bucket medimage serve --dataset chestxray2017   # the production model in S3"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a .tflite file (model.json and labels.txt beside it) to serve")
    parser.add_argument(
        "--dataset",
        help="the dataset served (with --model: the name it is served under; "
        "without: its production model is read from --bucket)",
    )
    parser.add_argument(
        "--bucket", default=os.environ.get("DATA_BUCKET"), help="data bucket (env DATA_BUCKET)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument(
        "--review-threshold",
        metavar="P",
        help="confidence below which an answer needs review, as the template's ReviewThreshold "
        "(default: $REVIEW_THRESHOLD, else the model's model.json review.threshold)",
    )


def configure_env(
    model: str | None,
    dataset: str | None,
    bucket: str | None,
    review_threshold: str | None = None,
) -> None:
    """The environment the handler reads, as template.yaml sets it for the deployed function."""
    if review_threshold is not None:
        from medimage.inference.settings import parse_review_threshold

        parse_review_threshold(review_threshold)  # a bad value fails here, not at the first request
        os.environ["REVIEW_THRESHOLD"] = review_threshold
    if model:
        from medimage.inference.model import read_model_json

        path = Path(model)
        meta = read_model_json(path if path.is_dir() else path.parent)
        dataset = dataset or str(meta.get("dataset") or "local")
        os.environ["MEDIMAGE_MODEL"] = str(path.resolve())
    elif dataset:
        if not bucket:
            raise ValueError("--dataset without --model reads the production model from S3: give --bucket")
        os.environ["DATA_BUCKET"] = bucket
        os.environ.pop("MEDIMAGE_MODEL", None)
    else:
        raise ValueError("give --model FILE or --dataset NAME")
    os.environ["DATASETS"] = os.environ["DEFAULT_DATASET"] = str(dataset)
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "inference")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("MODEL_CHECK_INTERVAL_S", "5")
    os.environ.setdefault("AWS_LAMBDA_LOG_LEVEL", "INFO")


def run(args: argparse.Namespace) -> int:
    configure_env(args.model, args.dataset, args.bucket, args.review_threshold)
    module = load_handler_module()
    # One JSON line per prediction on stdout, as the template's LoggingConfig has Lambda write them.
    apply_json_log_format(module, os.environ["AWS_LAMBDA_LOG_LEVEL"])
    server = ServeHTTPServer((args.host, args.port), make_http_handler(module_invoke(module)))
    host, port = server.server_address[:2]
    print(f"serving {os.environ['DEFAULT_DATASET']} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
