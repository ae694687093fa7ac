"""JSON over HTTP with the standard library, signed per attempt, retried where that is safe.

Every podslots call is safe to repeat (the API says so), so a dropped connection, a timeout, a 429
and a 5xx are retried with backoff, honouring `Retry-After`. The one exception is the contract's
503 no_capacity: it is an answer, raised at once, and `QueueClient.allocate` decides how to wait.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlencode

from podslots_client.auth import Auth
from podslots_client.errors import NoCapacity, PodSlotsError, Unreachable, error_for
from podslots_client.retry import Backoff

log = logging.getLogger("podslots_client")

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "podslots-client/0.1"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str]


def checked_url(url: str) -> str:
    """An http(s) URL without its trailing slash; anything else is refused before a request is made."""
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"podslots URLs are http:// or https://, not {url.split(':', 1)[0]!r}")
    return url.rstrip("/")


class Transport:
    """One base URL's requests. `retries` is how many times a failed attempt is repeated."""

    def __init__(
        self,
        auth: Auth | None,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.auth = auth
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.rand = rand
        # No redirects: a signed request must not be replayed to another host.
        self._opener = urllib.request.build_opener(_NoRedirect)

    def request(self, method: str, url: str, body: Any = None, query: Mapping[str, str | int] | None = None) -> Answer:
        """The answer (2xx), or the error it is; retried attempts count against `retries`."""
        if query:
            url = f"{url}?{urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        attempt = 0
        while True:
            try:
                answer = self._once(method, url, data)
            except Unreachable as exc:
                failure: PodSlotsError = exc
                wait = None
            else:
                if answer.status < 400:
                    return answer
                failure = error_for(answer.status, answer.body, answer.headers)
                if isinstance(failure, NoCapacity) or answer.status not in RETRIED_STATUSES:
                    raise failure
                wait = failure.retry_after_s
            if attempt >= self.retries:
                raise failure
            delay = self.backoff.delay(attempt, self.rand())
            if wait is not None:
                delay = max(delay, min(wait, self.backoff.cap_s))
            log.info("%s %s failed (%s); retry %d in %.1f s", method, _path(url), failure.code, attempt + 1, delay)
            self.sleep(delay)
            attempt += 1

    def _once(self, method: str, url: str, data: bytes | None) -> Answer:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.auth is not None:
            headers = self.auth.headers(method, url, headers, data)
        # S310: every URL comes through `checked_url`, so only http(s) is opened.
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return Answer(response.status, _json(response.read()), _headers(response.headers))
        except urllib.error.HTTPError as exc:
            with exc:  # an error answer is still an answer: its body says which error
                return Answer(exc.code, _json(exc.read() if exc.fp else b""), _headers(exc.headers))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{method} {_path(url)}: {reason}") from exc


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _json(data: bytes) -> dict[str, Any]:
    """The answer's JSON object; anything else (a proxy's HTML page) becomes its first words."""
    if not data:
        return {}
    try:
        parsed = json.loads(data)
    except ValueError:
        return {"message": data[:200].decode("utf-8", errors="replace")}
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def _headers(message: Message) -> dict[str, str]:
    # Header names are case-insensitive; keep the title-case spelling for lookups.
    return {key.title(): value for key, value in message.items()}


def _path(url: str) -> str:
    """The URL without its query, for logs."""
    return url.split("?", 1)[0]
