"""Who is calling, and which tasks are theirs: pure rules, no I/O (docs/security.md, "Tasks belong to
the queue that allocated them").

A task belongs to the principal that allocated it. API Gateway names the caller in
`requestContext.identity.userArn`; for a role that is the ARN of one *session*
(`arn:aws:sts::<account>:assumed-role/<role>/<session>`), and a task queue makes a new session
every hour or on every container start, so the owner is the role itself
(`arn:<partition>:iam::<account>:role/<role>`): every session of the queue's role shares its tasks,
and no other role does. Patterns (a pool's `allowed_callers`, the stack's `OperatorRoleArns`) are
matched as IAM's `ArnLike` matches them, against that role ARN.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Where the task status function finds the stack's OperatorRoleArns (template.yaml sets it).
OPERATOR_ROLE_ARNS_VAR = "PODSLOTS_OPERATOR_ROLE_ARNS"

_NAME = r"[A-Za-z0-9_+=,.@-]"  # IAM's user, role and session name characters
_PARTITION = r"aws[a-z-]{0,20}"  # aws, aws-cn, aws-us-gov, aws-iso, aws-iso-b, ...
_ACCOUNT = r"[0-9]{12}"
_ASSUMED_ROLE = re.compile(
    rf"arn:(?P<partition>{_PARTITION}):sts::(?P<account>{_ACCOUNT}):"
    rf"assumed-role/(?P<role>{_NAME}{{1,64}})/{_NAME}{{1,64}}"
)
# IAM users (with their path), the root user, federated users: each is its own principal.
_OTHER_PRINCIPAL = re.compile(
    rf"arn:{_PARTITION}:(?:iam::{_ACCOUNT}:(?:root|user/(?:{_NAME}+/)*{_NAME}{{1,64}})"
    rf"|sts::{_ACCOUNT}:federated-user/{_NAME}{{2,32}})"
)
_API_KEY_ID = re.compile(r"[A-Za-z0-9]{1,128}")
PRINCIPAL_MAX = 2048  # IAM's own limit on an ARN

# A caller pattern: an IAM principal's ARN with ArnLike's `*` and `?`, service `iam` or `sts`.
CALLER_PATTERN_MAX = 1024
CALLER_PATTERNS_MAX = 32
_WILD = r"[*?]"
_CALLER_PATTERN = re.compile(
    rf"arn:(?:{_PARTITION}|[a-z*?-]*{_WILD}[a-z*?-]*):(?:iam|sts)::(?:[0-9*?]{{1,12}}):"
    r"[A-Za-z0-9_+=,.@/*?-]{1,1000}"
)
_ROLE_RESOURCE = re.compile(r"role/(?:(?P<path>.+)/)?(?P<name>[^/]+)")


def principal_of(identity: Mapping[str, Any] | None) -> str | None:
    """The principal a task is recorded for: the caller's ARN, a session's role, or the API key.

    - an assumed-role session is its role, without the session (a role ARN carries a path; a
      session's ARN does not, so the role ARN here never has one);
    - an IAM user, the root user and a federated user are their own ARN;
    - API_KEY mode has no userArn: the principal is `apikey:<apiKeyId>`, the key's id (never the
      key, which API Gateway also puts in the identity): every holder of that key is one caller;
    - nothing usable (no identity, an empty or malformed ARN): None, an anonymous caller, who may
      touch only tasks that have no owner.
    """
    if not identity:
        return None
    arn = identity.get("userArn")
    if isinstance(arn, str) and arn:
        return _principal_arn(arn)
    key_id = identity.get("apiKeyId")
    if isinstance(key_id, str) and _API_KEY_ID.fullmatch(key_id):
        return f"apikey:{key_id}"
    return None


def _principal_arn(arn: str) -> str | None:
    if len(arn) > PRINCIPAL_MAX:
        return None
    session = _ASSUMED_ROLE.fullmatch(arn)
    if session is not None:
        return f"arn:{session['partition']}:iam::{session['account']}:role/{session['role']}"
    return arn if _OTHER_PRINCIPAL.fullmatch(arn) else None


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


def arn_like(pattern: str, arn: str) -> bool:
    """IAM's ArnLike: each of the six colon-separated parts matched on its own, case-sensitively,
    with `*` (any run of characters, `/` included) and `?` (one character)."""
    wanted, given = pattern.split(":", 5), arn.split(":", 5)
    if len(wanted) != 6 or len(given) != 6:
        return False
    return all(_glob(w).fullmatch(g) is not None for w, g in zip(wanted, given, strict=True))


def matches(pattern: str, principal: str | None) -> bool:
    """Does the pattern name this principal?

    A role principal has no path (it comes from a session's ARN), while a pattern written for
    `aws:PrincipalArn` (the API's resource policy reads OperatorRoleArns so) may carry one:
    `role/<path>/<name>`. Role names are unique within an account whatever their path, so a
    pattern that names the role exactly (no wildcard after `role/`) is matched by its name. A
    pattern with a wildcard in a path cannot be decided from a session ARN: it matches no role
    (fail closed; name the role, or use `role/<prefix>*`).
    """
    if principal is None or not principal.startswith("arn:"):
        return False
    if arn_like(pattern, principal):
        return True
    parts = pattern.split(":", 5)
    if len(parts) != 6 or ":role/" not in principal:
        return False
    resource = _ROLE_RESOURCE.fullmatch(parts[5])
    if resource is None or resource["path"] is None or re.search(_WILD, parts[5]):
        return False
    return arn_like(":".join([*parts[:5], f"role/{resource['name']}"]), principal)


def matches_any(patterns: Iterable[str], principal: str | None) -> bool:
    return any(matches(pattern, principal) for pattern in patterns)


def check_caller_pattern(value: str) -> str:
    """A pool's `allowed_callers` entry: an IAM principal's ARN pattern (ValueError names the problem).

    A session's ARN (`assumed-role/...`) is refused: the caller is matched as its role, so such a
    pattern would never match anyone.
    """
    if len(value) > CALLER_PATTERN_MAX:
        raise ValueError(f"an allowed_callers pattern is at most {CALLER_PATTERN_MAX} characters")
    if not _CALLER_PATTERN.fullmatch(value):
        raise ValueError(
            "an allowed_callers pattern is an IAM principal's ARN, `*` and `?` allowed "
            "(arn:<partition>:iam::<account>:role/<name>, ...:user/<name>)"
        )
    if ":assumed-role/" in value:
        raise ValueError(
            "allowed_callers names roles (arn:<partition>:iam::<account>:role/<name>), not their sessions: "
            "a caller is matched as its role"
        )
    return value


def operator_patterns() -> tuple[str, ...]:
    """The stack's OperatorRoleArns (comma-separated in the environment; none outside Lambda)."""
    raw = os.environ.get(OPERATOR_ROLE_ARNS_VAR, "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


@dataclass(frozen=True)
class Caller:
    """Who asks, as the steps see it: a principal (None: anonymous) and whether it reads every task.

    A task with no owner (stored before owners were recorded, or allocated anonymously) is open to
    every caller; an owned task only to its owner, and, for reading, to an operator.
    """

    principal: str | None = None
    reads_every_task: bool = False

    def may_use(self, owner: str | None) -> bool:
        return owner is None or owner == self.principal

    def may_read(self, owner: str | None) -> bool:
        return self.reads_every_task or self.may_use(owner)


ANONYMOUS = Caller()
