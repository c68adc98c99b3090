"""`medimage review list|show|label`: where a reviewed image goes (the preset's label rules), the order of the
move, and the command against moto in-process and against a local endpoint through `--stack-json`."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core.layout import prediction_key, review_json_key, review_key
from medimage.core.presets import get_preset
from medimage.inference.review import ReviewProblem, ReviewQueue, labeled_key_for

from .conftest import BUCKET

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes import InMemoryObjectStore

DS = "chestxray2017"
LABELED = f"incoming/labeled/{DS}/"


# ---------------------------------------------------------------- where a reviewed image goes


@pytest.mark.parametrize(
    ("name", "label", "expected"),
    [
        ("person1_bacteria_2.jpeg", "viral", "PNEUMONIA/person1_virus_2.jpeg"),
        ("person1_virus_6.jpeg", "bacterial", "PNEUMONIA/person1_bacteria_6.jpeg"),
        ("person1_virus_6.jpeg", "viral", "PNEUMONIA/person1_virus_6.jpeg"),
        ("person3_Virus_1.jpeg", "bacterial", "PNEUMONIA/person3_bacteria_1.jpeg"),
        ("IM-0001-0001.jpeg", "bacterial", "PNEUMONIA/IM-0001-0001_bacteria.jpeg"),
        ("IM-0001-0001.jpeg", "normal", "NORMAL/IM-0001-0001.jpeg"),
        ("scan from ward 3.jpeg", "viral", "PNEUMONIA/scan from ward 3_virus.jpeg"),
        ("ward/b/scan.dcm", "normal", "NORMAL/scan.dcm"),
        ("noext", "viral", "PNEUMONIA/noext_virus"),
    ],
)
def test_the_preset_reads_the_clinicians_label_from_the_new_key(name, label, expected):
    preset = get_preset(DS)
    key = labeled_key_for(preset, DS, name, label)
    assert key == LABELED + expected
    folder, filename = key[len(LABELED) :].split("/")
    assert preset.label_for(folder, filename) == label  # what annotate will catalogue
    assert preset.patient_id(filename) == preset.patient_id(name.rsplit("/", 1)[-1])  # same patient


@pytest.mark.parametrize(
    ("dataset", "preset", "label", "expected"),
    [
        ("chestxray2017-binary", "chestxray2017-binary", "pneumonia", "PNEUMONIA/x.jpeg"),
        ("oct2017", "oct2017", "DME", "DME/x.jpeg"),
        ("mydata", "folders", "fracture", "fracture/x.jpeg"),
    ],
)
def test_other_presets(dataset, preset, label, expected):
    assert labeled_key_for(get_preset(preset), dataset, "x.jpeg", label) == (
        f"incoming/labeled/{dataset}/{expected}"
    )


@pytest.mark.parametrize(
    ("preset", "label", "code"),
    [(DS, "pneumonia", "unknown_label"), (DS, "Viral", "unknown_label"), ("folders", "a/b", "bad_label")],
)
def test_a_label_the_dataset_cannot_take_is_refused(preset, label, code):
    with pytest.raises(ReviewProblem) as refused:
        labeled_key_for(get_preset(preset), DS, "x.jpeg", label)
    assert refused.value.code == code
    if code == "unknown_label":
        assert "normal, bacterial, viral" in refused.value.message


# ---------------------------------------------------------------- the move, on an in-memory bucket


class ListingStore(InMemoryObjectStore):
    def list_keys(self, prefix: str) -> Iterator[str]:
        return iter(sorted(k for k in self.objects if k.startswith(prefix)))


def queued(store: Any, name: str, data: bytes, label: str = "bacterial", confidence: float = 0.61) -> dict:
    """An item as drop-to-label leaves it: the image, its result beside it, and the result itself."""
    source = f"incoming/unlabeled/{DS}/{name}"
    record = {
        "key": source,
        "dataset": DS,
        "file": name.rsplit("/", 1)[-1],
        "label": label,
        "probabilities": {"normal": 0.1, "bacterial": confidence, "viral": 0.9 - confidence},
        "confidence": confidence,
        "needs_review": True,
        "review_reason": "low_confidence",
        "review_key": review_key(DS, name),
        "model_version": "v1",
        "predicted_at": "2026-11-25T10:00:00+00:00",
    }
    store.put_bytes(review_key(DS, name), data)
    store.put_json(review_json_key(DS, name), record)
    store.put_json(prediction_key(DS, source), record)
    return record


def test_label_copies_first_and_clears_review_last():
    store = ListingStore()
    queued(store, "person1_virus_6.jpeg", b"image-1")
    store.log.clear()
    done = ReviewQueue(store, clock=lambda: "2026-11-26T08:00:00+00:00").label(
        DS, "person1_virus_6.jpeg", "viral", get_preset(DS), reviewer="Smith^Ann"
    )
    target = LABELED + "PNEUMONIA/person1_virus_6.jpeg"
    assert done.labeled_key == target and done.model_label == "bacterial"
    assert store.objects[target] == b"image-1"
    assert store.log == [
        ("copy", target),
        ("put", prediction_key(DS, f"incoming/unlabeled/{DS}/person1_virus_6.jpeg")),
        ("delete", review_json_key(DS, "person1_virus_6.jpeg")),
        ("delete", review_key(DS, "person1_virus_6.jpeg")),
    ]
    verdict = store.get_json(prediction_key(DS, f"incoming/unlabeled/{DS}/person1_virus_6.jpeg"))["review"]
    assert verdict == {
        "label": "viral",
        "labeled_key": target,
        "reviewed_at": "2026-11-26T08:00:00+00:00",
        "reviewer": "Smith^Ann",
        "verdict": "modified",
        "sr_key": None,  # a JPEG's result has no SR to answer
    }
    assert not [k for k in store.objects if k.startswith("review/")]


@pytest.mark.parametrize(("label", "verdict"), [("viral", "modified"), ("bacterial", "accepted")])
def test_a_verdict_on_a_dicom_is_an_sr_that_refers_to_the_ais(label, verdict):
    from dicom_factory import PATIENT_NAME, make_dicom, reference_image

    from medimage.core.layout import review_sr_key
    from medimage.results.sr import read_report
    from medimage.results.writer import finding_of, write_results

    store = ListingStore()
    data = make_dicom(reference_image())
    record = queued(store, "ward/scan-9.dcm", data)
    source = record["key"]
    record.update(model_sha256="ab" * 32)
    record["results"] = write_results(store, DS, source, data, finding_of(record, f"{source}|v|e"))
    store.put_json(prediction_key(DS, source), record)
    ReviewQueue(store, clock=lambda: "2026-11-26T08:00:00+00:00").label(
        DS, "ward/scan-9.dcm", label, get_preset(DS), reviewer="Smith^Ann"
    )
    result = store.get_json(prediction_key(DS, source))
    assert result["label"] == "bacterial"  # the AI's answer stays as it was
    assert result["review"]["verdict"] == verdict and result["review"]["reviewer"] == "Smith^Ann"
    assert result["review"]["sr_key"] == review_sr_key(DS, source)
    ai, person = (
        read_report(store.get_bytes(k)) for k in (result["results"]["sr_key"], review_sr_key(DS, source))
    )
    assert ai.finding.value == "53084003" and ai.verdict is None
    assert person.verdict.value == verdict.upper() and ai.sop_uid in person.evidence_uids
    assert person.study_uid == ai.study_uid
    assert PATIENT_NAME not in json.dumps(result)


def test_a_rerun_after_an_interruption_finishes_without_a_second_copy():
    store = ListingStore()
    queued(store, "a.jpeg", b"image-a")
    queue = ReviewQueue(store)
    target = labeled_key_for(get_preset(DS), DS, "a.jpeg", "normal")
    store.copy(review_key(DS, "a.jpeg"), target)  # the first run stopped right after its copy
    store.log.clear()
    assert (
        queue.label(DS, f"review/{DS}/a.jpeg", "normal", get_preset(DS), reviewer="Smith^Ann").labeled_key
        == target
    )
    assert ("copy", target) not in store.log
    assert [k for k in store.objects if k.startswith(LABELED)] == [target]


def test_another_image_with_the_same_name_is_not_overwritten():
    store = ListingStore()
    store.put_bytes(LABELED + "NORMAL/a.jpeg", b"an older, different image")
    queued(store, "a.jpeg", b"image-a")
    done = ReviewQueue(store).label(DS, "a.jpeg", "normal", get_preset(DS), reviewer="Smith^Ann")
    assert done.labeled_key.startswith(LABELED + "NORMAL/a-r") and done.labeled_key.endswith(".jpeg")
    assert store.objects[LABELED + "NORMAL/a.jpeg"] == b"an older, different image"
    assert store.objects[done.labeled_key] == b"image-a"


class CopyLosingStore(ListingStore):
    def copy(self, source_key: str, dest_key: str) -> None:
        self.log.append(("copy", dest_key))  # acknowledged, never stored


def test_a_copy_that_is_not_stored_leaves_the_item_in_review():
    store = CopyLosingStore()
    queued(store, "a.jpeg", b"image-a")
    with pytest.raises(ReviewProblem) as failed:
        ReviewQueue(store).label(DS, "a.jpeg", "normal", get_preset(DS), reviewer="Smith^Ann")
    assert failed.value.code == "copy_failed"
    assert review_key(DS, "a.jpeg") in store.objects and review_json_key(DS, "a.jpeg") in store.objects


def test_a_bad_label_moves_nothing():
    store = ListingStore()
    queued(store, "a.jpeg", b"image-a")
    before = dict(store.objects)
    with pytest.raises(ReviewProblem):
        ReviewQueue(store).label(DS, "a.jpeg", "pneumonia", get_preset(DS), reviewer="Smith^Ann")
    assert store.objects == before


def test_a_verdict_without_a_reviewer_moves_nothing():
    store = ListingStore()
    queued(store, "a.jpeg", b"image-a")
    before = dict(store.objects)
    with pytest.raises(ReviewProblem) as failed:
        ReviewQueue(store).label(DS, "a.jpeg", "normal", get_preset(DS), reviewer=" ")
    assert failed.value.code == "no_reviewer"
    assert store.objects == before


def test_list_is_least_confident_first_and_skips_the_result_files():
    store = ListingStore()
    queued(store, "sure.jpeg", b"1", confidence=0.7)
    queued(store, "unsure.jpeg", b"2", confidence=0.4)
    queued(store, "ward/3.jpeg", b"3", confidence=0.5)
    store.put_bytes(review_key(DS, "lost.jpeg"), b"4")  # an image whose result JSON is missing
    items = ReviewQueue(store).list(DS)
    assert [i.name for i in items] == ["lost.jpeg", "unsure.jpeg", "ward/3.jpeg", "sure.jpeg"]
    assert items[1].label == "bacterial" and items[1].confidence == 0.4 and items[0].label is None


# ---------------------------------------------------------------- the command, on moto


def put_queued(s3: Any, name: str, data: bytes, **kwargs: Any) -> dict:
    from medimage.adapters.s3 import S3ObjectStore

    return queued(S3ObjectStore(BUCKET, s3), name, data, **kwargs)


def test_review_list_show_label_on_the_bucket(s3, cli):
    put_queued(s3, "person1_bacteria_2.jpeg", b"\xff\xd8 x-ray 1", confidence=0.55)
    put_queued(s3, "person2_virus_3.jpeg", b"\xff\xd8 x-ray 2", label="viral", confidence=0.52)

    listed = cli("review", "list", "--dataset", DS, "--bucket", BUCKET)
    assert listed.code == 0 and "2 image(s) wait for review" in listed.out
    assert listed.out.index("person2_virus_3.jpeg") < listed.out.index("person1_bacteria_2.jpeg")
    as_json = cli("review", "list", "--dataset", DS, "--bucket", BUCKET, "--json").json()
    assert [(i["name"], i["label"], i["confidence"]) for i in as_json] == [
        ("person2_virus_3.jpeg", "viral", 0.52),
        ("person1_bacteria_2.jpeg", "bacterial", 0.55),
    ]

    shown = cli("review", "show", "person1_bacteria_2.jpeg", "--dataset", DS, "--bucket", BUCKET).json()
    assert shown["review_key"] == review_key(DS, "person1_bacteria_2.jpeg") and shown["image_bytes"] == 10

    done = cli("review", "label", "person1_bacteria_2.jpeg", "viral", "--dataset", DS, "--bucket", BUCKET)
    assert done.code == 0, done.err
    target = LABELED + "PNEUMONIA/person1_virus_2.jpeg"
    assert target in done.out and "the model said bacterial" in done.out
    assert s3.get_object(Bucket=BUCKET, Key=target)["Body"].read() == b"\xff\xd8 x-ray 1"
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="review/").get("Contents", [])]
    assert left == [review_key(DS, "person2_virus_3.jpeg"), review_json_key(DS, "person2_virus_3.jpeg")]


def test_review_errors_are_one_clear_line(s3, cli):
    put_queued(s3, "a.jpeg", b"\xff\xd8 x-ray")
    bad = cli("review", "label", "a.jpeg", "pneumonia", "--dataset", DS, "--bucket", BUCKET)
    assert bad.code == 2 and "'pneumonia' is not a class of dataset 'chestxray2017'" in bad.err
    missing = cli("review", "label", "b.jpeg", "normal", "--dataset", DS, "--bucket", BUCKET)
    assert missing.code == 2 and "review/chestxray2017/b.jpeg is not in the review queue" in missing.err
    shown = cli("review", "show", "b.jpeg", "--dataset", DS, "--bucket", BUCKET)
    assert shown.code == 2 and "not in the review queue" in shown.err
    no_bucket = cli("review", "list", "--dataset", DS)
    assert no_bucket.code == 2 and "no bucket" in no_bucket.err
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=LABELED).get("KeyCount") == 0


def test_a_mapped_dataset_uses_its_preset(s3, cli, monkeypatch):
    monkeypatch.setenv("DATASET_PRESETS", json.dumps({"ward-xrays": "chestxray2017-binary"}))
    s3.put_object(Bucket=BUCKET, Key="review/ward-xrays/a.jpeg", Body=b"img")
    done = cli("review", "label", "a.jpeg", "pneumonia", "--dataset", "ward-xrays", "--bucket", BUCKET)
    assert done.code == 0, done.err
    assert "incoming/labeled/ward-xrays/PNEUMONIA/a.jpeg" in done.out


# ---------------------------------------------------------------- against an endpoint, as with `medimage up`


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    pytest.importorskip("flask", reason="moto[server] (extra 'dev') runs the local endpoint")
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name in ("AWS_ENDPOINT_URL", "MEDIMAGE_BUCKET", "MEDIMAGE_STATE_MACHINE_ARN", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(name, "-")  # --stack-json sets these: put back what was there after the test
        monkeypatch.delenv(name)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def test_review_label_against_a_local_stack(moto_server, tmp_path: Path, cli):
    s3 = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    s3.create_bucket(Bucket="up-bucket")
    from medimage.adapters.s3 import S3ObjectStore

    queued(S3ObjectStore("up-bucket", s3), "IM-0001-0001.jpeg", b"\xff\xd8 x-ray")
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"endpoint_url": moto_server, "region": "us-east-1", "bucket": "up-bucket"}))
    listed = cli("review", "list", "--dataset", DS, "--stack-json", str(stack), "--json")
    assert listed.code == 0, listed.err
    assert [i["name"] for i in listed.json()] == ["IM-0001-0001.jpeg"]
    done = cli(
        "review", "label", "IM-0001-0001.jpeg", "bacterial", "--dataset", DS, "--stack-json", str(stack)
    )
    assert done.code == 0, done.err
    assert s3.get_object(Bucket="up-bucket", Key=LABELED + "PNEUMONIA/IM-0001-0001_bacteria.jpeg")
    assert s3.list_objects_v2(Bucket="up-bucket", Prefix="review/")["KeyCount"] == 0
