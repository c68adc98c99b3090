"""What a million images cost the pipeline on AWS, per service, at list prices: arithmetic, no AWS calls.

Each stage is the requests and compute the code makes per image (counted from what the handlers and the
state machines call, and kept beside each figure here), times the list price. Durations are measured
ones handed in by the benchmark (or the figures quoted in ``MEASURED``), sized by the functions' memory in
template.yaml. Storage, data transfer, KMS (the bucket key makes its requests per object batch, not per
object), CloudWatch and the training instance are left out: they depend on how long data is kept and on the
instance, not on the pipeline's design.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Prices:
    """US East (N. Virginia) list prices in USD: Lambda x86, S3 Standard, DynamoDB on demand."""

    lambda_gb_second: float = 0.0000166667
    lambda_request: float = 0.20 / 1e6
    sfn_standard_transition: float = 0.025 / 1000
    s3_write_request: float = 0.005 / 1000  # PUT, COPY, POST, LIST
    s3_read_request: float = 0.0004 / 1000  # GET, HEAD and the rest
    dynamodb_write_unit: float = 0.625 / 1e6
    dynamodb_read_unit: float = 0.125 / 1e6
    sqs_request: float = 0.40 / 1e6


# Per-image durations measured on this project's benchmarks when the caller has none of its own (seconds).
MEASURED = {
    # benchmarks/ingest_bench.py: 16.9 ms an image on moto, most of it the emulated plumbing; S3 on AWS is
    # slower than in-process moto, so twice that is the estimate.
    "annotate_s_per_image": 0.034,
    # benchmarks/drop_bench.py: 53-91 images/s per warm instance, batches of 10.
    "inference_s_per_image": 0.019,
    # benchmarks/scale_bench.py: the streamed split of 1,000,000 catalogued images.
    "split_s_per_million": 29.2,
}

CATALOG_ITEM_BYTES = 330  # one catalog record (harness.benchmarking.scale)
SQS_BATCH = 10  # BatchSize of the annotate and inference event sources
RECEIVES_PER_BATCH = 1.5  # long polls that come back empty or partly filled, on a steady stream


@dataclass
class Bill:
    """USD per service for one stage."""

    usd: dict[str, float] = field(default_factory=dict)

    def add(self, service: str, amount: float) -> None:
        self.usd[service] = self.usd.get(service, 0.0) + amount

    def rounded(self) -> dict[str, float]:
        return {service: round(amount, 2) for service, amount in sorted(self.usd.items())}


def _lambda(bill: Bill, prices: Prices, invocations: float, seconds: float, memory_mb: int) -> None:
    bill.add(
        "lambda", invocations * prices.lambda_request + seconds * memory_mb / 1024 * prices.lambda_gb_second
    )


def _sqs_consumed(bill: Bill, prices: Prices, messages: float) -> None:
    """Messages sent by S3, then received and deleted in batches by an event source mapping."""
    batches = messages / SQS_BATCH
    bill.add("sqs", (messages + batches * RECEIVES_PER_BATCH + batches) * prices.sqs_request)


def import_and_train(
    images: int,
    memory_mb: dict[str, int],
    prices: Prices = Prices(),
    *,
    bulk_batch: int = 200,
    shard_bytes: int = 150 * 2**20,
    image_bytes: int = 200_000,
    bulk_s_per_object: float | None = None,
    pack_s_per_image: float | None = None,
    split_s_per_million: float | None = None,
    annotate_s_per_image: float | None = None,
) -> dict[str, dict[str, float]]:
    """The road from a folder-per-label tree in another bucket to a trained-on manifest version."""
    stages: dict[str, Bill] = {}

    # Bulk import: one LIST a 1,000 keys (the ItemReader), a HEAD of the destination and a COPY per image;
    # one child execution per batch (its Task state and the end: 2 transitions), plus the map's own few.
    bulk = stages["bulk_import"] = Bill()
    batches = math.ceil(images / bulk_batch)
    bulk.add("s3", images / 1000 * prices.s3_write_request)
    bulk.add("s3", images * (prices.s3_read_request + prices.s3_write_request))
    bulk.add("step_functions", (batches * 2 + 10) * prices.sfn_standard_transition)
    per_object = bulk_s_per_object if bulk_s_per_object is not None else 0.02
    _lambda(bulk, prices, batches, images * per_object, memory_mb.get("bulk_copy", 512))

    # Annotate: S3 -> SQS -> the function in batches of 10: a GET of the image, a conditional PutItem (one
    # write unit: the item is under 1 KB) per image.
    annotate = stages["annotate"] = Bill()
    _sqs_consumed(annotate, prices, images)
    annotate.add("s3", images * prices.s3_read_request)
    annotate.add("dynamodb", images * prices.dynamodb_write_unit)
    per_image = annotate_s_per_image if annotate_s_per_image is not None else MEASURED["annotate_s_per_image"]
    _lambda(annotate, prices, images / SQS_BATCH, images * per_image, memory_mb["annotate"])

    # Split: the dataset's partition read by Query pages (eventually consistent: half a unit per 4 KB);
    # the manifests are a handful of multipart uploads.
    split = stages["split"] = Bill()
    split.add("dynamodb", math.ceil(images * CATALOG_ITEM_BYTES / 4096) * 0.5 * prices.dynamodb_read_unit)
    split.add("s3", 60 * prices.s3_write_request)
    per_million = split_s_per_million if split_s_per_million is not None else MEASURED["split_s_per_million"]
    _lambda(split, prices, 1, per_million * images / 1e6, memory_mb["split"])

    # Packing shards: a GET per image, a multipart upload per shard; one map child per shard.
    pack = stages["pack_shards"] = Bill()
    shards = math.ceil(images * image_bytes / shard_bytes)
    pack.add("s3", images * prices.s3_read_request + shards * 4 * prices.s3_write_request)
    pack.add("step_functions", (shards * 2 + 10) * prices.sfn_standard_transition)
    per_pack = pack_s_per_image if pack_s_per_image is not None else 0.005
    _lambda(pack, prices, shards, images * per_pack, memory_mb.get("pack", 1024))

    # The training workflow itself: about 15 transitions a run, whatever its size.
    stages["workflow"] = Bill({"step_functions": 15 * prices.sfn_standard_transition})
    return _with_total(stages)


def drop_to_label(
    images: int,
    memory_mb: dict[str, int],
    prices: Prices = Prices(),
    *,
    inference_s_per_image: float | None = None,
    review_share: float = 0.1,
) -> dict[str, dict[str, float]]:
    """Images dropped under incoming/unlabeled/ and labeled: the user's PUT, SQS, the inference function,
    a GET of the image, the result JSON and the batch's line in prediction_output.txt, a review copy for
    the share that goes to a clinician."""
    bill = Bill()
    bill.add("s3", images * (prices.s3_write_request + prices.s3_read_request))
    bill.add("s3", images * 2 * prices.s3_write_request + images / SQS_BATCH * prices.s3_write_request)
    bill.add("s3", images * review_share * 2 * prices.s3_write_request)
    _sqs_consumed(bill, prices, images)
    per_image = (
        inference_s_per_image if inference_s_per_image is not None else MEASURED["inference_s_per_image"]
    )
    _lambda(bill, prices, images / SQS_BATCH, images * per_image, memory_mb["inference"])
    return _with_total({"drop_to_label": bill})


def _with_total(stages: dict[str, Bill]) -> dict[str, dict[str, float]]:
    total = Bill()
    for bill in stages.values():
        for service, amount in bill.usd.items():
            total.add(service, amount)
    out = {name: bill.rounded() for name, bill in stages.items()}
    out["total"] = total.rounded()
    out["total"]["all"] = round(sum(total.usd.values()), 2)
    return out


def function_memory(template: dict[str, Any]) -> dict[str, int]:
    """MemorySize of each function, keyed by its lower-case name without ``Function``."""
    default = int(template.get("Globals", {}).get("Function", {}).get("MemorySize", 128))
    out = {}
    for name, resource in template["Resources"].items():
        if resource.get("Type") == "AWS::Serverless::Function":
            key = name.removesuffix("Function")
            key = "".join(("_" + c.lower()) if c.isupper() else c for c in key).lstrip("_")
            out[key] = int(resource.get("Properties", {}).get("MemorySize", default))
    return out
