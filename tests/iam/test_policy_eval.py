"""The IAM evaluator on the statement shapes template.yaml uses, and on AWS's documented edge cases."""

from __future__ import annotations

import pytest
from policy_eval import Decision, Request, Statement, UnsupportedCondition, evaluate, wildcard_match

BUCKET = "arn:aws:s3:::data"


def allow(label: str = "A", **doc: object) -> Statement:
    return Statement.from_json({"Effect": "Allow", **doc}, label)


def deny(label: str = "D", **doc: object) -> Statement:
    return Statement.from_json({"Effect": "Deny", **doc}, label)


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("arn:aws:s3:::data/quarantine/*", "arn:aws:s3:::data/quarantine/a/b.jpeg", True),
        ("arn:aws:s3:::data/quarantine/*", "arn:aws:s3:::data/quarantine", False),
        ("arn:aws:s3:::data/models/*/gate.json", "arn:aws:s3:::data/models/x/v1/gate.json", True),
        ("arn:aws:s3:::data/models/*/gate.json", "arn:aws:s3:::data/models/x/v1/model.json", False),
        ("arn:aws:s3:::data/v?.json", "arn:aws:s3:::data/v1.json", True),
        ("arn:aws:s3:::data/v?.json", "arn:aws:s3:::data/v10.json", False),
        # Regular-expression characters are literal: "." is not "any character", "[" is not a class.
        ("arn:aws:s3:::my.bucket/*", "arn:aws:s3:::myxbucket/a", False),
        ("arn:aws:s3:::b/[a]*", "arn:aws:s3:::b/[a]x", True),
        ("arn:aws:s3:::b/[a]*", "arn:aws:s3:::b/ax", False),
    ],
)
def test_wildcards(pattern, value, matches):
    assert wildcard_match(pattern, value) is matches


def test_allow_needs_action_and_resource_to_match():
    st = allow(Action=["s3:GetObject"], Resource=f"{BUCKET}/models/*")
    assert evaluate([st], Request("s3:GetObject", f"{BUCKET}/models/p.json")).decision is Decision.ALLOW
    assert (
        evaluate([st], Request("s3:PutObject", f"{BUCKET}/models/p.json")).decision is Decision.IMPLICIT_DENY
    )
    assert (
        evaluate([st], Request("s3:GetObject", f"{BUCKET}/training/p.json")).decision
        is Decision.IMPLICIT_DENY
    )


def test_actions_match_case_insensitively_and_resources_do_not():
    st = allow(Action="S3:getobject", Resource=f"{BUCKET}/Models/*")
    assert evaluate([st], Request("s3:GetObject", f"{BUCKET}/Models/a")).allowed
    assert not evaluate([st], Request("s3:GetObject", f"{BUCKET}/models/a")).allowed


def test_explicit_deny_wins_over_any_allow():
    statements = [allow(Action="s3:*", Resource="*"), deny(Action="s3:DeleteObject", Resource=f"{BUCKET}/*")]
    result = evaluate(statements, Request("s3:DeleteObject", f"{BUCKET}/x"))
    assert result.decision is Decision.EXPLICIT_DENY and result.denied_by == ("D",)
    assert evaluate(statements, Request("s3:GetObject", f"{BUCKET}/x")).allowed


def test_not_action_and_not_resource():
    st = allow(NotAction=["s3:DeleteObject"], NotResource=[f"{BUCKET}/private/*"])
    assert evaluate([st], Request("s3:GetObject", f"{BUCKET}/public/a")).allowed
    assert not evaluate([st], Request("s3:DeleteObject", f"{BUCKET}/public/a")).allowed
    assert not evaluate([st], Request("s3:GetObject", f"{BUCKET}/private/a")).allowed


def test_every_allowing_statement_is_named():
    statements = [
        allow("Models", Action="s3:GetObject", Resource=f"{BUCKET}/models/*"),
        allow("All", Action="s3:GetObject", Resource=f"{BUCKET}/*"),
        allow("Other", Action="s3:PutObject", Resource=f"{BUCKET}/*"),
    ]
    assert evaluate(statements, Request("s3:GetObject", f"{BUCKET}/models/a")).allowed_by == ("Models", "All")


LIST_MODELS = {"StringLike": {"s3:prefix": ["models/*", "training/*"]}}


def test_string_like_prefix_condition_of_list_bucket():
    st = allow(Action="s3:ListBucket", Resource=BUCKET, Condition=LIST_MODELS)
    assert evaluate([st], Request("s3:ListBucket", BUCKET, {"s3:prefix": "models/x/"})).allowed
    assert not evaluate([st], Request("s3:ListBucket", BUCKET, {"s3:prefix": "incoming/"})).allowed
    # A condition that does not hold is no match, not a deny: another statement may still allow.
    other = allow("Any", Action="s3:ListBucket", Resource=BUCKET)
    assert evaluate([st, other], Request("s3:ListBucket", BUCKET, {"s3:prefix": "incoming/"})).allowed


