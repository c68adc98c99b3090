"""Reading ``template.yaml``, CloudFormation short-form tags (``!Ref``, ``!GetAtt`` ...) included.

Below both its readers: deploying (``medimage.ops.deploy``) reads parameter defaults, and local mode
(``medimage.local``) resolves the whole template. Needs pyyaml (the ``local`` extra).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Intrinsic:
    """A CloudFormation intrinsic function such as ``!Ref X`` or ``!GetAtt X.Arn``."""

    name: str
    value: Any


class _Loader(yaml.SafeLoader):
    pass


def _make_constructor(name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Intrinsic:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return Intrinsic(name, value)

    return construct


for _tag in (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "FindInMap",
    "ImportValue",
    "Condition",
    "GetAZs",
    "Base64",
    "Cidr",
):
    _Loader.add_constructor(f"!{_tag}", _make_constructor(_tag))


def load_template(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template.get("Resources", {}).items() if res.get("Type") == kind}
