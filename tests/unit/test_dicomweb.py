"""STOW-RS as pure rules: the multipart/related body, the Store Instances Response, the request's path,
and the push of an SR to a PACS with in-memory fakes that refuse, time out or recover."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from medimage.core.dicomweb import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    PRIVATE_CODE_TAG,
    PRIVATE_MESSAGE_TAG,
    SOP_CLASS_NOT_SUPPORTED,
    HttpAnswer,
    InstanceOutcome,
    PacsUnreachable,
    StowRequestError,
    instance_name,
    multipart_related,
    parse_stow_body,
    request_error_response,
    response_status,
    store_response,
    stow_url,
)
from medimage.core.layout import pacs_failure_key
from medimage.inference.stow import StowTarget, stow_target
from medimage.results.pacs import PacsPusher, RetryPolicy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import InMemoryObjectStore

STORED = InstanceOutcome("1.2.840.10008.5.1.4.1.1.1.1", "1.2.3.4", stored=True, retrieve_url="s3://b/k.dcm")
FAILED = InstanceOutcome(
    "1.2.840.10008.5.1.4.1.1.1.1", "1.2.3.5", stored=False, code="too_large", message="big"
)


def test_a_body_made_by_the_client_side_parses_back_to_its_instances():
    content_type, body = multipart_related([b"first\r\n--not-a-boundary", b"\x00\xff second"])
    parts = parse_stow_body(content_type, body)
    assert [(p.media_type, p.data) for p in parts] == [
        ("application/dicom", b"first\r\n--not-a-boundary"),
        ("application/dicom", b"\x00\xff second"),
    ]


@pytest.mark.parametrize(
    ("content_type", "status", "code"),
    [
        ("application/dicom", 415, "unsupported_media_type"),
        ("", 415, "unsupported_media_type"),
        ('multipart/related; type="application/dicom+json"; boundary=x', 415, "unsupported_media_type"),
        ('multipart/related; type="application/dicom"', 400, "bad_multipart"),
    ],
)
def test_a_request_that_is_not_dicom_multipart_is_refused_whole(content_type, status, code):
    with pytest.raises(StowRequestError) as raised:
        parse_stow_body(content_type, b"--x\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--x--\r\n")
    assert (raised.value.status, raised.value.code) == (status, code)
    doc = request_error_response(raised.value)
    [item] = doc["00081198"]["Value"]
    assert item["00081197"] == {"vr": "US", "Value": [CANNOT_UNDERSTAND]}
    assert item[PRIVATE_CODE_TAG]["Value"] == [code] and item[PRIVATE_MESSAGE_TAG]["Value"][0]


def test_the_status_follows_ps3_18_all_stored_some_stored_none_stored():
    assert response_status([STORED, STORED]) == 200
    assert response_status([STORED, FAILED]) == 202
    assert response_status([FAILED]) == 409


def test_the_response_lists_stored_and_failed_instances_in_dicom_json():
    doc = store_response([STORED, FAILED])
    [ref] = doc["00081199"]["Value"]
    assert ref["00081155"] == {"vr": "UI", "Value": ["1.2.3.4"]}
    assert ref["00081190"] == {"vr": "UR", "Value": ["s3://b/k.dcm"]}
    [failed] = doc["00081198"]["Value"]
    assert failed["00081150"]["Value"] == ["1.2.840.10008.5.1.4.1.1.1.1"]
    assert failed["00081197"]["Value"] == [OUT_OF_RESOURCES]
    assert failed[PRIVATE_CODE_TAG]["Value"] == ["too_large"]
    multiframe = InstanceOutcome("c", "i", stored=False, code="dicom_multiframe", message="m")
    assert multiframe.failure_reason == SOP_CLASS_NOT_SUPPORTED
    assert "00081198" not in store_response([STORED])


def test_the_stored_name_is_the_same_for_the_same_instance_and_carries_no_uid():
    name = instance_name("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert name == instance_name("1.2.3", "1.2.3.4", "1.2.3.4.5") and name.endswith(".dcm")
    assert "1.2.3" not in name and name != instance_name("1.2.3", "1.2.3.4", "1.2.3.4.6")


@pytest.mark.parametrize(
    ("path", "query", "target"),
    [
        ("/studies", None, StowTarget()),
        ("/studies/1.2.3", None, StowTarget("1.2.3")),
        ("/studies", {"dataset": "oct2017"}, StowTarget(None, "oct2017")),
        ("/datasets/oct2017/studies/1.2.3", None, StowTarget("1.2.3", "oct2017")),
        ("/studies/1.2.3/series", None, None),
        ("/predict", None, None),
    ],
)
def test_the_path_names_the_study_and_the_dataset(path, query, target):
    assert stow_target(path, query) == target


def test_the_push_target_is_the_studies_resource_of_the_configured_base():
    assert stow_url("http://pacs/dicom-web") == "http://pacs/dicom-web/studies"
    assert stow_url("http://pacs/dicom-web/studies/") == "http://pacs/dicom-web/studies"


# ---------------------------------------------------------------- the push to a PACS
class FakePacs:
    """Answers each post from ``script`` in turn: an HTTP status, or an exception to raise."""

    def __init__(self, *script: int | Exception) -> None:
        self.script = list(script)
        self.posts: list[tuple[str, bytes, str]] = []

    def post(self, url: str, body: bytes, content_type: str, timeout_s: float) -> HttpAnswer:
        self.posts.append((url, body, content_type))
        step = self.script.pop(0) if self.script else 200
        if isinstance(step, Exception):
            raise step
        return HttpAnswer(step)


def pusher(pacs: FakePacs, store: InMemoryObjectStore, sleeps: list[float], now: list[float]) -> PacsPusher:
    return PacsPusher(
        pacs,
        "http://pacs/dicom-web",
        store,
        RetryPolicy(attempts=3, first_delay_s=0.5, cooldown_s=60),
        sleep=sleeps.append,
        monotonic=lambda: now[0],
        clock=lambda: "2026-12-01T00:00:00+00:00",
    )


SR_KEY = "predictions/chestxray2017/stow/x.dcm.sr.dcm"
RESULT_KEY = "predictions/chestxray2017/stow/x.dcm.json"


def test_a_pacs_that_takes_the_sr_gets_one_stow_request():
    store, sleeps, pacs = InMemoryObjectStore(), [], FakePacs(200)
    outcome = pusher(pacs, store, sleeps, [0.0]).push(b"SR", "chestxray2017", SR_KEY, RESULT_KEY)
    assert outcome.pushed and outcome.attempts == 1 and sleeps == []
    [(url, body, content_type)] = pacs.posts
    assert url == "http://pacs/dicom-web/studies"
    assert [p.data for p in parse_stow_body(content_type, body)] == [b"SR"]
    assert store.objects == {}


def test_a_refusing_pacs_is_not_retried_and_leaves_a_failure_record():
    store, sleeps, pacs = InMemoryObjectStore(), [], FakePacs(409)
    outcome = pusher(pacs, store, sleeps, [0.0]).push(b"SR", "chestxray2017", SR_KEY, RESULT_KEY)
    assert not outcome.pushed and outcome.code == "pacs_refused" and outcome.status == 409
    assert len(pacs.posts) == 1 and sleeps == []
    record = store.get_json(pacs_failure_key("chestxray2017", SR_KEY))
    assert outcome.failure_key == "pacs/failed/chestxray2017/stow/x.dcm.sr.dcm.json"
    assert record == {
        "code": "pacs_refused",
        "message": "HTTP 409",
        "http_status": 409,
        "attempts": 1,
        "dataset": "chestxray2017",
        "sr_key": SR_KEY,
        "result_key": RESULT_KEY,
        "failed_at": "2026-12-01T00:00:00+00:00",
    }


def test_a_pacs_that_times_out_is_retried_with_backoff_then_paused():
    store, sleeps, now = InMemoryObjectStore(), [], [100.0]
    pacs = FakePacs(PacsUnreachable("timeout"), PacsUnreachable("timeout"), PacsUnreachable("timeout"))
    push = pusher(pacs, store, sleeps, now)
    outcome = push.push(b"SR", "chestxray2017", SR_KEY, RESULT_KEY)
    assert not outcome.pushed and outcome.code == "pacs_unavailable" and outcome.attempts == 3
    assert sleeps == [0.5, 1.0] and len(pacs.posts) == 3
    assert store.get_json(outcome.failure_key)["message"] == "no answer: timeout"
    # the next image of the batch is recorded at once while the PACS cools down...
    paused = push.push(b"SR2", "chestxray2017", "predictions/chestxray2017/y.sr.dcm", RESULT_KEY)
    assert paused.code == "pacs_paused" and paused.attempts == 0 and len(pacs.posts) == 3
    # ...and tried again once the cool-down is over
    now[0] += 61
    assert push.push(b"SR3", "chestxray2017", SR_KEY, RESULT_KEY).pushed


def test_a_busy_pacs_that_recovers_takes_the_sr_on_a_later_attempt():
    store, sleeps, pacs = InMemoryObjectStore(), [], FakePacs(503, PacsUnreachable("refused"), 200)
    outcome = pusher(pacs, store, sleeps, [0.0]).push(b"SR", "chestxray2017", SR_KEY, RESULT_KEY)
    assert outcome.pushed and outcome.attempts == 3 and sleeps == [0.5, 1.0] and store.objects == {}


def test_a_fault_of_the_client_itself_is_recorded_not_raised():
    store, sleeps, pacs = InMemoryObjectStore(), [], FakePacs(KeyError("SecretString"))
    outcome = pusher(pacs, store, sleeps, [0.0]).push(b"SR", "chestxray2017", SR_KEY, RESULT_KEY)
    assert outcome.code == "pacs_error" and outcome.message == "the push failed: KeyError"
    assert store.exists(outcome.failure_key)
