"""End to end on `medimage up`: a new model's way into production at a site.

With ``ApprovalRequired`` a commit trains a model that waits for a person; `medimage model approve` makes it
production, with the approver and the note in the history. The next model that passes the gate becomes the
candidate and runs silently beside production on 200 dropped images and 50 API calls, while it waits: its
scorecard (agreement, and each model's accuracy on the images a reviewer labeled) matches a recount of the
stored pairs, and no caller sees its answer. Approved, it is production; a third model is rejected and
production stays; a forced review-rate alarm then rolls production back to the first within a minute.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest

from medimage.core import layout
from medimage.core.presets import get_preset
from medimage.core.sign_off import sign_off_key
from medimage.core.trial import pairs_prefix
from medimage.local.synthetic import generate
from tests.e2e.local_stack import running_up, wait_for
from tests.e2e.test_alarm_rollback import force_alarm
from tests.e2e.test_up import CLI, DS, LEARNS, http

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

PARAMETERS = (
    "ApprovalRequired=true",
    "CandidateTrial=true",
    "CandidateTrialShare=1",
    # The review-rate alarm watches the default dataset.
    f"InferenceDefaultDataset={DS}",
    "ModelCheckIntervalSeconds=0",
    # Any answer short of certain goes to review (the blends below), for a reviewer to label.
    "ReviewThreshold=0.9999",
)
DROPPED = 200
API_CALLS = 50
LABELED_BY_REVIEWER = 12


def learns(seed: int) -> list[str]:
    return [arg for pair in LEARNS for arg in ("-H", pair.replace("seed=1", f"seed={seed}"))]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600, check=False)


def blend(a: bytes, b: bytes) -> bytes:
    """Half of one class's picture and half of the other's: an image the two models may disagree on."""
    import io

    from PIL import Image

    first, second = (np.asarray(Image.open(io.BytesIO(x)).convert("L"), dtype=np.float32) for x in (a, b))
    out = io.BytesIO()
    Image.fromarray(((first + second) / 2).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


class Site:
    """The stack as the test's clients see it."""

    def __init__(self, up: Any) -> None:
        self.up = up
        self.stack_json = str(up.stack_json)
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.s3 = session.client("s3", endpoint_url=up.stack["endpoint_url"])
        self.sfn = session.client("stepfunctions", endpoint_url=up.stack["endpoint_url"])
        self.bucket = up.stack["bucket"]

    def json(self, key: str) -> Any:
        try:
            return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except self.s3.exceptions.NoSuchKey:
            return None

    def pending(self) -> dict[str, Any] | None:
        return (self.json(sign_off_key(DS)) or {}).get("pending")

    def production(self) -> dict[str, Any] | None:
        return self.json(layout.production_pointer_key(DS))

    def executions(self) -> list[dict[str, Any]]:
        return self.sfn.list_executions(stateMachineArn=self.up.stack["state_machine_arn"])["executions"]

    def run_until_sign_off(self, seed: int) -> dict[str, Any]:
        """A training run that learns the set; returns its pending sign-off request."""
        before = self.pending()
        started = cli("pipeline", "start", "--dataset", DS, "--stack-json", self.stack_json, *learns(seed))
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]

        def asked() -> dict[str, Any] | None:
            request = self.pending()
            return request if request and request != before else None

        return wait_for(f"the sign-off request of seed {seed}", asked, self.up.proc)

    def answer(self, verb: str, note: str, request: dict[str, Any]) -> str:
        answered = cli("model", verb, "--dataset", DS, "--stack-json", self.stack_json, "--note", note)
        assert answered.returncode == 0, answered.stdout[-2000:] + answered.stderr[-2000:]

        def ended() -> str | None:
            status = self.sfn.describe_execution(executionArn=request["execution"])["status"]
            return None if status == "RUNNING" else status

        assert wait_for(f"the {verb}d execution", ended, self.up.proc, timeout_s=120) == "SUCCEEDED"
        events = self.sfn.get_execution_history(executionArn=request["execution"])["events"]
        return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e][-1]

    def stored_pairs(self, candidate: str) -> list[dict[str, Any]]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=pairs_prefix(DS, candidate))
        pairs = []
        for item in listed.get("Contents", []):
            body = self.s3.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read().decode()
            pairs += [json.loads(line) for line in body.splitlines() if line.strip()]
        return pairs


