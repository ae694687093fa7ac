"""A small IAM policy evaluator, for testing the template's policies by evaluating them.

It follows the IAM policy evaluation logic of one account for the parts the template uses:

- an explicit Deny in any policy wins; else an Allow in any policy allows; else the request is
  implicitly denied;
- `Action`/`NotAction` (case-insensitive) and `Resource`/`NotResource` (case-sensitive), each a string
  or a list, with the wildcards `*` (any run of characters, `/` and `:` included) and `?` (one);
- policy variables in `Resource` and in condition values: `${aws:PrincipalTag/key}` and any other key
  of the request context (names case-insensitive), `${key, 'default'}`, and the literals `${*}`,
  `${?}`, `${$}`. A substituted value is literal (a `*` in a tag value is no wildcard). A variable
  without a value and without a default makes the element match nothing;
- `Condition` with the String, Arn and Bool operators (`...IfExists` too): operators AND together,
  the values of one key OR; a missing key fails a positive operator and passes a negated one
  (unless `IfExists`, which passes both);
- `Principal` of a resource-based policy (a role's trust policy, an API's resource policy): `"*"`,
  `{"AWS": "*"}`, and exact `Service` names or `AWS` ARNs, matched against the request's
  `principal` (a request without one matches only the wildcards). A statement with a `Principal`
  and no `Resource` applies to the resource it is attached to (a trust policy's role).

Not modelled: NotPrincipal, an account as a Principal (`"AWS": "<account id>"`, which defers to that
account's identity policies), Principal matching in identity policies, permission boundaries, SCPs,
session policies, numeric/date/IP operators, multi-valued keys (ForAllValues/ForAnyValue). What the
evaluator is not told it raises on (an unknown operator, an account principal), rather than guessing.

moto 5.2.5 has an evaluator (`moto.iam.access_control.IAMPolicy`), but it does not serve here: it
substitutes no policy variable (the agents' policy is `${aws:PrincipalTag/kubernetes-pod-name}`), turns
`*` into a regex without escaping the rest of the pattern, knows no `?`, and reads conditions only
from keys a caller passes in (its own TODO: "add support for the Resource and Condition parts").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cache
from typing import Any


class Decision(Enum):
    ALLOW = "allow"
    EXPLICIT_DENY = "explicit_deny"
    IMPLICIT_DENY = "implicit_deny"


@dataclass(frozen=True)
class Request:
    """What is asked (action on resource), the request context (condition keys, any case) and, for a
    resource-based policy's `Principal`, who asks: `("Service", "pods.eks.amazonaws.com")` or
    `("AWS", "arn:aws:iam::111122223333:role/x")`."""

    action: str
    resource: str
    context: Mapping[str, str | bool] = field(default_factory=dict)
    principal: tuple[str, str] | None = None

    def value(self, key: str) -> str | bool | None:
        wanted = key.lower()
        return next((v for k, v in self.context.items() if k.lower() == wanted), None)


class _Missing(Exception):
    """A policy variable has no value in the request context."""


_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_LITERALS = {"*": "*", "?": "?", "$": "$"}


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


@cache
def _pattern(text: str) -> re.Pattern[str]:
    """`*` and `?` as wildcards; everything else literal. Substituted parts come in escaped (\x00)."""
    out: list[str] = []
    literal = False
    for ch in text:
        if ch == "\x00":
            literal = not literal
        elif not literal and ch == "*":
            out.append(".*")
        elif not literal and ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _substitute(text: str, request: Request) -> str:
    """Replace policy variables; substituted values are wrapped in \x00 so that they stay literal."""

    def one(match: re.Match[str]) -> str:
        inner = match.group(1)
        if inner in _LITERALS:
            return "\x00" + _LITERALS[inner] + "\x00"
        name, comma, default = inner.partition(",")
        value = request.value(name.strip())
        if value is None:
            default = default.strip()
            if comma and len(default) >= 2 and default[0] == default[-1] == "'":
                return "\x00" + default[1:-1] + "\x00"
            raise _Missing(name)
        return "\x00" + (str(value).lower() if isinstance(value, bool) else str(value)) + "\x00"

    return _VARIABLE.sub(one, text)


def _matches(patterns: Iterable[str], value: str, request: Request, *, ignore_case: bool) -> bool:
    for raw in patterns:
        try:
            pattern = _substitute(raw, request)
        except _Missing:
            continue  # an element whose variable has no value matches nothing
        if ignore_case:
            pattern, value_ = pattern.lower(), value.lower()
        else:
            value_ = value
        if _pattern(pattern).fullmatch(value_):
            return True
    return False


def _arn_like(pattern: str, value: str) -> bool:
    """ArnLike: the six colon-separated parts match one by one (the resource part keeps its colons)."""
    p_parts, v_parts = pattern.split(":", 5), value.split(":", 5)
    if len(p_parts) != 6 or len(v_parts) != 6:
        return False
    return all(_pattern(p).fullmatch(v) for p, v in zip(p_parts, v_parts, strict=True))


def _compare(operator: str, wanted: str, actual: str) -> bool:
    if operator == "StringEquals":
        return actual == wanted.replace("\x00", "")
    if operator == "StringEqualsIgnoreCase":
        return actual.lower() == wanted.replace("\x00", "").lower()
    if operator == "StringLike":
        return bool(_pattern(wanted).fullmatch(actual))
    if operator in ("ArnEquals", "ArnLike"):
        return _arn_like(wanted, actual)
    if operator == "Bool":
        return actual.lower() == wanted.replace("\x00", "").lower()
    raise ValueError(f"condition operator {operator} is not modelled")


_NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
    "StringNotLike": "StringLike",
    "ArnNotEquals": "ArnEquals",
    "ArnNotLike": "ArnLike",
}


def _condition_holds(operator: str, key: str, values: Sequence[Any], request: Request) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    negated = base in _NEGATED
    positive = _NEGATED.get(base, base)
    actual = request.value(key)
    if actual is None:
        return if_exists or negated
    actual_text = str(actual).lower() if isinstance(actual, bool) else str(actual)
    wanted: list[str] = []
    for raw in values:
        try:
            wanted.append(_substitute(str(raw).lower() if isinstance(raw, bool) else str(raw), request))
        except _Missing:
            continue
    any_match = any(_compare(positive, w, actual_text) for w in wanted)
    return not any_match if negated else any_match


def _conditions_hold(condition: Mapping[str, Mapping[str, Any]] | None, request: Request) -> bool:
    for operator, keys in (condition or {}).items():
        for key, values in keys.items():
            if not _condition_holds(operator, key, _as_list(values), request):
                return False
    return True


_ACCOUNT = re.compile(r"^([0-9]{12}|arn:[^:]+:iam::[0-9]{12}:root)$")


def _principal_matches(element: Any, request: Request) -> bool:
    """A `Principal` element: `*` (anyone), or the request's principal named exactly under its kind.

    IAM allows no wildcard in a Principal but `*` itself; an account (its id or `:root` ARN) means
    "whatever that account's own policies allow", which this evaluator does not model.
    """
    if element == "*":
        return True
    if not isinstance(element, Mapping):
        raise ValueError(f"Principal {element!r} is not modelled")
    for kind, ids in element.items():
        names = [str(i) for i in _as_list(ids)]
        if kind == "AWS" and "*" in names:
            return True
        if kind == "AWS" and any(_ACCOUNT.match(n) for n in names):
            raise ValueError(f"an account principal ({names}) is not modelled")
        if request.principal is not None and request.principal[0] == kind and request.principal[1] in names:
            return True
    return False


def statement_applies(statement: Mapping[str, Any], request: Request) -> bool:
    if "NotPrincipal" in statement:
        raise ValueError("NotPrincipal is not modelled")
    if "Principal" in statement and not _principal_matches(statement["Principal"], request):
        return False
    if "Action" in statement:
        if not _matches(_as_list(statement["Action"]), request.action, request, ignore_case=True):
            return False
    elif "NotAction" in statement:
        if _matches(_as_list(statement["NotAction"]), request.action, request, ignore_case=True):
            return False
    else:
        raise ValueError("a statement needs Action or NotAction")
    if "Resource" in statement:
        if not _matches(_as_list(statement["Resource"]), request.resource, request, ignore_case=False):
            return False
    elif "NotResource" in statement:
        if _matches(_as_list(statement["NotResource"]), request.resource, request, ignore_case=False):
            return False
    elif "Principal" not in statement:
        # Only a resource-based statement may leave it out: it applies to the resource it is attached to.
        raise ValueError("a statement needs Resource or NotResource")
    return _conditions_hold(statement.get("Condition"), request)


def statements(policy: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return _as_list(policy.get("Statement", []))


def evaluate(policies: Iterable[Mapping[str, Any]], request: Request) -> Decision:
    """The decision of a set of policies (identity and resource, one account) on one request."""
    allowed = False
    for policy in policies:
        for statement in statements(policy):
            if not statement_applies(statement, request):
                continue
            if statement["Effect"] == "Deny":
                return Decision.EXPLICIT_DENY
            if statement["Effect"] == "Allow":
                allowed = True
            else:
                raise ValueError(f"Effect must be Allow or Deny, not {statement['Effect']!r}")
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def is_allowed(policies: Iterable[Mapping[str, Any]], request: Request) -> bool:
    return evaluate(policies, request) is Decision.ALLOW
