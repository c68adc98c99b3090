"""The template's training image follows the instance type and is the SageMaker SDK's own lookup
(``image_uris.retrieve``) for the core's TensorFlow version, in every region the template lists."""

from __future__ import annotations

from typing import Any

import pytest

from medimage.core import training_job as job
from medimage.local.template import Resolver
from medimage.ops import sagemaker_training as sm
from tests.ops.ops_helpers import REGION

CPU_TYPES = ("ml.m5.xlarge", "ml.c5.2xlarge", "ml.m6i.large", "ml.r5.large", "ml.t3.medium")
GPU_TYPES = ("ml.g4dn.xlarge", "ml.g5.2xlarge", "ml.g6e.xlarge", "ml.p3.2xlarge", "ml.p4d.24xlarge")
# Regions whose registry account differs from the common one, besides the default.
CHECKED_REGIONS = (REGION, "af-south-1", "ap-east-1", "eu-south-1", "me-south-1")


@pytest.fixture(scope="module")
def sdk_images(template: dict[str, Any], sdk_python) -> dict[tuple[str, str], str]:
    """The SDK's answer for every (region, instance type) the tests below ask about, in one run."""
    regions = template["Mappings"]["TrainingImages"]
    query = [{"region": r, "instance_type": t} for r in regions for t in (CPU_TYPES[0], GPU_TYPES[0])]
    others = CPU_TYPES[1:] + GPU_TYPES[1:]
    query += [{"region": r, "instance_type": t} for r in CHECKED_REGIONS for t in others]
    lines: list[str] = []
    answers = sm.image_uris(query, lines.append, sdk_python)
    return {(a["region"], a["instance_type"]): a["image_uri"] for a in answers}


def template_image(template: dict[str, Any], region: str, **parameters: str) -> str:
    props = template["Resources"]["TrainingStateMachine"]["Properties"]
    resolver = Resolver(template, {}, {}, parameters, region)
    return str(resolver.resolve(props["DefinitionSubstitutions"]["TrainingImage"]))


def test_every_regions_images_are_the_sdks(template, sdk_images):
    regions = template["Mappings"]["TrainingImages"]
    assert len(regions) >= 17
    wrong = {
        region: entry
        for region, entry in regions.items()
        if entry != {"Cpu": sdk_images[(region, CPU_TYPES[0])], "Gpu": sdk_images[(region, GPU_TYPES[0])]}
    }
    assert not wrong, f"TrainingImages differ from the SDK's lookup: {wrong}"
    assert all(f":{job.FRAMEWORK_VERSION}-" in uri for entry in regions.values() for uri in entry.values())


@pytest.mark.parametrize("instance_type", CPU_TYPES + GPU_TYPES)
def test_the_image_follows_the_instance_type_as_the_sdk_chooses(template, sdk_images, instance_type):
    for region in CHECKED_REGIONS:
        chosen = template_image(template, region, TrainingInstanceType=instance_type)
        assert chosen == sdk_images[(region, instance_type)], (region, instance_type)
    expected = "-gpu-" if instance_type in GPU_TYPES else "-cpu-"
    assert expected in template_image(template, REGION, TrainingInstanceType=instance_type)


def test_the_default_instance_type_gets_the_cpu_image_and_an_explicit_image_wins(template):
    assert template_image(template, REGION) == template["Mappings"]["TrainingImages"][REGION]["Cpu"]
    mine = "123456789012.dkr.ecr.us-east-1.amazonaws.com/mine:1"
    assert template_image(template, REGION, TrainingImage=mine, TrainingInstanceType="ml.p3.2xlarge") == mine
