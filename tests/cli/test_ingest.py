"""`medimage ingest`: the right keys, resumable, `_commit` last, failures counted, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from medimage.core import layout
from medimage.local.account import REGION
from medimage.ops import ingest as ing

from .conftest import BUCKET

PREFIX = "incoming/labeled/ds/"


def make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "NORMAL/IM-0001-0001.jpeg": b"\xff\xd8normal-1",
        "NORMAL/IM-0002-0001.jpeg": b"\xff\xd8normal-2",
        "PNEUMONIA/person1_bacteria_1.jpeg": b"\xff\xd8bacteria",
        "PNEUMONIA/more/person2_virus_2.png": b"\x89PNGvirus",
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "README.txt").write_text("no label folder")  # left out: not under a label folder
    (root / "NORMAL" / ".DS_Store").write_bytes(b"clutter")  # left out: hidden
    return files


def keys(s3: Any, prefix: str = PREFIX) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])}


class Recording:
    """A real (moto) S3 client that records upload order and can fail chosen keys."""

    def __init__(self, inner: Any, fail: tuple[str, ...] = ()) -> None:
        self._inner, self.fail, self.calls = inner, fail, []

    def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        if any(f in key for f in self.fail):
            raise OSError(f"connection reset while sending {key}\nsecond line")
        self.calls.append(key)
        self._inner.upload_file(filename, bucket, key, **kwargs)

    def put_object(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs["Key"])
        return self._inner.put_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_uploads_each_file_under_its_label_folder(tmp_path: Path, s3: Any, cli: Any) -> None:
    files = make_tree(tmp_path)
    run = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET, "--workers", "3")
    assert run.code == 0, run.err
    assert keys(s3) == {PREFIX + rel for rel in files}
    body = s3.get_object(Bucket=BUCKET, Key=PREFIX + "PNEUMONIA/more/person2_virus_2.png")
    assert body["Body"].read() == b"\x89PNGvirus"
    assert body["ContentType"] == "image/png"
    assert "4 uploaded" in run.out and "0 failed" in run.out
    assert "left out 2 files" in run.out
    assert not keys(s3, layout.commit_key("ds"))  # no --commit, no marker


def test_second_run_skips_what_is_there_and_reuploads_what_changed(tmp_path: Path, s3: Any, cli: Any) -> None:
    make_tree(tmp_path)
    assert cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET).code == 0
    again = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET)
    assert again.code == 0
    assert "0 uploaded" in again.out and "4 skipped" in again.out

    (tmp_path / "NORMAL" / "IM-0001-0001.jpeg").write_bytes(b"\xff\xd8normal-X")  # same size, new content
    changed = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET)
    assert "1 uploaded" in changed.out and "3 skipped" in changed.out
    assert s3.get_object(Bucket=BUCKET, Key=PREFIX + "NORMAL/IM-0001-0001.jpeg")["Body"].read().endswith(b"X")


def test_files_quarantined_earlier_are_not_uploaded_again(tmp_path: Path, s3: Any) -> None:
    make_tree(tmp_path)
    ing.ingest(tmp_path, "ds", BUCKET, s3)
    # What the annotate Lambda does with a bad file: copy to quarantine, write the reason, delete it.
    bad = PREFIX + "NORMAL/IM-0002-0001.jpeg"
    s3.copy_object(
        Bucket=BUCKET, Key=layout.quarantine_key("ds", bad), CopySource={"Bucket": BUCKET, "Key": bad}
    )
    s3.put_object(Bucket=BUCKET, Key=layout.quarantine_reason_key("ds", bad), Body=b"{}")
    s3.delete_object(Bucket=BUCKET, Key=bad)
    again = ing.ingest(tmp_path, "ds", BUCKET, s3)
    assert (again.uploaded, again.skipped) == (0, 4)
    assert bad not in keys(s3)


def test_multipart_uploads_are_recognised_on_the_next_run(tmp_path: Path, s3: Any) -> None:
    (tmp_path / "A").mkdir()
    # S3 (and moto) accept parts under 5 MiB only as the last part: the smallest real part size.
    part = 5 * 1024 * 1024
    (tmp_path / "A" / "big.jpeg").write_bytes(b"x" * (part * 2 + 10))
    first = ing.ingest(tmp_path, "ds", BUCKET, s3, part_bytes=part)
    assert first.uploaded == 1
    etag = s3.head_object(Bucket=BUCKET, Key=PREFIX + "A/big.jpeg")["ETag"].strip('"')
    assert etag.endswith("-3")
    second = ing.ingest(tmp_path, "ds", BUCKET, s3, part_bytes=part)
    assert (second.uploaded, second.skipped) == (0, 1)


def test_commit_is_uploaded_after_every_image(tmp_path: Path, s3: Any) -> None:
    files = make_tree(tmp_path)
    recording = Recording(s3)
    result = ing.ingest(tmp_path, "ds", BUCKET, recording, workers=4, commit=True)
    assert result.committed and result.ok
    assert recording.calls[-1] == layout.commit_key("ds")
    assert set(recording.calls[:-1]) == {PREFIX + rel for rel in files}
    assert s3.head_object(Bucket=BUCKET, Key=layout.commit_key("ds"))["ContentLength"] == 0


def test_commit_flag_from_the_command_line(tmp_path: Path, s3: Any, cli: Any) -> None:
    make_tree(tmp_path)
    run = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET, "--commit")
    assert run.code == 0
    assert layout.commit_key("ds") in keys(s3)
    assert "committed" in run.out


def test_failed_uploads_are_counted_not_committed_and_exit_non_zero(
    tmp_path: Path, s3: Any, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path)
    flaky = Recording(s3, fail=("person1_bacteria_1",))
    monkeypatch.setattr("medimage.ops.stack.client", lambda service, **_: flaky)
    run = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET, "--commit")
    assert run.code == 1
    assert "3 uploaded" in run.out and "1 failed" in run.out
    assert "failed: incoming/labeled/ds/PNEUMONIA/person1_bacteria_1.jpeg: connection reset" in run.out
    assert "second line" in run.out.splitlines()[2]  # the error is folded onto its one line
    assert "not committed" in run.out
    assert layout.commit_key("ds") not in keys(s3)

    # The retry uploads only the one that failed, then commits.
    monkeypatch.setattr("medimage.ops.stack.client", lambda service, **_: s3)
    retry = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", BUCKET, "--commit")
    assert retry.code == 0
    assert "1 uploaded" in retry.out and "3 skipped" in retry.out
    assert layout.commit_key("ds") in keys(s3)


def test_bucket_from_the_stack_output(tmp_path: Path, s3: Any, cli: Any) -> None:
    cfn = boto3.client("cloudformation", region_name=REGION)
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"DataBucketName": {"Value": BUCKET}},
    }
    cfn.create_stack(StackName="medimage-dev", TemplateBody=json.dumps(template))
    make_tree(tmp_path)
    run = cli("ingest", str(tmp_path), "--dataset", "ds", "--config-env", "dev")  # samconfig: medimage-dev
    assert run.code == 0, run.err
    assert len(keys(s3)) == 4


def test_missing_folder_is_one_line(tmp_path: Path, cli: Any) -> None:
    run = cli("ingest", str(tmp_path / "nope"), "--dataset", "ds", "--bucket", BUCKET)
    assert run.code == 2
    assert run.err.strip().count("\n") == 0 and "does not exist" in run.err


def test_unknown_bucket_is_one_line(tmp_path: Path, s3: Any, cli: Any) -> None:
    make_tree(tmp_path)
    run = cli("ingest", str(tmp_path), "--dataset", "ds", "--bucket", "no-such-bucket-here")
    assert run.code == 2
    assert run.err.strip().splitlines()[-1] == (
        "medimage ingest: error: bucket 'no-such-bucket-here' does not exist "
        "(check --bucket, $MEDIMAGE_BUCKET or the stack's DataBucketName)"
    )
    assert "Traceback" not in run.err


def test_unknown_stack_is_one_line(tmp_path: Path, aws: None, cli: Any) -> None:
    make_tree(tmp_path)
    run = cli("ingest", str(tmp_path), "--dataset", "ds", "--stack", "nothing-here")
    assert run.code == 2
    assert f"stack 'nothing-here' not found in {REGION}" in run.err


def test_missing_credentials_is_one_line(tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """No moto here: botocore fails while signing, before any connection (instance metadata disabled)."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SECURITY_TOKEN", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    make_tree(tmp_path / "data")
    run = cli("ingest", str(tmp_path / "data"), "--dataset", "ds", "--bucket", BUCKET)
    assert run.code == 2
    *_, last = run.err.splitlines()
    assert last.startswith("medimage ingest: error: no AWS credentials: set AWS_PROFILE")
    assert "Traceback" not in run.err


def test_bad_dataset_name_is_rejected(tmp_path: Path, cli: Any) -> None:
    make_tree(tmp_path)
    run = cli("ingest", str(tmp_path), "--dataset", "bad/name", "--bucket", BUCKET)
    assert run.code == 2 and "not a valid dataset name" in run.err
