"""S3 key parsing: URL-decoding, commit markers and malformed keys."""

from __future__ import annotations

import pytest

from medimage.core import layout
from medimage.core.errors import RejectedInput


def test_event_keys_are_url_decoded_with_plus_as_space():
    assert layout.decode_event_key("incoming/labeled/folders/chest+films/scan+%281%29.png") == (
        "incoming/labeled/folders/chest films/scan (1).png"
    )


def test_labeled_key_parts():
    parsed = layout.parse_labeled_key("incoming/labeled/chestxray2017/PNEUMONIA/person1_bacteria_1.jpeg")
    assert (parsed.dataset, parsed.folder, parsed.filename) == (
        "chestxray2017",
        "PNEUMONIA",
        "person1_bacteria_1.jpeg",
    )
    assert not parsed.is_commit


def test_nested_folders_keep_the_first_as_label_and_the_last_as_file():
    parsed = layout.parse_labeled_key("incoming/labeled/oct2017/CNV/batch-2/CNV-1-1.jpeg")
    assert (parsed.folder, parsed.filename) == ("CNV", "CNV-1-1.jpeg")


def test_commit_marker():
    assert layout.parse_labeled_key("incoming/labeled/oct2017/_commit").is_commit


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("incoming/labeled/oct2017/file.jpeg", "no_label"),
        ("incoming/labeled/oct2017/CNV/", "no_label"),
        ("incoming/labeled//CNV/x.jpeg", "bad_key"),
        ("incoming/labeled/bad name!/CNV/x.jpeg", "bad_dataset"),
        ("elsewhere/x.jpeg", "bad_key"),
    ],
)
def test_malformed_labeled_keys_are_rejected_with_a_code(key, code):
    with pytest.raises(RejectedInput) as err:
        layout.parse_labeled_key(key)
    assert err.value.code == code


def test_quarantine_keeps_the_original_key_and_unknown_datasets_have_a_home():
    key = "incoming/labeled/oct2017/CNV/x.jpeg"
    assert layout.quarantine_key("oct2017", key) == f"quarantine/oct2017/{key}"
    assert layout.quarantine_reason_key(None, "x") == "quarantine/_unknown/x.reason.json"


def test_prediction_key_mirrors_the_unlabeled_path():
    key = "incoming/unlabeled/oct2017/2026/scan 1.jpeg"
    assert layout.prediction_key("oct2017", key) == "predictions/oct2017/2026/scan 1.jpeg.json"
