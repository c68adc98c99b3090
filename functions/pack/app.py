"""Pack Lambda: one item of the training workflow's packing step (a Distributed Map over ``shards.json``).
Thin: the logic is medimage.services.pack.

Input: ``{"bucket", "manifest_prefix", "shard"}`` (``shard``: one entry of the version's ``shards.json``).
Output: ``{"key", "status", "images", "bytes"}`` (``status``: written, or exists when the shard was already
packed). An image the manifest lists but the bucket lacks fails the item (``ShardSourceMissing``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from medimage.adapters.s3 import S3ObjectStore
from medimage.adapters.transient import transient_aws_errors
from medimage.services.pack import PackRequest, ShardPacker

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = PackRequest.from_event(event)
    with transient_aws_errors(f"packing {request.shard.key}"):
        result = ShardPacker(S3ObjectStore(request.bucket)).pack(request.manifest_prefix, request.shard)
    logger.info("shard packed", extra=result.to_dict())
    return result.to_dict()
