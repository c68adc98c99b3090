"""samconfig.toml: the environments exist, deploy with the capabilities the template needs, and override
only parameters the template has, with values it allows."""

from __future__ import annotations

import shlex
import tomllib

import pytest
from template_model import REPO

pytestmark = pytest.mark.xdist_group("template")

ENVIRONMENTS = ("default", "dev", "prod")


@pytest.fixture(scope="module")
def samconfig():
    return tomllib.loads((REPO / "samconfig.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_deploys_its_own_stack(samconfig, env):
    assert samconfig["version"] == 0.1
    stack = samconfig[env]["global"]["parameters"]["stack_name"]
    deploy = samconfig[env]["deploy"]["parameters"]
    assert set(deploy["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"}
    assert deploy["resolve_s3"] is True
    assert stack.startswith("medimage")
    stacks = {samconfig[e]["global"]["parameters"]["stack_name"] for e in ENVIRONMENTS}
    assert len(stacks) == len(ENVIRONMENTS), "each environment has its own stack"


def test_prod_asks_before_changing(samconfig):
    assert samconfig["prod"]["deploy"]["parameters"]["confirm_changeset"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_parameter_overrides_exist_in_the_template(samconfig, raw_template, env):
    overrides = shlex.split(samconfig[env]["deploy"]["parameters"].get("parameter_overrides", ""))
    parameters = raw_template["Parameters"]
    for item in overrides:
        name, _, value = item.partition("=")
        assert name in parameters, f"{env}: {name} is not a template parameter"
        allowed = parameters[name].get("AllowedValues")
        if allowed:
            assert value in [str(a) for a in allowed], f"{env}: {name}={value} not in {allowed}"
        if "MinValue" in parameters[name]:
            assert float(value) >= float(parameters[name]["MinValue"]), f"{env}: {name}={value}"
        if "MaxValue" in parameters[name]:
            assert float(value) <= float(parameters[name]["MaxValue"]), f"{env}: {name}={value}"


def _effective(samconfig, raw_template, env: str) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in raw_template["Parameters"].items()}
    overrides = shlex.split(samconfig[env]["deploy"]["parameters"].get("parameter_overrides", ""))
    values.update(item.split("=", 1) for item in overrides)
    return values


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_a_mass_drop_leaves_the_api_capacity(samconfig, raw_template, env):
    values = _effective(samconfig, raw_template, env)
    reserved = int(values["InferenceReservedConcurrency"])
    drop = int(values["DropToLabelConcurrency"])
    assert reserved == 0 or reserved > drop, (
        f"{env}: InferenceReservedConcurrency={reserved} leaves the API nothing beside "
        f"DropToLabelConcurrency={drop}"
    )
