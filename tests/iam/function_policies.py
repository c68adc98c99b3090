"""Each function's IAM statements as the SAM translator expands them (policy templates such as
SQSPollerPolicy or DynamoDBReadPolicy become real statements), resolved for the stack a test runs on, and
the calls AWS itself makes with the function's role (event source polling, dead-letter sends, KMS through
SQS and DynamoDB), derived from the same template.

The translated template comes from tests/template/translate.py (SAM's own translator, in .venv-sam)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from policy_eval import Request, Statement

from medimage.local.account import ACCOUNT, REGION
from medimage.local.template import Resolver
from medimage.template_file import Intrinsic, load_template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SAM_PYTHON = Path(os.environ.get("MEDIMAGE_SAM_PYTHON", REPO / ".venv-sam" / "bin" / "python"))
TRANSLATE = REPO / "tests" / "template" / "translate.py"

Json = dict[str, Any]


def translate(template: Path = TEMPLATE) -> Json:
    """The CloudFormation template SAM makes of ``template``."""
    proc = subprocess.run(
        [str(SAM_PYTHON), str(TRANSLATE), str(template)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"SAM transform failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _sid(doc: Any) -> str | None:
    """A statement's Sid; for one under ``Fn::If``, the Sid of the statement it grants."""
    if isinstance(doc, dict) and "Fn::If" in doc:
        return _sid(doc["Fn::If"][1])
    return doc.get("Sid") if isinstance(doc, dict) else None


def _target(value: Any) -> str | None:
    """The logical id a Ref / GetAtt points at (JSON form, or the short form of the raw template)."""
    if isinstance(value, Intrinsic) and value.name in ("Ref", "GetAtt"):
        return value.value if value.name == "Ref" else value.value[0]
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        if "Fn::GetAtt" in value:
            att = value["Fn::GetAtt"]
            return att[0] if isinstance(att, list) else str(att).split(".")[0]
    return None


@dataclass(frozen=True)
class RawStatement:
    """A statement of a function's role before resolution; ``label`` = its Sid, or the SAM policy template
    (``SQSPollerPolicy``, ``DeadLetterQueuePolicy``) it came from."""

    function: str
    label: str
    doc: Json


@dataclass(frozen=True)
class ImpliedCall:
    """A call AWS makes with the function's role, not through the function's code."""

    function: str
    request: Request
    why: str


