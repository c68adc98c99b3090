"""The silent trial in serving: the candidate classifies a share of the images after production's answer
is ready, and each pair of answers is recorded; nothing of it reaches a caller.

`SilentTrial.run` is called with production's finished `PredictionResult` (the API has built its response,
drop-to-label has written the result, its review copy and its batch line is decided): it runs the candidate
on the same decoded pixels (decoded again only when the candidate's preprocessing differs) and keeps the
pair (`medimage.core.trial.TrialPair`). It never raises: a candidate that cannot be loaded or fails is
logged and the image simply has no pair.

Sampling: an API request is drawn at random with probability ``share``; a dropped image by a hash of its
key, so a redelivered image is sampled the same way.

Pairs are written in batches, one JSON Lines object under ``trials/<dataset>/<candidate>/pairs/`` once
``flush_pairs`` are waiting or the oldest is ``flush_s`` old (checked after each pair; drop-to-label
flushes at the end of every SQS batch). One PUT per batch instead of one per pair keeps the S3 requests,
and the objects the scorecard reads, ~25 times fewer; the price is that a container recycled by Lambda
loses the pairs it had not written yet (at most ``flush_pairs - 1`` or ``flush_s`` worth), which no more
favours one model than the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from medimage.inference.cache import ModelCache

if TYPE_CHECKING:
    from medimage.core.trial import TrialPair
    from medimage.inference.ports import PairSink
    from medimage.inference.service import PredictionResult

log = logging.getLogger(__name__)
# Pairs kept in memory at most while writing them keeps failing; beyond, the oldest are dropped.
MAX_BUFFERED = 1000


def _utc_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def key_draw(key: str) -> float:
    """A number in [0, 1) fixed by the key: the same image is sampled, or not, at every delivery."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) / 2**32


@dataclass
class _Buffer:
    pairs: list[TrialPair] = field(default_factory=list)
    since: float = 0.0


class SilentTrial:
    def __init__(
        self,
        cache: ModelCache,
        sink: Callable[[], PairSink],
        share: float,
        review_threshold: float | None = None,
        flush_pairs: int = 25,
        flush_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = _utc_iso,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.cache = cache
        self._sink = sink  # made on first write: the S3 client is not part of a request's path
        self.share = share
        self.review_threshold = review_threshold
        self.flush_pairs = max(1, flush_pairs)
        self.flush_s = flush_s
        self._clock = clock
        self._now = now
        self._draw = draw
        self._buffers: dict[tuple[str, str], _Buffer] = {}
        self.written: list[str] = []  # the keys this container wrote, newest last

    def sampled(self, dataset: str, image_key: str | None) -> bool:
        """Whether this image goes to the candidate too (only where a candidate is on trial)."""
        if self.share <= 0.0 or not self.cache.has_candidate(dataset):
            return False
        draw = key_draw(image_key) if image_key else self._draw()
        return draw < self.share

    def run(
        self, champion: PredictionResult, data: bytes, source: str, image_key: str | None = None
    ) -> TrialPair | None:
        """Run the candidate on this image if it is sampled and record the pair; never raises."""
        try:
            if not self.sampled(champion.dataset, image_key):
                return None
            pair = self._pair(champion, data, source, image_key)
            if pair is not None:
                self._keep(pair)
                self.flush()
            return pair
        except Exception:  # a silent answer must never touch the real one
            log.exception("silent trial failed", extra={"dataset": champion.dataset, "source": source})
            return None

    def _pair(
        self, champion: PredictionResult, data: bytes, source: str, image_key: str | None
    ) -> TrialPair | None:
        from medimage.core.trial import Answer, TrialPair

        candidate = self.cache.candidate(champion.dataset)
        if candidate is None:
            return None
        classifier = candidate.classifier
        start = time.perf_counter()
        pixels, decode_ms = champion.pixels, champion.decode_ms
        served = self.cache.loaded().get(champion.dataset)
        same_input = served is not None and served.classifier.spec == classifier.spec
        if pixels is None or not same_input:
            from medimage.core.images import ImageLimits
            from medimage.inference.decode import decode_pixels

            pixels = decode_pixels(data, classifier.spec, ImageLimits(max_bytes=max(len(data), 1)))
            decode_ms = 0.0
        prediction = classifier.classify_array(pixels, review_threshold=self.review_threshold)
        latency_ms = decode_ms + (time.perf_counter() - start) * 1000
        return TrialPair(
            dataset=champion.dataset,
            source=source,
            at=self._now(),
            image_key=image_key,
            champion=Answer(
                champion.model_version,
                champion.label,
                champion.confidence,
                champion.needs_review,
                champion.review_reason,
                champion.latency_ms,
            ),
            candidate=Answer(
                candidate.version,
                prediction.label,
                prediction.confidence,
                prediction.needs_review,
                prediction.review_reason,
                latency_ms,
            ),
        )

    def _keep(self, pair: TrialPair) -> None:
        buffer = self._buffers.setdefault((pair.dataset, pair.candidate.version), _Buffer())
        if not buffer.pairs:
            buffer.since = self._clock()
        buffer.pairs.append(pair)
        del buffer.pairs[:-MAX_BUFFERED]

    def pending(self) -> int:
        return sum(len(b.pairs) for b in self._buffers.values())

    def flush(self, force: bool = False) -> list[str]:
        """Write each trial's waiting pairs that are due (all of them with ``force``); never raises. A
        write that fails keeps its pairs for the next flush."""
        from medimage.core.trial import pairs_prefix

        written: list[str] = []
        now = self._clock()
        for (dataset, version), buffer in list(self._buffers.items()):
            due = len(buffer.pairs) >= self.flush_pairs or now - buffer.since >= self.flush_s
            if not buffer.pairs or not (force or due):
                continue
            stamp = self._now().replace("-", "").replace(":", "").replace("+0000", "Z")
            key = f"{pairs_prefix(dataset, version)}{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
            body = "".join(json.dumps(p.to_dict(), sort_keys=True) + "\n" for p in buffer.pairs)
            try:
                self._sink().put_bytes(key, body.encode("utf-8"), "application/x-ndjson")
            except Exception:
                log.exception(
                    "writing trial pairs failed", extra={"dataset": dataset, "pairs": len(buffer.pairs)}
                )
                continue
            del self._buffers[(dataset, version)]
            written.append(key)
        self.written.extend(written)
        return written
