"""`medimage model list|rollback|submit|scorecard|promote-candidate|drop-candidate|approve|reject`: the
production history of a dataset, swapping it back, a candidate's silent trial (`medimage.ops.trial`) and a
person's sign-off (`medimage.ops.sign_off`)."""

from __future__ import annotations

import argparse
import json
import os

from medimage.cli.common import add_endpoint_arguments, apply_endpoint_arguments
from medimage.core.registry import ProductionPointer
from medimage.core.sign_off import SignOffRecord, sign_off_key
from medimage.ops.stack import BUCKET_ENV

NAME = "model"
HELP = "show a dataset's production history, roll it back, or run a candidate's silent trial"
DESCRIPTION = (
    "The model registry in the data bucket (models/<dataset>/production.json).\n\n"
    "examples:\n"
    "  medimage model list --dataset chestxray2017 --bucket my-data-bucket\n"
    "  MEDIMAGE_BUCKET=my-data-bucket medimage model rollback --dataset chestxray2017\n"
    "  medimage model rollback --dataset chestxray2017 --to 20261125T190500Z-1a2b3c4d-9f8e7d6c\n"
    "  medimage model list --dataset chestxray2017 --stack-json up-output/stack.json   # `medimage up`\n\n"
    "A silent trial: a candidate beside production classifies a share of the site's images without\n"
    "answering (the stack's CandidateTrial / CandidateTrialShare); the scorecard compares the two.\n"
    "  medimage model submit --dataset chestxray2017 --model runs/my-model      # or s3://.../model.tar.gz\n"
    "  medimage model scorecard --dataset chestxray2017\n"
    "  medimage model promote-candidate --dataset chestxray2017\n"
    "  medimage model drop-candidate --dataset chestxray2017 --reason 'misses viral cases'\n\n"
    "A person's sign-off (the stack's ApprovalRequired): the training workflow waits until one answers.\n"
    "  medimage model approve --dataset chestxray2017 --note 'scorecard agrees on 97% of 1,200 images'\n"
    "  medimage model reject --dataset chestxray2017 --note 'viral recall fell on the reviewed images'"
)