@dataclass
class StackBinding:
    """Names and ARNs of the stack's resources, for resolving ``${DataBucket}``, ``!GetAtt X.Arn``..."""

    refs: dict[str, str] = field(default_factory=dict)
    attrs: dict[tuple[str, str], str] = field(default_factory=dict)
    # Template parameters the function's environment names (``!Ref <Parameter>``), as the test set them.
    parameters: dict[str, str] = field(default_factory=dict)

    def key(self) -> str:
        text = json.dumps(
            [
                sorted(self.refs.items()),
                sorted(map(list, self.attrs.items())),
                sorted(self.parameters.items()),
            ]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class FunctionPolicies:
    """The functions of the translated template (``cfn``) and their roles' statements."""

    def __init__(self, cfn: Json, raw_template: Json | None = None) -> None:
        self.cfn = cfn
        self.raw = raw_template if raw_template is not None else load_template(TEMPLATE)
        self._resolved: dict[tuple[str, str], list[Statement]] = {}

    # ------------------------------------------------------------------ template reading
    @cached_property
    def functions(self) -> dict[str, str]:
        """Function logical id -> its role's logical id."""
        out = {}
        for name, res in self.cfn["Resources"].items():
            if res.get("Type") == "AWS::Lambda::Function":
                role = _target(res["Properties"].get("Role"))
                if role:
                    out[name] = role
        return out

    @cached_property
    def handler_files(self) -> dict[Path, str]:
        """``functions/<name>/app.py`` (resolved) -> function logical id, from CodeUri or the Dockerfile."""
        out = {}
        for name, res in self.raw["Resources"].items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            props, meta = res.get("Properties", {}), res.get("Metadata", {})
            if props.get("PackageType") == "Image":
                code_dir = (REPO / meta.get("DockerContext", ".") / meta["Dockerfile"]).parent
                module = (props.get("ImageConfig", {}).get("Command") or ["app.lambda_handler"])[0]
            else:
                code_dir = REPO / str(props["CodeUri"])
                module = props.get("Handler", "app.lambda_handler")
            path = code_dir / (module.rpartition(".")[0].replace(".", "/") + ".py")
            out[path.resolve()] = name
        return out

    def _policy_names(self, function: str) -> dict[str, str]:
        """SAM's generated PolicyName (``<Function>RolePolicy<i>``) -> the SAM policy template at index i."""
        names = {}
        raw = self.raw["Resources"][function]["Properties"].get("Policies", [])
        for i, entry in enumerate(_as_list(raw)):
            if isinstance(entry, dict) and len(entry) == 1:
                (kind,) = entry
                names[f"{function}RolePolicy{i}"] = "Statement" if kind == "Statement" else kind
        return names

    def raw_statements(self, function: str) -> list[RawStatement]:
        role = self.cfn["Resources"][self.functions[function]]
        names = self._policy_names(function)
        out = []
        for policy in role["Properties"].get("Policies", []):
            policy_name = policy["PolicyName"]
            source = names.get(policy_name, policy_name)
            for i, doc in enumerate(_as_list(policy["PolicyDocument"].get("Statement"))):
                label = _sid(doc) or f"{source}#{i}"
                out.append(RawStatement(function, label, doc))
        return out

    def managed_policies(self, function: str) -> list[str]:
        role = self.cfn["Resources"][self.functions[function]]
        return [str(arn).rsplit(":policy/", 1)[-1] for arn in role["Properties"].get("ManagedPolicyArns", [])]

    # ------------------------------------------------------------------ resolution
    def default_binding(self) -> StackBinding:
        """Symbolic names for every resource (``<logical id>``), to be overridden by what a test created."""
        binding = StackBinding()
        for logical, res in self.raw["Resources"].items():
            kind = res.get("Type", "")
            if kind == "AWS::S3::Bucket":
                name = logical.lower()
                binding.refs[logical] = name
                binding.attrs[(logical, "Arn")] = f"arn:aws:s3:::{name}"
            elif kind == "AWS::DynamoDB::Table":
                binding.refs[logical] = logical
                binding.attrs[(logical, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{logical}"
            elif kind == "AWS::SQS::Queue":
                self.bind_queue(binding, logical, f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{logical}")
            elif kind == "AWS::KMS::Key":
                binding.refs[logical] = logical
                binding.attrs[(logical, "Arn")] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{logical}"
            elif kind == "AWS::SNS::Topic":
                binding.refs[logical] = f"arn:aws:sns:{REGION}:{ACCOUNT}:{logical}"
                binding.attrs[(logical, "TopicName")] = logical
            elif kind == "AWS::Serverless::StateMachine":
                binding.refs[logical] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{logical}"
            elif kind == "AWS::Serverless::Function":
                binding.refs[logical] = logical
                binding.attrs[(logical, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{logical}"
            elif kind == "AWS::IAM::Role":
                binding.attrs[(logical, "Arn")] = f"arn:aws:iam::{ACCOUNT}:role/{logical}"
        return binding

    @staticmethod
    def bind_queue(binding: StackBinding, logical: str, url: str) -> None:
        name = url.rstrip("/").rsplit("/", 1)[-1]
        binding.refs[logical] = url
        binding.attrs[(logical, "QueueName")] = name
        binding.attrs[(logical, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def environment_refs(self, function: str) -> dict[str, str]:
        """The function's environment variables (Globals and its own) that hold ``!Ref <resource>``."""
        globals_ = self.raw.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.raw["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        resources = self.raw["Resources"]
        return {
            var: value.value
            for var, value in {**globals_, **own}.items()
            if isinstance(value, Intrinsic) and value.name == "Ref" and value.value in resources
        }

    def environment_parameters(self, function: str) -> dict[str, str]:
        """The function's environment variables that hold ``!Ref <template parameter>``."""
        own = self.raw["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {})
        parameters = self.raw.get("Parameters", {})
        return {
            var: value.value
            for var, value in own.items()
            if isinstance(value, Intrinsic) and value.name == "Ref" and value.value in parameters
        }

    def binding_for(
        self, function: str, environ: Mapping[str, str], buckets: Iterable[str] = ()
    ) -> StackBinding:
        """The stack ``function`` runs on: each resource its template environment names by ``!Ref`` takes
        the value the test's local stack gave that variable; the data bucket, when no variable names it,
        is the only bucket there is."""
        binding = self.default_binding()
        for var, logical in self.environment_refs(function).items():
            value = environ.get(var)
            if not value:
                continue
            kind = self.raw["Resources"][logical]["Type"]
            if kind == "AWS::SQS::Queue":
                self.bind_queue(binding, logical, value)
            elif kind == "AWS::DynamoDB::Table":
                binding.refs[logical] = value
                binding.attrs[(logical, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{value}"
            elif kind == "AWS::S3::Bucket":
                binding.refs[logical] = value
                binding.attrs[(logical, "Arn")] = f"arn:aws:s3:::{value}"
            else:
                binding.refs[logical] = value
        for var, parameter in self.environment_parameters(function).items():
            if var in environ:
                binding.parameters[parameter] = environ[var]
        candidates = sorted(set(buckets))
        unnamed = binding.refs.get("DataBucket") == self.default_binding().refs.get("DataBucket")
        if unnamed and len(candidates) == 1:
            binding.refs["DataBucket"] = candidates[0]
            binding.attrs[("DataBucket", "Arn")] = f"arn:aws:s3:::{candidates[0]}"
        return binding

    def resolver(self, binding: StackBinding) -> Resolver:
        return Resolver(self.raw, binding.refs, binding.attrs, binding.parameters, REGION, ACCOUNT)

    def statements(
        self, function: str, binding: StackBinding, drop: frozenset[str] = frozenset()
    ) -> list[Statement]:
        """The function's statements resolved for ``binding``, less those labelled in ``drop``."""
        cache_key = (function, binding.key() + "|" + ",".join(sorted(drop)))
        if cache_key not in self._resolved:
            resolver = self.resolver(binding)
            resolved = [
                (raw.label, resolver.resolve(raw.doc))
                for raw in self.raw_statements(function)
                if raw.label not in drop
            ]
            # A statement under !If whose condition is false resolves to AWS::NoValue: not granted.
            self._resolved[cache_key] = [
                Statement.from_json(doc, label) for label, doc in resolved if isinstance(doc, dict)
            ]
        return self._resolved[cache_key]

    # ------------------------------------------------------------------ calls AWS makes with the role
    def _function_of(self, value: Any) -> str | None:
        """The function a reference calls, through its alias (AutoPublishAlias) when it names one."""
        name = _target(value)
        resource = self.cfn["Resources"].get(name or "", {})
        if resource.get("Type") == "AWS::Lambda::Alias":
            return _target(resource.get("Properties", {}).get("FunctionName"))
        return name

    def _queue_key(self, queue: str, binding: StackBinding) -> str | None:
        props = self.raw["Resources"].get(queue, {}).get("Properties", {})
        logical = _target(props.get("KmsMasterKeyId"))
        return binding.attrs.get((logical, "Arn")) if logical else None

    def implied_calls(self, function: str, binding: StackBinding) -> list[ImpliedCall]:
        """What the Lambda service does with the function's role, from the template's wiring:

        - an SQS event source mapping polls with ReceiveMessage, DeleteMessage and GetQueueAttributes,
          and decrypts a KMS-encrypted queue's messages (kms:Decrypt);
        - an asynchronous invocation that failed goes to the function's DeadLetterQueue (sqs:SendMessage;
          kms:GenerateDataKey and kms:Decrypt for an encrypted queue)."""
        out: list[ImpliedCall] = []
        context = {"aws:SecureTransport": "true"}
        for res in self.cfn["Resources"].values():
            props = res.get("Properties", {})
            if (
                res.get("Type") != "AWS::Lambda::EventSourceMapping"
                or self._function_of(props.get("FunctionName")) != function
            ):
                continue
            queue = _target(props.get("EventSourceArn"))
            arn = binding.attrs.get((queue, "Arn")) if queue else None
            if not arn or not arn.startswith("arn:aws:sqs:"):
                continue
            why = f"Lambda polls {queue} for {function} (event source mapping)"
            for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
                out.append(ImpliedCall(function, Request(action, arn, context), why))
            key = self._queue_key(queue, binding)
            if key:
                out.append(ImpliedCall(function, Request("kms:Decrypt", key, context), why + ", encrypted"))
        dead_letter = self.cfn["Resources"][function]["Properties"].get("DeadLetterConfig") or {}
        queue = _target(dead_letter.get("TargetArn"))
        if queue and (queue, "Arn") in binding.attrs:
            why = f"Lambda sends {function}'s failed asynchronous events to {queue}"
            out.append(
                ImpliedCall(function, Request("sqs:SendMessage", binding.attrs[(queue, "Arn")], context), why)
            )
            key = self._queue_key(queue, binding)
            if key:
                for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                    out.append(ImpliedCall(function, Request(action, key, context), why + ", encrypted"))
        return out

    def table_key(self, table_arn: str, binding: StackBinding) -> str | None:
        """The customer managed key of the table at ``table_arn`` (None: AWS owned key or unknown table)."""
        for logical, res in self.raw["Resources"].items():
            if res.get("Type") != "AWS::DynamoDB::Table":
                continue
            if binding.attrs.get((logical, "Arn")) != table_arn.split("/index/")[0]:
                continue
            logical_key = _target(
                (res.get("Properties", {}).get("SSESpecification") or {}).get("KMSMasterKeyId")
            )
            return binding.attrs.get((logical_key, "Arn")) if logical_key else None
        return None
