"""``template.yaml``'s values as CloudFormation resolves them for one set of parameters.

A small resolver for the intrinsics the template uses where tests read resolved values
(policies, Glue table inputs): ``Ref`` (parameters, pseudo parameters, ``AWS::NoValue``),
``Fn::Sub`` (``${Name}``, ``${AWS::Region}`` and the ``${!literal}`` escape), ``Fn::If``
with the template's ``Conditions`` (``Fn::Equals``, ``Fn::Not``, ``Fn::And``, ``Fn::Or``,
``Condition``), and ``Fn::GetAtt``/a ``Ref`` to a resource as a readable stand-in. SAM copies
a function's inline policy documents into its role's policies as they are, so resolving them
here gives the role's statements. Anything else fails loudly rather than passing unread.
"""

from __future__ import annotations

import re
from typing import Any

from tests.support.sfn import ACCOUNT, REGION, template_parameters

STACK = "tmdb-ingest"
PSEUDO = {
    "AWS::Partition": "aws",
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}
_SUB = re.compile(r"\$\{(!?)([A-Za-z0-9_:.]+)\}")
_NO_VALUE = object()


class Rendered:
    """The template with parameter values: :meth:`value` resolves any node of it."""

    def __init__(self, template: dict[str, Any], **params: str) -> None:
        self.template = template
        self.params = template_parameters(template, **params)
        self.conditions = {
            name: self._condition(spec) for name, spec in template.get("Conditions", {}).items()
        }

    def _lookup(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name in self.template["Resources"]:
            return f"<{name}>"  # a resource's Ref: its physical id, unknown offline
        if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
            return f"<{name}>"  # ${Resource.Attr}
        raise AssertionError(f"unknown name {name!r}")

    def _condition(self, node: Any) -> bool:
        (fn, args), *rest = node.items()
        assert not rest, node
        if fn == "Fn::Equals":
            return bool(self.value(args[0]) == self.value(args[1]))
        if fn == "Fn::Not":
            return not self._condition(args[0])
        if fn == "Fn::And":
            return all(self._condition(a) for a in args)
        if fn == "Fn::Or":
            return any(self._condition(a) for a in args)
        if fn == "Condition":
            return self._condition(self.template["Conditions"][args])
        raise AssertionError(f"unsupported condition function {fn}")

    def value(self, node: Any) -> Any:
        """``node`` resolved; ``AWS::NoValue`` drops the key or list item holding it."""
        resolved = self._value(node)
        assert resolved is not _NO_VALUE
        return resolved

    def _value(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self._value(v) for v in node]
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if set(node) == {"Ref"}:
            return _NO_VALUE if node["Ref"] == "AWS::NoValue" else self._lookup(node["Ref"])
        if set(node) == {"Fn::Sub"}:
            text, names = (
                (node["Fn::Sub"], {})
                if isinstance(node["Fn::Sub"], str)
                else (
                    node["Fn::Sub"][0],
                    {k: self.value(v) for k, v in node["Fn::Sub"][1].items()},
                )
            )

            def sub(m: re.Match[str]) -> str:
                if m[1]:
                    return "${" + m[2] + "}"  # ${!dt} is the literal ${dt}
                return str(names[m[2]]) if m[2] in names else self._lookup(m[2])

            return _SUB.sub(sub, text)
        if set(node) == {"Fn::If"}:
            name, yes, no = node["Fn::If"]
            return self._value(yes if self.conditions[name] else no)
        if set(node) == {"Fn::GetAtt"}:
            target = node["Fn::GetAtt"]
            return "<" + (target if isinstance(target, str) else ".".join(target)) + ">"
        assert not any(k.startswith("Fn::") for k in node), f"unsupported intrinsic {node}"
        out = {k: self._value(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not _NO_VALUE}