ACTIONS = (
    ("list", "print the production version, its history (newest first) and the candidate on trial"),
    ("rollback", "make the previous version (or --to VERSION) production again"),
    ("submit", "gate a model against production on the newest manifest; a pass makes it the candidate"),
    ("scorecard", "compare the candidate with production on the images of its silent trial"),
    ("promote-candidate", "end the trial: the candidate becomes production"),
    ("drop-candidate", "end the trial: production stays, the candidate is dropped"),
    ("approve", "sign off the model waiting for it: the workflow makes it production"),
    ("reject", "refuse the model waiting for a sign-off: production stays"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in ACTIONS:
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--dataset", required=True)
        action.add_argument("--bucket", help=f"the data bucket (default: ${BUCKET_ENV})")
        add_endpoint_arguments(action)
        action.add_argument("--json", action="store_true", help="print the result as JSON")
        if name == "rollback":
            action.add_argument("--to", metavar="VERSION", help="an older version from the history")
        if name == "submit":
            action.add_argument(
                "--model", required=True, help="a model directory (`medimage train`) or s3://.../model.tar.gz"
            )
            action.add_argument("--preset", help="preset (default: the one in the manifest's stats.json)")
        if name == "scorecard":
            action.add_argument("--candidate", metavar="VERSION", help="an earlier trial's candidate")
            action.add_argument("--no-write", action="store_true", help="do not update scorecard.json")
        if name in ("approve", "reject"):
            action.add_argument("--note", default="", help="why (required; kept in the registry's history)")
        if name == "drop-candidate":
            action.add_argument("--reason", default="", help="why the candidate is dropped (recorded)")
        action.set_defaults(func=RUNNERS[name])


def _bucket(args: argparse.Namespace) -> str:
    """``--bucket``, else ``$MEDIMAGE_BUCKET`` (which ``--stack-json`` sets); clients made after this call
    use ``--endpoint-url``."""
    apply_endpoint_arguments(args)
    bucket = args.bucket or os.environ.get(BUCKET_ENV)
    if not bucket:
        raise ValueError(f"no bucket: pass --bucket or --stack-json, or set {BUCKET_ENV}")
    return str(bucket)


def _print(pointer: ProductionPointer, as_json: bool) -> None:
    if as_json:
        print(json.dumps(pointer.to_dict(), indent=2))
        return
    print(f"dataset {pointer.dataset}: production {pointer.version}")
    for i, entry in enumerate(pointer.history):
        accuracy = entry.metrics.get("accuracy")
        shown = f"{accuracy:.4f}" if isinstance(accuracy, int | float) else "-"
        marker = "*" if i == 0 else " "
        print(
            f"{marker} {entry.version:40} {entry.promoted_at:32} accuracy={shown:7} "
            f"sha256={entry.model_sha256[:12]} {entry.action}"
        )
    for withdrawn in pointer.rolled_back:
        why = f" on {withdrawn['reason']}" if withdrawn.get("reason") else ""
        print(f"  {withdrawn['version']:40} rolled back {withdrawn['rolled_back_at']}{why}")
    if pointer.candidate is not None:
        c = pointer.candidate
        print(f"candidate {c.version} since {c.entry.promoted_at} (gated against {c.champion})")
    for trial in pointer.trials[:5]:
        print(f"  trial of {trial['version']:31} {trial['outcome']:9} {trial['ended_at']}")
    for entry in pointer.history:
        if entry.sign_off is not None:
            s = entry.sign_off
            print(f"  {entry.version} signed off by {s.get('by')} at {s.get('at')}: {s.get('note')}")


def _print_sign_offs(record: SignOffRecord) -> None:
    if record.pending is not None:
        p = record.pending
        print(f"awaiting sign-off: {p.version} ({p.stage}) since {p.requested_at}, until {p.expires_at}")
    for d in record.decided[:5]:
        note = f": {d['note']}" if d.get("note") else ""
        print(f"  sign-off of {d.get('version')}: {d.get('outcome')} by {d.get('by')} at {d.get('at')}{note}")


def run_list(args: argparse.Namespace) -> int:
    from medimage.adapters.registry_store import S3RegistryStore
    from medimage.adapters.s3 import S3ObjectStore

    bucket = _bucket(args)
    pointer = S3RegistryStore(bucket).pointer(args.dataset)
    record = SignOffRecord.from_dict(S3ObjectStore(bucket).get_json(sign_off_key(args.dataset)), args.dataset)
    if args.json:
        data = {} if pointer is None else pointer.to_dict()
        pending = None if record.pending is None else record.pending.public()
        print(
            json.dumps({**data, "sign_off": {"pending": pending, "decided": list(record.decided)}}, indent=2)
        )
        return 0 if pointer is not None else 1
    if pointer is None:
        print(f"dataset {args.dataset}: no model has been promoted yet")
    else:
        _print(pointer, False)
    _print_sign_offs(record)
    return 0 if pointer is not None else 1


def run_rollback(args: argparse.Namespace) -> int:
    from medimage.adapters.registry_store import S3RegistryStore
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.services.promote import rollback_production

    bucket = _bucket(args)
    pointer = rollback_production(S3ObjectStore(bucket), S3RegistryStore(bucket), args.dataset, args.to)
    _print(pointer, args.json)
    return 0


def run_submit(args: argparse.Namespace) -> int:
    from medimage.adapters.model_artifacts import S3ModelArtifacts
    from medimage.adapters.registry_store import S3RegistryStore
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.evaluation.champion import LiteRTChampionEvaluator
    from medimage.ops.manifests import find_manifest
    from medimage.ops.trial import DirectoryArtifacts, submit_model

    bucket = _bucket(args)
    store = S3ObjectStore(bucket)
    choice = find_manifest(store, args.dataset, preset=args.preset)
    artifacts = S3ModelArtifacts() if args.model.startswith("s3://") else DirectoryArtifacts()
    result = submit_model(
        store,
        S3RegistryStore(bucket),
        artifacts,
        LiteRTChampionEvaluator(store),
        args.dataset,
        args.model,
        choice.version,
        choice.preset,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        gate = result["gate"]
        print(
            f"{result['version']}: gate {gate['outcome']} on manifest {choice.version} "
            f"(test accuracy {gate['accuracy']}, champion {gate['champion_version']})"
        )
        for reason in gate["reasons"]:
            print(f"  - {reason}")
        if result["promotion"] is not None:
            print(f"  -> {result['promotion']['stage']}")
    return 0 if result["promotion"] is not None else 1


def _print_scorecard(card: dict) -> None:
    def rate(figure: dict) -> str:
        if figure["rate"] is None:
            return "-"
        interval = f"95% {figure['low']:.3f}-{figure['high']:.3f}"
        return f"{figure['rate']:.3f} ({figure['count']}/{figure['n']}, {interval})"

    latency, confidence, reviewed = card["latency_ms"], card["confidence"], card["reviewed"]
    print(
        f"trial of {card['candidate_version']} against {', '.join(card['champion_versions']) or '-'} "
        f"on {card['pairs']} images (api {card['by_source']['api']}, dropped {card['by_source']['s3']})"
    )
    print(f"  agreement            {rate(card['agreement'])}")
    for change, count in card["disagreements"].items():
        print(f"    {change:30} {count}")
    print(f"  review rate champion {rate(card['review']['champion'])}")
    print(f"  review rate candidate {rate(card['review']['candidate'])}")
    print(
        f"  confidence           champion {confidence['champion_mean']}  candidate "
        f"{confidence['candidate_mean']}  shift {confidence['mean_shift']}"
    )
    for who in ("champion", "candidate"):
        print(f"  latency {who:12} p50 {latency[who]['p50']} ms  p95 {latency[who]['p95']} ms")
    print(f"  reviewed images      {reviewed['images']} (labelled through the review queue)")
    print(f"    champion accuracy  {rate(reviewed['champion_accuracy'])}")
    print(f"    candidate accuracy {rate(reviewed['candidate_accuracy'])}")
    print(f"  written to {card['scorecard_key']}")


def run_scorecard(args: argparse.Namespace) -> int:
    from medimage.adapters.registry_store import S3RegistryStore
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.ops.trial import candidate_version, compute_scorecard

    bucket = _bucket(args)
    version = candidate_version(S3RegistryStore(bucket), args.dataset, args.candidate)
    card = compute_scorecard(S3ObjectStore(bucket), args.dataset, version, write=not args.no_write)
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        _print_scorecard(card)
    return 0


def _end_trial(args: argparse.Namespace, promote: bool) -> int:
    from medimage.adapters.registry_store import S3RegistryStore
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.ops.trial import end_trial

    bucket = _bucket(args)
    reason = getattr(args, "reason", "")
    pointer = end_trial(S3ObjectStore(bucket), S3RegistryStore(bucket), args.dataset, promote, reason)
    _print(pointer, args.json)
    return 0


def run_promote_candidate(args: argparse.Namespace) -> int:
    return _end_trial(args, promote=True)


def run_drop_candidate(args: argparse.Namespace) -> int:
    return _end_trial(args, promote=False)


def _answer(args: argparse.Namespace, approve: bool) -> int:
    from medimage.adapters.aws import client
    from medimage.adapters.s3 import S3ObjectStore
    from medimage.ops.sign_off import answer_sign_off

    bucket = _bucket(args)
    sent = answer_sign_off(
        S3ObjectStore(bucket), client("stepfunctions"), client("sts"), args.dataset, approve, args.note
    )
    if args.json:
        print(json.dumps(sent, indent=2))
    else:
        decision = sent["decision"]
        print(
            f"{sent['version']}: {decision['outcome']} by {decision['by']}; the workflow "
            f"{'promotes it' if approve else 'leaves production as it is'} (execution {sent['execution']})"
        )
    return 0


def run_approve(args: argparse.Namespace) -> int:
    return _answer(args, approve=True)


def run_reject(args: argparse.Namespace) -> int:
    return _answer(args, approve=False)


RUNNERS = {
    "list": run_list,
    "rollback": run_rollback,
    "submit": run_submit,
    "scorecard": run_scorecard,
    "promote-candidate": run_promote_candidate,
    "drop-candidate": run_drop_candidate,
    "approve": run_approve,
    "reject": run_reject,
}
