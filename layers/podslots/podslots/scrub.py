"""What podslots may say of text and exceptions that came from outside: errors are data, not text.

A Kubernetes API server's error answer (its `Status.message`), an AWS error, a kubeconfig loader's
complaint: any of them may quote what podslots sent (a bearer token in an echoed `Authorization`
header, an EKS token, a key id) or what a kubeconfig holds. Such text reaches a log line, a run's
report or the pool's history only through `scrub`: cut to a few hundred characters (never in the
middle of a word, where a cut token would no longer look like one), with control characters turned
into spaces (one log line stays one line) and with whatever looks like a credential replaced by
`[redacted]`. The patterns are a safety net; the exact secrets podslots holds (the token it sent)
are passed in and removed wherever they appear.

An unexpected exception is described by `exception_facts`: its type, the types of its causes, and
where it was raised (module, line, function: podslots' own code, not the exception's text). Its
message and a formatted traceback are never logged: both carry whatever text it was given.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import TracebackType
from typing import Any

REDACTED = "[redacted]"
DEFAULT_LIMIT = 200  # what is kept of a server's message: enough to read, too little to carry a payload
MIN_SECRET_LEN = 6  # shorter exact secrets are not looked for (they would match ordinary words)
MAX_FRAMES = 12  # the innermost frames of a traceback, as places

# Each pattern matches a credential; the group `keep`, when there is one, is kept before REDACTED.
_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # `Authorization: <anything>` up to the end of the value (a quote, a comma, a line's end).
        r"(?P<keep>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)[^\"',;\n]*",
        r"k8s-aws-v1\.[A-Za-z0-9_=-]*",  # an EKS token (a presigned STS URL, base64url)
        r"\beyJ[A-Za-z0-9_=-]*(?:\.[A-Za-z0-9_=-]*){0,2}",  # a JWT (a ServiceAccount token)
        r"(?P<keep>\b(?:x-amz-security-token|x-amz-signature|x-amz-credential)=)[^&\s\"']*",
        r"(?P<keep>\b(?:aws_secret_access_key|aws_session_token|aws_access_key_id|password|token)\b\s*[:=]\s*[\"']?)[^\s\"',;&]+",
    )
)
# The auth scheme as headers write it (not as prose does: "a bearer token", "basic auth").
_SCHEME = re.compile(r"(?P<keep>\b(?:Bearer|Basic|BEARER|BASIC)\s+)[A-Za-z0-9._~+/=-]+")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[A-Z0-9]{12,}")  # case matters: ids are uppercase
_HEX_RUN = re.compile(r"\b[0-9a-fA-F]{32,}\b")
# base64 (standard or url-safe) of 32 characters or more: judged by `_looks_random`, since a long
# Kubernetes name (lowercase, digits, dashes) is also such a run.
_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{32,}=*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _looks_random(run: str) -> bool:
    """Mixed case and a digit: what base64 of random bytes nearly always has and a DNS name never."""
    return any(c.isupper() for c in run) and any(c.islower() for c in run) and any(c.isdigit() for c in run)


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters, ending at a word's end: the rest of a cut word is dropped too."""
    if len(text) <= limit:
        return text
    kept = text[:limit]
    if not text[limit].isspace():
        kept = re.sub(r"\S+$", "", kept)
    return kept.rstrip() + " [cut]"


def scrub(text: object, *, limit: int = DEFAULT_LIMIT, secrets: Iterable[str] = ()) -> str:
    """`text` as it may be logged or stored: exact `secrets` and credential-like runs redacted,
    control characters as spaces, at most about `limit` characters (a cut is marked `[cut]`)."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= MIN_SECRET_LEN:
            out = out.replace(secret, REDACTED)
    out = _cut(_CONTROL.sub(" ", out), limit)
    for pattern in _PATTERNS:
        out = pattern.sub(lambda m: (m.groupdict().get("keep") or "") + REDACTED, out)
    out = _SCHEME.sub(lambda m: m.group("keep") + REDACTED, out)
    out = _AWS_KEY_ID.sub(REDACTED, out)
    out = _HEX_RUN.sub(REDACTED, out)
    out = _B64_RUN.sub(lambda m: REDACTED if _looks_random(m.group()) else m.group(), out)
    return _cut(out, limit + len(" [cut]"))


def exception_facts(exc: BaseException) -> dict[str, Any]:
    """What may be logged of an unexpected exception: its type, its causes' types, and where it was
    raised (`module:line function`, innermost last). Never its message, never a formatted traceback."""
    causes: list[str] = []
    seen = {id(exc)}
    link = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    while link is not None and id(link) not in seen and len(causes) < 5:
        seen.add(id(link))
        causes.append(_type_name(link))
        link = link.__cause__ or (None if link.__suppress_context__ else link.__context__)
    facts: dict[str, Any] = {"error_type": _type_name(exc), "where": _places(exc.__traceback__)}
    if causes:
        facts["caused_by"] = causes
    return facts


def described(exc: BaseException, what: str) -> str:
    """The line stored for an unexpected exception (a pool's history): its type and a fixed text."""
    return f"{_type_name(exc)}: {what}"


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _places(tb: TracebackType | None) -> list[str]:
    places: list[str] = []
    while tb is not None:
        code = tb.tb_frame.f_code
        module = tb.tb_frame.f_globals.get("__name__", "?")
        places.append(f"{module}:{tb.tb_lineno} {code.co_name}")
        tb = tb.tb_next
    return places[-MAX_FRAMES:]


__all__ = ["DEFAULT_LIMIT", "REDACTED", "described", "exception_facts", "scrub"]
