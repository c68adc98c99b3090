"""Translates template.yaml (AWS SAM) to CloudFormation with SAM CLI's own translator; prints JSON.

Run with the SAM virtual environment's Python (`.venv-sam/bin/python`): aws-sam-translator pins a pydantic
release that the project's constraints do not allow, and it is the very translator `sam validate` and
`sam deploy` use. Offline: managed policy names resolve from a small built-in map, never from IAM."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from samtranslator.translator.arn_generator import ArnGenerator
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class OfflinePolicyLoader:
    """Resolves AWS managed policy names used in Policies: without calling IAM."""

    NAMES = ("AWSLambdaBasicExecutionRole", "AWSXrayWriteOnlyAccess", "AWSLambdaSQSQueueExecutionRole")

    def load(self) -> dict[str, str]:
        return {name: f"arn:aws:iam::aws:policy/{name}" for name in self.NAMES}


def _is_local(uri: object) -> bool:
    return isinstance(uri, str) and not uri.startswith("s3://")


def replace_local_artifacts(template: dict, base: Path) -> dict:
    """What `sam validate` and `sam package` do first: local code locations become S3 locations (and local
    state machine definitions are inlined, so the translated template shows which functions they call)."""
    for resource in template.get("Resources", {}).values():
        kind, props = resource.get("Type"), resource.setdefault("Properties", {})
        if kind == "AWS::Serverless::Function":
            if props.get("PackageType") == "Image":
                props.setdefault("ImageUri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/local:latest")
            elif _is_local(props.get("CodeUri", ".")):
                props["CodeUri"] = f"s3://local-artifacts/{props.get('CodeUri', '.')}"
        elif kind == "AWS::Serverless::LayerVersion" and _is_local(props.get("ContentUri")):
            props["ContentUri"] = f"s3://local-artifacts/{props['ContentUri']}"
        elif kind == "AWS::Serverless::StateMachine" and _is_local(props.get("DefinitionUri")):
            props["Definition"] = json.loads((base / props.pop("DefinitionUri")).read_text(encoding="utf-8"))
        elif kind in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi") and _is_local(
            props.get("DefinitionUri")
        ):
            props["DefinitionUri"] = f"s3://local-artifacts/{props['DefinitionUri']}"
    return template


def main(path: str, region: str = "us-east-1") -> None:
    ArnGenerator.BOTO_SESSION_REGION_NAME = region
    with open(path, encoding="utf-8") as f:
        template = replace_local_artifacts(yaml_parse(f.read()), Path(path).resolve().parent)
    translated = transform(template, {"AWS::Region": region}, OfflinePolicyLoader())
    json.dump(translated, sys.stdout, indent=1, sort_keys=True, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])
