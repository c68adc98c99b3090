"""Guarantees of a commit: a manifest version is immutable and complete; at most one execution per
manifest version. Two ``_commit``s at once, a split crash after each of its AWS calls, and AWS faults, on
the template's resources in moto with the real annotate and split handlers (the bucket keeps versions, so
a rewritten manifest file shows)."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator

import boto3
import pytest

from harness.faults.injector import FaultInjector
from harness.faults.plan import CrashRule, FaultRule
from harness.faults.races import WriteRendezvous, run_threads
from medimage.core import layout
from medimage.local.environment import LocalAws
from tests.faults.pipeline import DS, audit, bad, commit_event, executions, images, put

SPLIT = "SplitFunction"


@pytest.fixture
def env() -> Iterator[LocalAws]:
    from moto import mock_aws

    from medimage.adapters.aws import reset_clients

    with mock_aws():
        reset_clients()
        env = LocalAws(parameters={"MinNewImages": "1"}, concurrent=True).create()
        boto3.client("s3").put_bucket_versioning(
            Bucket=env.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        yield env
    reset_clients()


def latest(env: LocalAws) -> dict | None:
    listed = boto3.client("s3").list_objects_v2(Bucket=env.bucket, Prefix=layout.latest_manifest_key(DS))
    return listed.get("Contents")


def stats(env: LocalAws, version: str) -> dict:
    key = layout.manifest_prefix(DS, version) + "stats.json"
    return json.loads(boto3.client("s3").get_object(Bucket=env.bucket, Key=key)["Body"].read())


def test_two_commits_at_once_write_one_immutable_manifest_version_and_start_one_execution(env):
    # GIVEN every image uploaded twice, 20 of them again under new keys, a bad file, all annotated
    good = images(30, seed=6)
    copies = [(key.replace(".jpeg", "-again.jpeg"), data) for key, data in good[:20]]
    put(env, good + good + copies + bad(1))
    env.pump()
    # WHEN two split invocations handle a _commit at the same moment (both read before either writes)
    event = commit_event(env)
    with WriteRendezvous("train.csv", ["first", "second"]):
        split = env.functions[SPLIT]
        # Two containers of the function: each its own instance (one invocation at a time each).
        calls = {
            name: dataclasses.replace(split, _lock=threading.Lock()).invoke for name in ("first", "second")
        }
        results = run_threads({name: lambda c=call: c(event) for name, call in calls.items()})
    # THEN one manifest version, written once, with the right counts, and one execution
    for name, result in results.items():
        assert not isinstance(result, Exception), f"{name}: {result}"
    versions = {r["results"][0]["version"] for r in results.values()}
    assert len(versions) == 1
    checked = audit(env, {k for k, _ in good + copies + bad(1)})
    assert checked.manifest_versions == sorted(versions)
    assert checked.executions_per_version == {versions.pop(): 1}
    written = stats(env, checked.manifest_versions[0])
    assert (written["images"], written["duplicates"], written["quarantined"]) == (30, 20, {"empty": 1})


def crash_steps(env: LocalAws) -> int:
    """How many AWS calls one clean commit of one new image makes."""
    put(env, images(2, seed=20, prefix="clean-"))
    env.pump()
    with FaultInjector() as injector:
        injector.wrap_local_aws(env)
        boto3.client("s3").put_object(Bucket=env.bucket, Key=layout.commit_key(DS), Body=b"")
        env.pump()
    return sum(1 for c in injector.calls if c.function == SPLIT)


def test_a_split_crash_after_any_aws_call_converges_on_the_retry(env):
    """The commit event is retried (as Lambda retries an asynchronous invocation): whatever call the
    function died before, the retry completes the same version, and starts its execution once."""
    steps = crash_steps(env)
    assert steps >= 10
    functions = dict(env.functions)
    keys = set()
    for step in range(steps):
        upload = images(2, seed=100 + step, prefix=f"s{step}-")
        keys |= {k for k, _ in upload}
        put(env, upload)
        env.pump()
        env.functions = dict(functions)
        with FaultInjector(crashes=[CrashRule(function=SPLIT, after_calls=step)]) as injector:
            injector.wrap_local_aws(env)
            boto3.client("s3").put_object(Bucket=env.bucket, Key=layout.commit_key(DS), Body=b"")
            report = env.pump()
        assert any("FunctionCrashed" in error for _, error in report.errors), f"no crash at step {step}"
        env.functions = functions
        checked = audit(env, keys)
        assert len(checked.manifest_versions) == step + 2  # the clean one and one per step
    assert set(checked.executions_per_version) == set(checked.manifest_versions)


def test_commits_under_throttles_server_errors_and_lost_answers_converge(env):
    keys: set[str] = set()
    with FaultInjector([FaultRule(rate=0.3, function="*")], seed=3) as injector:
        injector.wrap_local_aws(env)
        for batch in range(3):
            upload = images(6, seed=200 + batch, prefix=f"b{batch}-")
            keys |= {k for k, _ in upload}
            put(env, upload)
            env.pump()
            boto3.client("s3").put_object(Bucket=env.bucket, Key=layout.commit_key(DS), Body=b"")
            env.pump()
    assert sum(1 for f in injector.faults if f.function == SPLIT) >= 10
    checked = audit(env, keys)
    assert len(checked.manifest_versions) == 3 and checked.executions == 3


def test_a_commit_that_died_half_way_leaves_no_incomplete_version_and_its_retry_completes_it(env):
    put(env, images(8, seed=30))
    env.pump()
    event = commit_event(env)
    crash = CrashRule(function=SPLIT, after_calls=6)
    with FaultInjector(crashes=[crash]) as injector, pytest.raises(Exception, match="died before"):
        injector.wrap(env.functions[SPLIT]).invoke(event)
    written = [c.params_summary["Key"] for c in injector.calls if c.operation == "PutObject"]
    assert written and not any(k.endswith("stats.json") for k in written)
    assert executions(env) == [] and latest(env) is None  # nothing points at the partial version yet
    env.functions[SPLIT].invoke(event)
    checked = audit(env, {k for k, _ in images(8, seed=30)})
    assert len(checked.manifest_versions) == 1 and checked.executions == 1
