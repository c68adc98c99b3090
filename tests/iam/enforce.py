"""A pytest plugin that runs tests with each function limited to its own IAM policy from template.yaml.

Load it with ``-p enforce`` (``tests/iam`` and ``tests/template`` on PYTHONPATH) and point
``MEDIMAGE_IAM_CFN`` at the translated template (function_policies.translate). Every boto3 call a
function's code makes is attributed to that function: the thread's stack holds its handler file
(``functions/<name>/app.py``), or a task it submitted to a thread pool runs (the packer's image reads),
or, for a worker thread of boto3's transfer manager, the one thread waiting in a transfer does. Calls of
test code, of the local event delivery and of moto itself belong to no function and pass unchecked. Two
enforcements, both failing the call as AWS would (AccessDenied):

1. Every service, conditions included: the call's authorizations (calls.requests_for) are evaluated
   against the function's statements (policy_eval) before it is sent. A read of a missing S3 key answers
   403 instead of 404 unless s3:ListBucket is allowed too, as S3 does.
2. S3 and SQS, by moto itself: each function is an IAM user in moto with its statements (conditions
   removed: moto turns any condition into a deny) and its calls are signed with that user's key; every
   other call is signed as an administrator user. moto then authorizes each request per resource.

A test during which a call was denied fails, even if the code under test swallowed the error. What ran
is written to ``MEDIMAGE_IAM_RECORD`` (JSON) at the end. ``MEDIMAGE_IAM_DROP=Function:Label,...`` removes
statements (by Sid or SAM policy template), to prove that a missing permission is caught;
``MEDIMAGE_IAM_LAYERS`` (default ``evaluator,moto``) picks the enforcements, so that each can be shown
to catch a missing permission on its own.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from botocore import handlers as botocore_handlers
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSResponse
from botocore.credentials import Credentials
from calls import UnmappedCall, missing_key_read, requests_for
from function_policies import FunctionPolicies, StackBinding
from policy_eval import Evaluation, Request, evaluate
from thread_attribution import attribute_pool_tasks, submitted_function

from harness.faults.plan import RecordedCall, summarize
from medimage.local.account import ACCOUNT, REGION

ENV_CFN = "MEDIMAGE_IAM_CFN"
ENV_RECORD = "MEDIMAGE_IAM_RECORD"
ENV_DROP = "MEDIMAGE_IAM_DROP"
ENV_LAYERS = "MEDIMAGE_IAM_LAYERS"

_FUNCTION = "medimage_iam_function"
_SUMMARY = "medimage_iam_summary"
_DENIED_HERE = "medimage_iam_denied"
_ADMIN = "medimage-iam-admin"
# Services whose requests moto authorizes per resource (others: only against "*").
MOTO_ENFORCED = frozenset({"s3", "sqs"})
_DENIED_CODE = {"s3": "AccessDenied", "sqs": "AccessDenied"}
_TRANSFER_MARKERS = (f"{os.sep}s3transfer{os.sep}", f"{os.sep}boto3{os.sep}s3{os.sep}")


def _frames(frame: FrameType | None) -> list[FrameType]:
    out = []
    while frame is not None:
        out.append(frame)
        frame = frame.f_back
    return out


class Enforcer:
    def __init__(
        self,
        policies: FunctionPolicies,
        drop: dict[str, frozenset[str]],
        moto_layer: bool = True,
        evaluator_layer: bool = True,
    ) -> None:
        self.policies = policies
        self.drop = drop
        self.moto_layer = moto_layer
        self.evaluator_layer = evaluator_layer
        self.handler_files = {str(path): name for path, name in policies.handler_files.items()}
        self.lock = threading.Lock()
        self.evaluations: Counter[str] = Counter()
        self.records: dict[str, dict[str, Any]] = {}
        self.denials: list[dict[str, Any]] = []
        self.unattributed: Counter[str] = Counter()
        self._checked = 0

    # ------------------------------------------------------------------ attribution
    def _function_in(self, frames: list[FrameType]) -> str | None:
        for frame in frames:
            name = self.handler_files.get(frame.f_code.co_filename)
            if name:
                return name
        return None

    def attribute(self) -> str | None:
        frames = _frames(sys._getframe(1))
        function = self._function_in(frames) or submitted_function()
        if function or not any(m in f.f_code.co_filename for f in frames for m in _TRANSFER_MARKERS):
            return function
        # A transfer manager worker: the function whose thread waits inside the same kind of transfer.
        me = threading.get_ident()
        waiting = set()
        for ident, frame in sys._current_frames().items():
            others = _frames(frame)
            if ident != me and any(m in f.f_code.co_filename for f in others for m in _TRANSFER_MARKERS):
                found = self._function_in(others)
                if found:
                    waiting.add(found)
        return waiting.pop() if len(waiting) == 1 else None

    # ------------------------------------------------------------------ the stack of the moment
    def binding(self, function: str) -> StackBinding:
        buckets: list[str] = []
        try:
            from moto.s3.models import s3_backends

            buckets = list(s3_backends[ACCOUNT]["aws"].buckets)
        except Exception:  # outside moto: only DATA_BUCKET can name the bucket
            buckets = []
        return self.policies.binding_for(function, os.environ, buckets)

    def authorize(self, function: str, requests: list[Request], binding: StackBinding) -> list[Evaluation]:
        statements = self.policies.statements(function, binding, self.drop.get(function, frozenset()))
        return [evaluate(statements, r) for r in requests]

    def grants_used(self, function: str, evaluation: Evaluation, binding: StackBinding) -> list[list[Any]]:
        statements = self.policies.statements(function, binding, self.drop.get(function, frozenset()))
        return [
            [st.label, action, index]
            for st in statements
            if st.label in evaluation.allowed_by
            for action, index in st.grants_used(evaluation.request)
        ]

    def _record(
        self,
        function: str,
        call: RecordedCall,
        evaluation: Evaluation,
        binding: StackBinding,
        kind: str = "call",
    ) -> None:
        r = evaluation.request
        entry = {
            "function": function,
            "kind": kind,
            "operation": f"{call.service}:{call.operation}",
            "action": r.action,
            "resource": r.resource,
            "context": dict(r.context),
            "decision": evaluation.decision.value,
            "allowed_by": list(evaluation.allowed_by),
            "grants": self.grants_used(function, evaluation, binding) if evaluation.allowed else [],
        }
        key = json.dumps(entry, sort_keys=True)
        with self.lock:
            self.evaluations[key] += 1
            self.records[key] = entry
            if not evaluation.allowed and self.evaluator_layer:
                self.denials.append(entry)

    # ------------------------------------------------------------------ botocore handlers
    def before_parameter_build(self, params: Any, context: dict[str, Any], **_: Any) -> None:
        context[_FUNCTION] = self.attribute()
        context[_SUMMARY] = summarize(params) if isinstance(params, dict) else {}

    def before_call(self, model: Any, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict] | None:
        function = context.get(_FUNCTION)
        service = model.service_model.service_name
        if not function:
            self.unattributed[f"{service}:{model.name}"] += 1
            return None
        call = RecordedCall(service, model.name, dict(context.get(_SUMMARY, {})), function)
        binding = self.binding(function)
        try:
            requests = requests_for(call, REGION, ACCOUNT)
        except (UnmappedCall, KeyError) as exc:
            evaluation = Evaluation(Request(f"{service}:{model.name}", f"unmapped ({exc})"), _implicit_deny())
            self._record(function, call, evaluation, binding)
            if not self.evaluator_layer:
                return None
            context[_DENIED_HERE] = True
            return _denied(service, f"{function}: no IAM mapping for {service}:{model.name} ({exc})")
        kinds = ["call"] * len(requests)
        through = self._through_kms(requests, binding)
        requests, kinds = requests + through, kinds + ["through_dynamodb"] * len(through)
        denied = None
        for kind, evaluation in zip(kinds, self.authorize(function, requests, binding), strict=True):
            self._record(function, call, evaluation, binding, kind)
            if not evaluation.allowed and denied is None:
                denied = evaluation
        if denied is not None and self.evaluator_layer:
            context[_DENIED_HERE] = True
            return _denied(service, f"{function} is not allowed {denied.request.describe()} by template.yaml")
        return None

    def _through_kms(self, requests: list[Request], binding: StackBinding) -> list[Request]:
        """A table encrypted with a customer managed key is read (kms:Decrypt) and written
        (kms:GenerateDataKey) through DynamoDB with the caller's permissions."""
        out = []
        for r in requests:
            if not r.action.startswith("dynamodb:"):
                continue
            key = self.policies.table_key(r.resource, binding)
            if key is None:
                continue
            writes = {
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
                "dynamodb:BatchWriteItem",
            }
            actions = ("kms:Decrypt", "kms:GenerateDataKey") if r.action in writes else ("kms:Decrypt",)
            out += [Request(a, key, {"aws:SecureTransport": "true"}) for a in actions]
        return out

    def after_call(
        self, http_response: Any, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        function = context.get(_FUNCTION)
        service = model.service_model.service_name
        status = getattr(http_response, "status_code", 200)
        if function and self.moto_layer and status == 403 and not context.get(_DENIED_HERE):
            # moto's own authorization refused the request signed with the function's key.
            entry = {"function": function, "kind": "moto", "operation": f"{service}:{model.name}"}
            entry |= {"action": "", "resource": json.dumps(context.get(_SUMMARY, {})), "context": {}}
            with self.lock:
                self.denials.append(entry | {"decision": "moto_denied", "allowed_by": []})
        if not function or service != "s3" or model.name not in ("HeadObject", "GetObject") or status != 404:
            return
        call = RecordedCall(service, model.name, dict(context.get(_SUMMARY, {})), function)
        binding = self.binding(function)
        (evaluation,) = self.authorize(function, [missing_key_read(call)], binding)
        self._record(function, call, evaluation, binding, kind="missing_key")
        if not evaluation.allowed and self.evaluator_layer:
            context[_DENIED_HERE] = True
            # S3 refuses to say that a key is missing to a caller that may not list the bucket.
            parsed["Error"] = {"Code": "AccessDenied", "Message": "Access Denied (no s3:ListBucket)"}
            parsed.setdefault("ResponseMetadata", {})["HTTPStatusCode"] = 403
            context["error_code_override"] = "AccessDenied"

    # ------------------------------------------------------------------ moto's own enforcement
    def request_created(self, request: Any, **_: Any) -> None:
        if not self.moto_layer:
            return
        authorization = request.headers.get("Authorization")
        if not authorization or "Credential=" not in str(authorization):
            return
        scope = str(authorization).split("Credential=", 1)[1].split(",", 1)[0].split("/")
        region, service = scope[2], scope[3]
        function = request.context.get(_FUNCTION)
        user = function if function and service in MOTO_ENFORCED else _ADMIN
        key, secret = self._moto_user(user)
        if "X-Amz-Security-Token" in request.headers:
            del request.headers["X-Amz-Security-Token"]
        signer = S3SigV4Auth if service == "s3" else SigV4Auth
        signer(Credentials(key, secret), service, region).add_auth(request)

    def _moto_user(self, user: str) -> tuple[str, str]:
        from moto.iam.models import iam_backends

        backend = iam_backends[ACCOUNT]["aws"]
        with self.lock:
            if user not in backend.users:
                backend.create_user(REGION, user)
                backend.create_access_key(user)
            if user == _ADMIN:
                document = {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
                }
            else:
                statements = self.policies.statements(
                    user, self.binding(user), self.drop.get(user, frozenset())
                )
                document = {"Version": "2012-10-17", "Statement": [_for_moto(s) for s in statements]}
            text = json.dumps(document, sort_keys=True)
            if backend.users[user].policies.get("template") != text:
                backend.put_user_policy(user, "template", text)
            access_key = backend.users[user].access_keys[0]
            return access_key.access_key_id, access_key.secret_access_key

    # ------------------------------------------------------------------ results
    def new_denials(self) -> list[dict[str, Any]]:
        with self.lock:
            fresh = self.denials[self._checked :]
            self._checked = len(self.denials)
        return fresh

    def dump(self, path: Path) -> None:
        rows = [{**entry, "count": self.evaluations[key]} for key, entry in self.records.items()]
        rows.sort(key=lambda e: (e["function"], e["action"], e["resource"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "evaluations": rows,
                    "denials": self.denials,
                    "unattributed_calls": dict(sorted(self.unattributed.items())),
                    "dropped": {k: sorted(v) for k, v in self.drop.items()},
                    "layers": [
                        n for n, on in (("evaluator", self.evaluator_layer), ("moto", self.moto_layer)) if on
                    ],
                },
                indent=1,
            ),
            encoding="utf-8",
        )


def describe(denial: dict[str, Any]) -> str:
    if denial["kind"] == "moto":
        return f"{denial['function']}: moto refused {denial['operation']} {denial['resource']}"
    context = f" {denial['context']}" if denial["context"] else ""
    return (
        f"{denial['function']}: {denial['action']} on {denial['resource']}{context} ({denial['operation']})"
    )


def _implicit_deny() -> Any:
    from policy_eval import Decision

    return Decision.IMPLICIT_DENY


def _for_moto(statement: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"Effect": statement.effect}
    for name, value in (
        ("Action", statement.actions),
        ("NotAction", statement.not_actions),
        ("Resource", statement.resources),
        ("NotResource", statement.not_resources),
    ):
        if value:
            doc[name] = list(value)
    return doc


def _denied(service: str, message: str) -> tuple[AWSResponse, dict[str, Any]]:
    code = _DENIED_CODE.get(service, "AccessDeniedException")
    response = AWSResponse("https://iam.local/denied", 403, {}, None)
    parsed = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 403}}
    return response, parsed


