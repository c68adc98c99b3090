"""cicd/bootstrap.yaml, deployed once per account: each stage's deploy role is assumable only through
GitHub's OIDC provider by jobs of the given repository running in that stage's environment, and the
template is as clean as the application's (cfn-lint, checkov)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from template_model import REPO

pytestmark = pytest.mark.xdist_group("template")

BOOTSTRAP = REPO / "cicd" / "bootstrap.yaml"
TOKEN = "token.actions.githubusercontent.com"
STAGES = {"Dev": "DevEnvironment", "Prod": "ProdEnvironment"}


@pytest.fixture(scope="module")
def bootstrap() -> dict[str, Any]:
    from cfnlint.decode import decode

    template, matches = decode(str(BOOTSTRAP))
    assert not matches, [str(m) for m in matches]
    return template


def trust_statements(bootstrap: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return bootstrap["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]


def statements(bootstrap: dict[str, Any], role: str) -> list[dict[str, Any]]:
    policies = bootstrap["Resources"][role]["Properties"]["Policies"]
    return [st for p in policies for st in p["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_deploy_role_trusts_only_the_repositorys_jobs_of_its_environment(bootstrap, stage):
    (statement,) = trust_statements(bootstrap, f"{stage}DeployRole")
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    federated = json.dumps(statement["Principal"]["Federated"])
    assert "GitHubOidcProvider" in federated and "ExistingOidcProviderArn" in federated
    assert set(statement["Condition"]) == {"StringEquals"}, "no StringLike: a wildcard would widen the sub"
    claims = statement["Condition"]["StringEquals"]
    assert claims[f"{TOKEN}:aud"] == "sts.amazonaws.com"
    assert claims[f"{TOKEN}:sub"] == {
        "Fn::Sub": f"repo:${{GitHubOrg}}/${{GitHubRepo}}:environment:${{{STAGES[stage]}}}"
    }


def test_the_stages_trust_different_environments(bootstrap):
    subs = {json.dumps(trust_statements(bootstrap, f"{s}DeployRole")[0]["Condition"]) for s in STAGES}
    assert len(subs) == len(STAGES)
    params = bootstrap["Parameters"]
    assert {"GitHubOrg", "GitHubRepo", "DevEnvironment", "ProdEnvironment"} <= set(params)
    assert params["DevEnvironment"]["Default"] != params["ProdEnvironment"]["Default"]


def test_only_the_deploy_roles_trust_github_and_cloudformation_roles_only_cloudformation(bootstrap):
    for name, res in bootstrap["Resources"].items():
        if res["Type"] != "AWS::IAM::Role":
            continue
        for st in trust_statements(bootstrap, name):
            principal = st["Principal"]
            if name.endswith("DeployRole"):
                assert set(principal) == {"Federated"}, name
            else:
                assert principal == {"Service": "cloudformation.amazonaws.com"}, name


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_deploy_roles_name_their_actions_and_pass_only_their_stages_cloudformation_role(bootstrap, stage):
    found = statements(bootstrap, f"{stage}DeployRole")
    for st in found:
        actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
        assert all("*" not in a for a in actions), st["Sid"]
        if st["Resource"] == "*":
            assert actions == ["ecr:GetAuthorizationToken"], (
                f"{st['Sid']}: only the registry login is unscoped"
            )
    (passing,) = [st for st in found if st["Action"] == "iam:PassRole"]
    assert passing["Resource"] == {"Fn::GetAtt": [f"{stage}CloudFormationRole", "Arn"]}
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}}
    text = json.dumps(found)
    other = "Prod" if stage == "Dev" else "Dev"
    assert f"{stage}StackName" in text and f"{other}StackName" not in text


def test_cfn_lint_and_checkov_are_clean(checkov_bin: Path):
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    linted = subprocess.run(
        [str(cfn_lint), str(BOOTSTRAP)], capture_output=True, text=True, timeout=300, check=False
    )
    assert linted.returncode == 0, linted.stdout + linted.stderr
    command = [str(checkov_bin), "-f", str(BOOTSTRAP), "--framework", "cloudformation", "--output", "json"]
    checked = subprocess.run(
        [*command, "--quiet", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = json.loads(checked.stdout)
    failed = [c["check_id"] for c in report.get("results", {}).get("failed_checks", [])]
    assert not failed and checked.returncode == 0, failed or checked.stderr[-2000:]
