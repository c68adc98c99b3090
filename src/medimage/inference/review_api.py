"""The review worklist on the inference API: the queue of a dataset, one item with its evidence, a verdict.

* ``GET /review?dataset=D``: ``{"dataset", "classes", "items": [...]}``, least confident first; each item is
  the queued prediction (`ReviewItem`: name, the model's label, probabilities, confidence, review reason,
  model version, when it was predicted).
* ``GET /review/item?dataset=D&name=N``: the item, its image as a data URL (JPEG and PNG; a browser cannot
  show a DICOM) and the class-activation heatmap of the production model on it.
* ``POST /review/label`` with JSON ``{"dataset", "name", "label"}``: the move `medimage review label`
  makes (`medimage.inference.review.ReviewQueue.label`), with the reviewer taken from the API's auth.

The reviewer is who the API's auth says called (`reviewer_of`): the IAM principal of a SigV4-signed request
(``requestContext.identity.userArn``), else the API key (``requestContext.identity.apiKeyId``). A request
with neither is refused (``401 no_identity``), never recorded as anonymous. A heatmap drawn here is not a
prediction: it is neither logged nor counted, and a candidate on silent trial never sees these images.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from typing import Any

from medimage.core.errors import MedimageError
from medimage.core.presets import Preset
from medimage.inference.api import ApiError, decode_base64
from medimage.inference.review import ReviewBucket, ReviewItem, ReviewQueue
from medimage.inference.service import InferenceService

PATHS = ("/review", "/review/item", "/review/label")
# The largest image sent back as a data URL: its base64 and the heatmap stay under Lambda's 6 MB answer.
MAX_SHOWN_BYTES = 3_000_000
MAX_LABEL_BODY = 64 * 1024
_MEDIA_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def reviewer_of(event: Mapping[str, Any]) -> str:
    """Who called, as the API's auth established it; ``401 no_identity`` when it names no one."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    user_arn = identity.get("userArn")
    if isinstance(user_arn, str) and user_arn.strip():
        return user_arn.strip()
    key_id = identity.get("apiKeyId")
    if isinstance(key_id, str) and key_id.strip():
        return f"api-key:{key_id.strip()}"
    raise ApiError(
        401,
        "no_identity",
        "the request carries no caller identity (neither an IAM principal nor an API key): "
        "a verdict must name its reviewer; call the API with its auth",
    )


def _item_body(item: ReviewItem) -> dict[str, Any]:
    """What a client sees of a queued item (no object keys of the pipeline, no source identity)."""
    return {
        "name": item.name,
        "label": item.label,
        "probabilities": item.probabilities,
        "confidence": item.confidence,
        "review_reason": item.review_reason,
        "model_version": item.model_version,
        "predicted_at": item.predicted_at,
    }


def _media_type(data: bytes) -> str | None:
    return next((media for magic, media in _MEDIA_TYPES if data.startswith(magic)), None)


def _text_field(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "missing_field", f'the JSON body needs "{name}": a non-empty string')
    return value.strip()


class ReviewApi:
    """The three review routes over the data bucket, the inference service and the datasets' presets."""

    def __init__(
        self,
        service: InferenceService,
        store: ReviewBucket,
        preset_for: Callable[[str], Preset],
    ) -> None:
        self.service = service
        self.queue = ReviewQueue(store)
        self.preset_for = preset_for

    def handle(self, event: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of a review route; `ApiError` / `MedimageError` for what is refused."""
        reviewer = reviewer_of(event)  # every route sits behind the API's auth
        method, path = event.get("httpMethod"), event.get("path")
        query = event.get("queryStringParameters") or {}
        if (method, path) == ("GET", "/review"):
            return 200, self.list(query.get("dataset"))
        if (method, path) == ("GET", "/review/item"):
            name = query.get("name")
            if not name:
                raise ApiError(400, "missing_field", "name the item: GET /review/item?dataset=D&name=N")
            return 200, self.item(query.get("dataset"), name)
        if (method, path) == ("POST", "/review/label"):
            doc = self._json_body(event)
            dataset = doc.get("dataset")
            if dataset is not None and not isinstance(dataset, str):
                raise ApiError(400, "bad_dataset", '"dataset" must be a string')
            return 200, self.label(
                dataset or None,
                _text_field(doc, "name"),
                _text_field(doc, "label"),
                reviewer,
            )
        raise ApiError(404, "not_found", f"no route {method} {path}")

    def _dataset(self, name: str | None) -> str:
        return self.service.resolve_dataset(name)  # 400 unknown_dataset / bad_dataset

    def list(self, dataset: str | None) -> dict[str, Any]:
        name = self._dataset(dataset)
        items = self.queue.list(name)
        return {
            "dataset": name,
            "classes": self._classes(name, items),
            "items": [_item_body(i) for i in items],
        }

    def _classes(self, dataset: str, items: list[ReviewItem]) -> list[str]:
        """The labels a reviewer may give: the preset's classes, else (a folder-per-label preset) the
        labels the model answered with."""
        preset = self.preset_for(dataset)
        if preset.classes:
            return list(preset.classes)
        return sorted({label for item in items for label in item.probabilities or {}})

    def item(self, dataset: str | None, name: str) -> dict[str, Any]:
        ds = self._dataset(dataset)
        data, item = self.queue.image(ds, name)
        body: dict[str, Any] = {"dataset": ds, **_item_body(item), "image": None, "image_note": None}
        media = _media_type(data)
        if media is None:
            body["image_note"] = "a browser cannot show this image (DICOM): the heatmap is shown alone"
        elif len(data) > MAX_SHOWN_BYTES:
            body["image_note"] = f"the image is {len(data)} bytes, too large to show here"
        else:
            body["image"] = f"data:{media};base64,{base64.b64encode(data).decode('ascii')}"
        body |= self._heatmap(ds, data)
        return body

    def _heatmap(self, dataset: str, data: bytes) -> dict[str, Any]:
        """The production model's activation map of the image; why there is none otherwise."""
        try:
            result = self.service.predict(
                data, dataset, max_bytes=self.service.config.max_image_bytes, explain=True
            )
        except MedimageError as exc:  # no model now, an image it cannot read: the item is still shown
            return {"heatmap": None, "heatmap_model_version": None, "heatmap_error": exc.as_reason()}
        return {
            "heatmap": result.heatmap,
            "heatmap_model_version": result.model_version,
            "heatmap_error": result.heatmap_error,
        }

    def label(self, dataset: str | None, name: str, label: str, reviewer: str) -> dict[str, Any]:
        ds = self._dataset(dataset)
        done = self.queue.label(ds, name, label, self.preset_for(ds), reviewer=reviewer)
        return done.to_dict()

    @staticmethod
    def _json_body(event: Mapping[str, Any]) -> dict[str, Any]:
        body = event.get("body")
        if not body:
            raise ApiError(400, "empty", 'the request body is empty: send {"dataset", "name", "label"}')
        if len(body) > MAX_LABEL_BODY:
            raise ApiError(413, "too_large", f"the body is over {MAX_LABEL_BODY} bytes")
        raw = decode_base64(body, "the body") if event.get("isBase64Encoded") else body
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "bad_json", 'the body must be a JSON object {"dataset", "name", "label"}')
        return doc