def test_a_missing_condition_key_fails_positive_operators_and_passes_negated_ones():
    like = allow(Action="s3:ListBucket", Resource=BUCKET, Condition=LIST_MODELS)
    assert not evaluate([like], Request("s3:ListBucket", BUCKET)).allowed
    if_exists = allow(
        Action="s3:ListBucket", Resource=BUCKET, Condition={"StringLikeIfExists": LIST_MODELS["StringLike"]}
    )
    assert evaluate([if_exists], Request("s3:ListBucket", BUCKET)).allowed
    negated = allow(
        Action="s3:ListBucket", Resource=BUCKET, Condition={"StringNotLike": {"s3:prefix": "secret/*"}}
    )
    assert evaluate([negated], Request("s3:ListBucket", BUCKET)).allowed
    assert not evaluate([negated], Request("s3:ListBucket", BUCKET, {"s3:prefix": "secret/a"})).allowed


def test_all_operators_and_keys_of_a_condition_must_hold():
    st = allow(
        Action="iam:PassRole",
        Resource="arn:aws:iam::1:role/r",
        Condition={
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com", "aws:SourceAccount": "1"},
            "Bool": {"aws:SecureTransport": "true"},
        },
    )
    good = {
        "iam:PassedToService": "sagemaker.amazonaws.com",
        "aws:SourceAccount": "1",
        "aws:SecureTransport": "true",
    }
    assert evaluate([st], Request("iam:PassRole", "arn:aws:iam::1:role/r", good)).allowed
    for key, value in (
        ("iam:PassedToService", "lambda.amazonaws.com"),
        ("aws:SourceAccount", "2"),
        ("aws:SecureTransport", "false"),
    ):
        assert not evaluate(
            [st], Request("iam:PassRole", "arn:aws:iam::1:role/r", {**good, key: value})
        ).allowed


def test_deny_with_a_bool_condition_like_the_bucket_policy():
    insecure = deny(
        Action="s3:*", Resource=f"{BUCKET}/*", Condition={"Bool": {"aws:SecureTransport": "false"}}
    )
    everything = allow(Action="s3:GetObject", Resource=f"{BUCKET}/*")
    assert evaluate(
        [everything, insecure], Request("s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": "true"})
    ).allowed
    result = evaluate(
        [everything, insecure], Request("s3:GetObject", f"{BUCKET}/a", {"aws:SecureTransport": "false"})
    )
    assert result.decision is Decision.EXPLICIT_DENY


def test_arn_like_compares_arn_parts():
    st = allow(
        Action="sqs:SendMessage",
        Resource="arn:aws:sqs:us-east-1:1:q",
        Condition={"ArnLike": {"aws:SourceArn": "arn:aws:s3:::*"}},
    )
    assert evaluate(
        [st], Request("sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q", {"aws:SourceArn": "arn:aws:s3:::b"})
    ).allowed
    assert not evaluate(
        [st],
        Request(
            "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q", {"aws:SourceArn": "arn:aws:sns:us-east-1:1:t"}
        ),
    ).allowed


def test_set_operators_on_multivalued_keys():
    any_value = allow(Action="x:Y", Resource="*", Condition={"ForAnyValue:StringEquals": {"k": ["a", "b"]}})
    all_values = allow(Action="x:Y", Resource="*", Condition={"ForAllValues:StringEquals": {"k": ["a", "b"]}})
    assert evaluate([any_value], Request("x:Y", "r", {"k": ("a", "z")})).allowed
    assert not evaluate([all_values], Request("x:Y", "r", {"k": ("a", "z")})).allowed
    assert evaluate([all_values], Request("x:Y", "r", {"k": ("a", "b")})).allowed
    assert evaluate([all_values], Request("x:Y", "r")).allowed  # vacuously, as AWS documents


def test_null_operator_tests_presence():
    st = allow(Action="x:Y", Resource="*", Condition={"Null": {"k": "false"}})
    assert evaluate([st], Request("x:Y", "r", {"k": "v"})).allowed
    assert not evaluate([st], Request("x:Y", "r")).allowed


def test_unknown_operators_are_refused_not_guessed():
    st = allow(
        Action="x:Y", Resource="*", Condition={"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}}
    )
    with pytest.raises(UnsupportedCondition):
        evaluate([st], Request("x:Y", "r", {"aws:CurrentTime": "2030-01-01T00:00:00Z"}))


@pytest.mark.parametrize(
    "doc",
    [
        {"Effect": "Allow", "Resource": "*"},
        {"Effect": "Allow", "Action": "x:Y", "NotAction": "x:Z", "Resource": "*"},
        {"Effect": "Allow", "Action": "x:Y"},
        {"Effect": "Maybe", "Action": "x:Y", "Resource": "*"},
        {"Effect": "Allow", "Action": "x:Y", "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::b"}},
        {"Effect": "Allow", "Principal": "*", "Action": "x:Y", "Resource": "*"},
    ],
)
def test_malformed_or_unresolved_statements_are_refused(doc):
    with pytest.raises(ValueError):
        Statement.from_json(doc, "bad")
