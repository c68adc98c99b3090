"""Benchmark: what a silent trial adds to the API's warm latency, production alone and with a candidate.

    python benchmarks/trial_bench.py --model DIR [--candidate DIR] [--images DIR] [--repeat 5]

Three warm inference handlers (functions/inference/app.py, one "container" each) on an emulated S3 (moto,
in-process), pinned to one core, answer the same ``POST /predict`` requests (full-resolution X-rays) in
turn, request by request, so all three see the same machine:

* ``champion``: production alone (no candidate in the registry);
* ``trial``: production and a candidate at the default share (CandidateTrialShare, 0.1);
* ``trial_every``: the candidate on every request (share 1), the cost of one silent run.

Each request's wall time is the whole handler call, the silent run and the pair writes (every 25 pairs,
to moto: a real S3 PUT takes longer, once per 25 sampled requests) included. The candidate is
``--candidate`` or, by default, the production model again under another version (the same cost). One
JSON object; ``target`` checks that the trial adds at most 10 % to the champion's warm p50.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MEDIMAGE_SHARED_DATA", REPO.parent / "shared" / "data"))
BUCKET = "medimage-trial-bench"
DATASET = "chestxray2017"
TARGET_P50_RATIO = 1.10


def upload_model(s3: Any, model_dir: Path, version: str) -> dict[str, Any]:
    meta = json.loads((model_dir / "model.json").read_text())
    served = meta["model_file"]
    prefix = f"models/{DATASET}/{version}/"
    for name in (served, "model.json", "labels.txt"):
        s3.put_object(Bucket=BUCKET, Key=prefix + name, Body=(model_dir / name).read_bytes())
    sha = hashlib.sha256((model_dir / served).read_bytes()).hexdigest()
    return {"version": version, "model_key": prefix + served, "model_sha256": sha, "promoted_at": "now"}


def write_pointer(s3: Any, champion: dict[str, Any], candidate: dict[str, Any] | None) -> None:
    pointer = {"dataset": DATASET, **champion, "metrics": {}, "history": [champion]}
    if candidate is not None:
        pointer["candidate"] = {**candidate, "champion": champion["version"]}
    s3.put_object(Bucket=BUCKET, Key=f"models/{DATASET}/production.json", Body=json.dumps(pointer))


def api_event(data: bytes) -> dict[str, Any]:
    return {
        "httpMethod": "POST",
        "path": "/predict",
        "headers": {"Content-Type": "image/jpeg"},
        "queryStringParameters": None,
        "body": base64.b64encode(data).decode("ascii"),
        "isBase64Encoded": True,
        "requestContext": {"requestId": "bench"},
    }


def summary(walls_ms: list[float]) -> dict[str, float]:
    ordered = sorted(walls_ms)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, type=Path, help="production's model directory")
    parser.add_argument("--candidate", type=Path, help="the candidate's model directory (default: --model)")
    parser.add_argument("--images", type=Path, default=SHARED / "chestxray2017-val-fullres")
    parser.add_argument("--repeat", type=int, default=5, help="timed passes over the images")
    args = parser.parse_args(argv)
    images = [p.read_bytes() for p in sorted(args.images.rglob("*.jpeg"))]
    if not images:
        print(json.dumps({"skipped": f"no JPEG X-rays under {args.images}"}))
        return 0
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DATA_BUCKET": BUCKET,
            "DATASETS": DATASET,
            "DEFAULT_DATASET": DATASET,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "MODEL_CHECK_INTERVAL_S": "3600",
            "MODEL_CACHE_DIR": f"/tmp/medimage-trial-bench-{os.getpid()}",
        }
    )
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)  # the handler's log lines go to stderr; stdout keeps the JSON
    import boto3
    from moto import mock_aws

    from medimage.inference.settings import DEFAULT_CANDIDATE_SHARE
    from medimage.local.functions import LambdaContext, load_handler_module

    configs = {"champion": None, "trial": DEFAULT_CANDIDATE_SHARE, "trial_every": 1.0}
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        champion = upload_model(s3, args.model, "champion")
        candidate = upload_model(s3, args.candidate or args.model, "candidate")
        handlers: dict[str, Any] = {}
        for name, share in configs.items():
            # Each handler reads the pointer once (check interval 1 h) and keeps what it found.
            write_pointer(s3, champion, None if share is None else candidate)
            os.environ["CANDIDATE_SHARE"] = str(share or 0)
            handler = load_handler_module()
            handler.lambda_handler(api_event(images[0]), LambdaContext())  # loads production
            if share is not None:
                assert handler.service().cache.candidate(DATASET) is not None  # loads the candidate
            handlers[name] = handler
        walls: dict[str, list[float]] = {name: [] for name in configs}
        order = list(configs)
        for n in range(args.repeat * len(images)):
            event = api_event(images[n % len(images)])
            for name in order[n % 3 :] + order[: n % 3]:  # each handler goes first in turn
                start = time.perf_counter()
                response = handlers[name].lambda_handler(event, LambdaContext())
                walls[name].append((time.perf_counter() - start) * 1000)
                if response["statusCode"] != 200:
                    raise RuntimeError(f"{name}: {response['body']}")
                if "candidate" in response["body"]:
                    raise RuntimeError(f"{name}: the candidate reached an answer")
        pairs = {
            name: len(h.trial().written) if h.trial.cache_info().currsize else 0
            for name, h in handlers.items()
        }
    figures = {name: summary(w) for name, w in walls.items()}
    ratio = figures["trial"]["p50_ms"] / figures["champion"]["p50_ms"]
    sys.stdout.flush()
    os.dup2(result_fd, 1)
    report = {
        "model_file": json.loads((args.model / "model.json").read_text())["model_file"],
        "requests_per_handler": len(walls["champion"]),
        "default_share": DEFAULT_CANDIDATE_SHARE,
        "warm": figures,
        "trial_p50_ratio": round(ratio, 3),
        "trial_mean_ratio": round(figures["trial"]["mean_ms"] / figures["champion"]["mean_ms"], 3),
        "silent_run_ms_p50": round(figures["trial_every"]["p50_ms"] - figures["champion"]["p50_ms"], 2),
        "pair_objects_written": pairs,
        "target": {
            "trial_p50_ratio_max": TARGET_P50_RATIO,
            "met": ratio <= TARGET_P50_RATIO,
        },
        "images": str(args.images),
        "cpu_cores": 1,
        "s3": "moto, in-process (no network round trips)",
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
