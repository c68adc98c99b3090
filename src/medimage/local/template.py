"""Resolving ``template.yaml``'s intrinsics against local names, so local mode creates exactly the
resources the deployed stack declares, instead of restating them. Reading the file (CloudFormation
short-form tags included) is ``medimage.template_file``'s, which deploying shares."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

from medimage.local.account import ACCOUNT, REGION
from medimage.template_file import Intrinsic

STATE_MACHINE_LOGICAL_ID = "TrainingStateMachine"


def function_name_of(name_or_arn: str) -> str:
    """``arn:aws:lambda:r:a:function:NAME[:qualifier]`` or ``NAME`` -> ``NAME``."""
    if ":function:" in name_or_arn:
        return name_or_arn.split(":function:", 1)[1].split(":", 1)[0]
    return name_or_arn


def function_alias(template: dict[str, Any], logical: str) -> str | None:
    """A function's ``AutoPublishAlias`` (its own, else the Globals'): the alias its callers name."""
    resource = template.get("Resources", {}).get(logical) or {}
    if resource.get("Type") != "AWS::Serverless::Function":
        return None
    own = (resource.get("Properties") or {}).get("AutoPublishAlias")
    return own or ((template.get("Globals") or {}).get("Function") or {}).get("AutoPublishAlias")


class Resolver:
    """Resolves intrinsics against local physical names/ARNs, parameters and pseudo parameters."""

    def __init__(
        self,
        template: dict[str, Any],
        refs: dict[str, str],
        attrs: dict[tuple[str, str], str],
        parameters: dict[str, str] | None = None,
        region: str = REGION,
        account: str = ACCOUNT,
    ) -> None:
        self.template = template
        self.refs = dict(refs)
        self.attrs = dict(attrs)
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::Partition": "aws",
            "AWS::StackName": "medimage-local",
            # Unique per local stack, as CloudFormation's is per deployment.
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{account}:stack/medimage-local/{uuid.uuid4()}",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }

    def ref(self, name: str) -> str:
        for table in (self.pseudo, self.parameters, self.refs):
            if name in table:
                return table[name]
        alias = self._alias_arn(name)
        if alias:
            return alias
        raise KeyError(f"local mode cannot resolve !Ref {name}")

    def _alias_arn(self, name: str) -> str | None:
        """A function's alias ARN, for what the template may write for it: ``!Ref Fn.Alias``, or the logical
        id SAM gives the alias (``<Fn>Alias<name>``, which Fn::Sub uses)."""
        for logical in self.template.get("Resources", {}):
            alias = function_alias(self.template, logical)
            if alias and name in (f"{logical}.Alias", f"{logical}Alias{alias}"):
                region, account = self.pseudo["AWS::Region"], self.pseudo["AWS::AccountId"]
                function = self.refs.get(logical, logical)
                arn = self.attrs.get(
                    (logical, "Arn"), f"arn:aws:lambda:{region}:{account}:function:{function}"
                )
                return f"{arn}:{alias}"
        return None

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Intrinsic):
            return self._intrinsic(value)
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, inner),) = value.items()
                if key == "Ref":
                    return self.ref(inner)
                if key.startswith("Fn::"):
                    name = key[4:]
                    return self._intrinsic(
                        Intrinsic(
                            name,
                            inner.split(".", 1) if name == "GetAtt" and isinstance(inner, str) else inner,
                        )
                    )
            return {k: self.resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def _intrinsic(self, fn: Intrinsic) -> Any:
        if fn.name == "Ref":
            return self.ref(fn.value)
        if fn.name == "GetAtt":
            logical, attr = fn.value
            try:
                return self.attrs[(logical, attr)]
            except KeyError:
                raise KeyError(f"local mode cannot resolve !GetAtt {logical}.{attr}") from None
        if fn.name == "Sub":
            text, extra = (fn.value, {}) if isinstance(fn.value, str) else (fn.value[0], fn.value[1])
            extra = {k: str(self.resolve(v)) for k, v in extra.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in extra:
                    return extra[name]
                if "." in name:
                    logical, attr = name.split(".", 1)
                    return self.attrs[(logical, attr)]
                return self.ref(name)

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        if fn.name == "Join":
            sep, items = fn.value
            resolved = self.resolve(items)  # a list, or an intrinsic (Split, a list parameter) giving one
            return sep.join(str(i) for i in (resolved if isinstance(resolved, list) else [resolved]))
        if fn.name == "FindInMap":
            mapping, key, attr = (self.resolve(v) for v in fn.value)
            return self.template["Mappings"][mapping][key][attr]
        if fn.name == "Select":
            index, items = fn.value
            return self.resolve(items)[int(self.resolve(index))]
        if fn.name == "Split":
            sep, text = fn.value
            return str(self.resolve(text)).split(sep)
        if fn.name == "If":
            condition, yes, no = fn.value
            return self.resolve(yes if self.condition(condition) else no)
        raise KeyError(f"local mode does not resolve !{fn.name}")

    def condition(self, name: str) -> bool:
        return self._truth(self.template.get("Conditions", {})[name])

    def _truth(self, value: Any) -> bool:
        if isinstance(value, Intrinsic):
            if value.name == "Equals":
                a, b = (self.resolve(v) for v in value.value)
                return str(a) == str(b)
            if value.name == "Not":
                return not self._truth(value.value[0])
            if value.name == "And":
                return all(self._truth(v) for v in value.value)
            if value.name == "Or":
                return any(self._truth(v) for v in value.value)
            if value.name == "Condition":
                return self.condition(value.value)
        raise KeyError(f"local mode cannot evaluate condition {value!r}")


def definition_from_template(
    root: Path, template: dict[str, Any], resolver: Resolver, logical_id: str = STATE_MACHINE_LOGICAL_ID
) -> str:
    """The state machine's ASL file with its DefinitionSubstitutions resolved by ``resolver``: the
    deployed definition itself, never a local rewrite of it."""
    props = template["Resources"][logical_id]["Properties"]
    definition = (root / props["DefinitionUri"]).read_text(encoding="utf-8")
    for name, value in resolver.resolve(props.get("DefinitionSubstitutions", {})).items():
        definition = definition.replace("${" + name + "}", str(value))
    leftover = sorted(set(re.findall(r"\$\{([A-Za-z0-9]+)\}", definition)))
    if leftover:
        raise ValueError(f"{props['DefinitionUri']} uses substitutions the template lacks: {leftover}")
    json.loads(definition)
    return definition