def _parse_drop(text: str) -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        function, _, label = item.partition(":")
        out.setdefault(function, set()).add(label)
    return {k: frozenset(v) for k, v in out.items()}


_ENFORCER: Enforcer | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _ENFORCER
    cfn = json.loads(Path(os.environ[ENV_CFN]).read_text(encoding="utf-8"))
    layers = {part.strip() for part in os.environ.get(ENV_LAYERS, "evaluator,moto").split(",")}
    unknown = layers - {"evaluator", "moto"}
    if unknown:
        raise pytest.UsageError(f"{ENV_LAYERS}: unknown layers {sorted(unknown)}")
    drop = _parse_drop(os.environ.get(ENV_DROP, ""))
    _ENFORCER = Enforcer(FunctionPolicies(cfn), drop, "moto" in layers, "evaluator" in layers)
    moto_layer = _ENFORCER.moto_layer
    attribute_pool_tasks(_ENFORCER.attribute)
    # Registered for every botocore session made from now on, as moto registers its own stub: mock_aws
    # replaces boto3's default session, so a handler on today's session would miss tomorrow's clients.
    botocore_handlers.BUILTIN_HANDLERS.extend(
        [
            ("before-parameter-build", _ENFORCER.before_parameter_build),
            ("before-call", _ENFORCER.before_call, botocore_handlers.REGISTER_FIRST),
            ("after-call", _ENFORCER.after_call, botocore_handlers.REGISTER_FIRST),
            ("request-created", _ENFORCER.request_created, botocore_handlers.REGISTER_LAST),
        ]
    )
    if moto_layer:
        from moto import settings

        settings.INITIAL_NO_AUTH_ACTION_COUNT = 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    outcome = yield
    if _ENFORCER is None:
        return
    denials = _ENFORCER.new_denials()
    if denials:
        lines = "\n".join(f"  {describe(d)}" for d in denials[:10])
        outcome.force_exception(AssertionError(f"calls template.yaml does not allow:\n{lines}"))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ENFORCER is not None and os.environ.get(ENV_RECORD):
        _ENFORCER.dump(Path(os.environ[ENV_RECORD]))
