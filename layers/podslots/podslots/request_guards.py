"""Requests refused before routing: an oversize body, a body that is not JSON, hostile JSON.

Each answers in the API's error shape, as a Lambda proxy answer, before Powertools parses anything:
what Powertools (or Python's own parser) would do with such a body is a 5xx, and nothing a caller
sends may become one.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import content_types

MAX_BODY_BYTES = 64 * 1024
# Nesting of arrays and objects. The deepest valid body is a pool's `pod_template.spec`: the PodSpec
# schema nests 11 levels (an ephemeral volume's claim selector, say), 13 in the body; 32 leaves room
# for a Kubernetes version that nests deeper (tests/unit/test_podspec_schema.py holds the two apart).
MAX_BODY_DEPTH = 32
MAX_INT_DIGITS = 30  # no field takes a number this long; Python refuses past 4,300 digits anyway
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_INT_DIGITS + 1},}}")


def body_too_large(event: dict[str, Any]) -> dict[str, Any] | None:
    """API Gateway allows 10 MB; podslots' bodies are small, so anything over 64 KiB is refused.

    Answered before routing, so an oversize body is never parsed.
    """
    body = event.get("body") or ""
    size = len(body.encode("utf-8")) if isinstance(body, str) else len(body)
    if event.get("isBase64Encoded"):
        try:
            size = len(base64.b64decode(body, validate=False))
        except (binascii.Error, ValueError):
            return _proxy_answer(400, {"error": "invalid_body", "message": "the body is not valid base64"})
    if size > MAX_BODY_BYTES:
        return _proxy_answer(
            413,
            {"error": "body_too_large", "message": f"the body is {size} bytes; at most {MAX_BODY_BYTES}"},
        )
    return None


def _proxy_answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def not_json(event: dict[str, Any]) -> dict[str, Any] | None:
    """A body sent as anything but JSON is a 415 before Powertools tries to parse it as a form.

    (Powertools raises a plain ValueError, a 5xx, for `multipart/form-data` without a boundary.)
    Media types are case-insensitive (RFC 9110): the header is lowered here, because Powertools
    compares it as written.
    """
    if not event.get("body"):
        return None
    headers = event.get("headers") or {}
    name = next((k for k, v in headers.items() if k.lower() == "content-type" and isinstance(v, str)), None)
    raw = headers[name] if name is not None else "application/json"
    media = raw.split(";")[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        if name is not None:
            headers[name] = raw.lower()
            for key, values in (event.get("multiValueHeaders") or {}).items():
                if key.lower() == "content-type" and isinstance(values, list):
                    event["multiValueHeaders"][key] = [str(v).lower() for v in values]
        return None
    return _proxy_answer(415, {"error": "unsupported_media_type", "message": "send the body as application/json"})


def hostile_json(event: dict[str, Any]) -> dict[str, Any] | None:
    """A body nested deeper than any valid one, or with an absurdly long number, is a 400.

    Parsed before Powertools does: Python's parser raises RecursionError on deep nesting and
    ValueError past 4,300 digits, which would otherwise be 5xx answers to a 20 KB body.
    """
    body = event.get("body")
    if not body or event.get("isBase64Encoded") or not isinstance(body, str):
        return None
    depth = deepest = 0
    in_string = escaped = False
    for char in body:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    if deepest > MAX_BODY_DEPTH:
        return _proxy_answer(
            400, {"error": "invalid_json", "message": f"the body nests deeper than {MAX_BODY_DEPTH} levels"}
        )
    if _LONG_NUMBER.search(_outside_strings(body)):
        return _proxy_answer(
            400, {"error": "invalid_json", "message": f"the body has a number of more than {MAX_INT_DIGITS} digits"}
        )
    return None


def _outside_strings(body: str) -> str:
    """The body with every JSON string emptied (a task id of digits is not a number)."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', body)
