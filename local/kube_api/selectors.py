"""Label and field selectors, parsed and matched the way the API server does.

Label selectors (`labelSelector=`), comma-joined requirements, all must hold:
    a=b  a==b  a!=b  a in (x,y)  a notin (x)  a  !a  a>1  a<1
`!=` and `notin` also match objects that do not carry the key, as in Kubernetes;
`>` and `<` match integer label values only.

Field selectors (`fieldSelector=`) for pods: `field=value`, `field==value`,
`field!=value` on the field labels the API server supports for pods.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import KubeError

_KEY = r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"(?P<key>{_KEY})")
_NOT_EXISTS = re.compile(rf"!\s*(?P<key>{_KEY})")
_EQUALITY = re.compile(rf"(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})")
_COMPARE = re.compile(rf"(?P<key>{_KEY})\s*(?P<op>[<>])\s*(?P<value>-?[0-9]+)")
_SET = re.compile(rf"(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)")


@dataclass(frozen=True)
class Requirement:
    """One label requirement; `op` is one of =, !=, in, notin, exists, !, >, <."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "exists":
                return present
            case "!":
                return not present
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case ">" | "<":
                if value is None or not re.fullmatch(r"-?[0-9]+", value):
                    return False
                [bound] = self.values
                return int(value) > int(bound) if self.op == ">" else int(value) < int(bound)
        raise AssertionError(f"unknown operator {self.op!r}")  # pragma: no cover


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        return all(r.matches(labels or {}) for r in self.requirements)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _parse_requirement(text: str) -> Requirement:
    if m := _NOT_EXISTS.fullmatch(text):
        return Requirement(m["key"], "!")
    if m := _EXISTS.fullmatch(text):
        return Requirement(m["key"], "exists")
    if m := _EQUALITY.fullmatch(text):
        op = "=" if m["op"] == "==" else m["op"]
        return Requirement(m["key"], op, frozenset({m["value"]}))
    if m := _COMPARE.fullmatch(text):
        return Requirement(m["key"], m["op"], frozenset({m["value"]}))
    if m := _SET.fullmatch(text):
        values = [v.strip() for v in m["values"].split(",")]
        if not all(re.fullmatch(_VALUE, v) for v in values) or values == [""]:
            raise KubeError.bad_request(f"unable to parse requirement: {text!r}")
        return Requirement(m["key"], m["op"], frozenset(values))
    raise KubeError.bad_request(f"unable to parse requirement: {text!r}")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse a `labelSelector` query value; a malformed one is a 400."""
    if text is None or not text.strip():
        return LabelSelector()
    parts = [p.strip() for p in _split_top_level(text)]
    return LabelSelector(tuple(_parse_requirement(p) for p in parts))


def _nested(obj: Mapping[str, Any], dotted: str) -> str:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


# The field labels the API server accepts in a pod field selector.
POD_FIELDS = frozenset(
    {
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    }
)

_FIELD_TERM = re.compile(r"(?P<field>[A-Za-z.]+)\s*(?P<op>==|=|!=)\s*(?P<value>.*)")

FieldSelector = Callable[[Mapping[str, Any]], bool]


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse a `fieldSelector` query value for pods; a malformed one is a 400."""
    terms: list[tuple[str, bool, str]] = []
    for part in (text or "").split(","):
        if not part.strip():
            continue
        m = _FIELD_TERM.fullmatch(part.strip())
        if m is None:
            raise KubeError.bad_request(f"invalid selector: {part!r}")
        if m["field"] not in POD_FIELDS:
            raise KubeError.bad_request(f'field label not supported: "{m["field"]}"')
        terms.append((m["field"], m["op"] != "!=", m["value"].strip()))

    def matches(pod: Mapping[str, Any]) -> bool:
        return all((_nested(pod, field) == value) == equal for field, equal, value in terms)

    return matches