def test_a_new_model_is_signed_off_trialled_silently_and_rolled_back_on_an_alarm(tmp_path: Path):
    preset = get_preset(DS)
    with running_up(
        tmp_path, tmp_path / "up.out", ["--epochs", "2", *(f"--parameter={p}" for p in PARAMETERS)]
    ) as up:
        site = Site(up)
        for f in generate(preset, per_class=60, size=32, seed=7):
            site.s3.put_object(
                Bucket=site.bucket, Key=f"incoming/labeled/{DS}/{f.folder}/{f.filename}", Body=f.data
            )
        site.s3.put_object(Bucket=site.bucket, Key=layout.commit_key(DS), Body=b"")

        # GIVEN the commit's run: its short training (two epochs) may not pass the gate; one that learns does
        wait_for(
            "the commit's execution",
            lambda: site.pending() is not None or any(e["status"] != "RUNNING" for e in site.executions()),
            up.proc,
        )
        first = site.pending() or site.run_until_sign_off(seed=1)
        assert site.production() is None, "nothing serves before a person signs off"
        assert site.answer("approve", "first model, gate read", first) == "SignedOff"
        pointer = site.production()
        assert pointer["version"] == first["version"]
        assert pointer["history"][0]["sign_off"]["note"] == "first model, gate read"
        assert pointer["history"][0]["sign_off"]["by"].startswith("arn:aws:")

        # WHEN the next model passes the gate: the candidate, waiting, and run silently beside production
        second = site.run_until_sign_off(seed=2)
        waiting = site.production()
        assert waiting["version"] == first["version"] and waiting["candidate"]["version"] == second["version"]

        dropped = generate(preset, per_class=80, size=32, seed=11)
        answers = []
        for f in dropped[:API_CALLS]:
            status, body = http(
                f"{up.stack['api_url']}predict?dataset={DS}", f.data, {"Content-Type": "image/jpeg"}
            )
            assert status == 200, body
            answers.append(json.loads(body))
        # THEN no caller sees the candidate: every answer is production's
        assert {a["model_version"] for a in answers} == {first["version"]}
        assert not any(second["version"] in json.dumps(a) for a in answers)

        # The labels a reviewer will give: a dropped image's own; a blend's, the first picture's
        truth: dict[str, str] = {}
        for f in dropped:
            truth[f"{layout.UNLABELED_PREFIX}{DS}/dropped-{f.filename}"] = f.label
        for i, (a, b) in enumerate(zip(dropped[:40], dropped[-40:], strict=True)):
            truth[f"{layout.UNLABELED_PREFIX}{DS}/blend-{i}.png"] = a.label
            site.s3.put_object(
                Bucket=site.bucket,
                Key=f"{layout.UNLABELED_PREFIX}{DS}/blend-{i}.png",
                Body=blend(a.data, b.data),
            )
        for f in dropped:
            site.s3.put_object(
                Bucket=site.bucket, Key=f"{layout.UNLABELED_PREFIX}{DS}/dropped-{f.filename}", Body=f.data
            )

        # (an API answer's pair waits in the container until 25 are due or the next batch of drops writes it)
        def all_paired() -> list[dict[str, Any]] | None:
            pairs = site.stored_pairs(second["version"])
            return pairs if len(pairs) >= DROPPED + API_CALLS else None

        wait_for("every pair of the trial", all_paired, up.proc, timeout_s=180)
        # AND a reviewer labels some of the images production sent to review
        queue = json.loads(
            cli("review", "list", "--dataset", DS, "--stack-json", site.stack_json, "--json").stdout
        )
        queued = [item for item in queue if item["source_key"] in truth][:LABELED_BY_REVIEWER]
        assert len(queued) >= 5, queue
        for item in queued:
            labeled = cli(
                "review",
                "label",
                item["name"],
                truth[item["source_key"]],
                "--dataset",
                DS,
                "--stack-json",
                site.stack_json,
                "--reviewer",
                "dr-test",
            )
            assert labeled.returncode == 0, labeled.stderr
        shown = cli("model", "scorecard", "--dataset", DS, "--stack-json", site.stack_json, "--json")
        assert shown.returncode == 0, shown.stderr
        card = json.loads(shown.stdout)

        # THEN the scorecard is what a recount of the stored pairs says
        pairs = site.stored_pairs(second["version"])
        agree = sum(p["champion"]["label"] == p["candidate"]["label"] for p in pairs)
        assert card["pairs"] == len(pairs) == DROPPED + API_CALLS
        assert card["by_source"] == {"api": API_CALLS, "s3": DROPPED}
        assert (card["agreement"]["count"], card["agreement"]["n"]) == (agree, len(pairs))
        verdicts = {item["source_key"]: truth[item["source_key"]] for item in queued}
        reviewed = [p for p in pairs if p["image_key"] in verdicts]
        assert card["reviewed"]["images"] == len(reviewed) == len(queued)
        for model in ("champion", "candidate"):
            right = sum(p[model]["label"] == verdicts[p["image_key"]] for p in reviewed)
            assert card["reviewed"][f"{model}_accuracy"]["count"] == right

        # WHEN a person approves it: it is production, with who, the note and the scorecard of that moment
        assert site.answer("approve", "trial agrees, reviewed cases fine", second) == "SignedOff"
        pointer = site.production()
        assert pointer["version"] == second["version"] and pointer.get("candidate") is None
        signed = pointer["history"][0]["sign_off"]
        assert signed["note"] == "trial agrees, reviewed cases fine" and signed["by"].startswith("arn:aws:")
        assert signed["scorecard"]["pairs"] == DROPPED + API_CALLS

        # AND a third model, rejected, changes nothing
        third = site.run_until_sign_off(seed=3)
        assert site.answer("reject", "not this one", third) == "SignOffRejected"
        assert site.production()["version"] == second["version"]

        # WHEN the review-rate alarm fires within the watch window: production goes back to the first model
        alarm = up.stack["alarms"]["InferenceReviewRateAlarm"]
        forced = time.monotonic()
        force_alarm(up.stack["endpoint_url"], alarm)
        wait_for(
            "production back on the first model",
            lambda: site.production()["version"] == first["version"],
            up.proc,
            timeout_s=60,
        )
        print(f"rolled back {time.monotonic() - forced:.1f} s after the alarm was forced")
        listed = cli("model", "list", "--dataset", DS, "--stack-json", site.stack_json)
        assert listed.returncode == 0, listed.stderr
        assert f"on alarm {alarm}" in listed.stdout, listed.stdout
        assert f"sign-off of {third['version']}: rejected by arn:aws:" in listed.stdout, listed.stdout
        assert "not this one" in listed.stdout, listed.stdout
