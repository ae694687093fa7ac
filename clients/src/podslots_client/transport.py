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
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import urlencode

from podslots_client.auth import Auth
from podslots_client.errors import NoAnswerInTime, NoCapacity, PodSlotsError, Unreachable, error_for
from podslots_client.retry import Backoff, Deadline, floored

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

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: Mapping[str, str | int] | None = None,
        *,
        deadline: Deadline | None = None,
    ) -> Answer:
        """The answer (2xx), or the error it is; retried attempts count against `retries`.

        With a `deadline`, each try's socket timeouts are cut to the time left, no wait runs past
        it, and when no try fits any more the call raises `NoAnswerInTime`, naming its tries.
        """
        if query:
            url = f"{url}?{urlencode(query)}"
        data = json.dumps(body).encode() if body is not None else None
        attempt = 0
        while True:
            outcome = self._try(method, url, data, deadline)
            if isinstance(outcome, Answer):
                return outcome
            failure = outcome
            pause = self._pause(attempt, failure, deadline)
            if attempt >= self.retries:
                raise failure
            log.info("%s %s failed (%s); retry %d in %.1f s", method, _path(url), failure.outcome, attempt + 1, pause)
            self.sleep(pause)
            attempt += 1

    def _try(self, method: str, url: str, data: bytes | None, deadline: Deadline | None) -> Answer | PodSlotsError:
        """One try: the answer when it is a success, the failure when another try may cure it; an
        error answer no retry can change is raised."""
        timeout = self.timeout_s if deadline is None else deadline.timeout(self.timeout_s)
        try:
            answer = self._once(method, url, data, timeout)
        except Unreachable as exc:
            _count(deadline, exc)
            return exc
        if answer.status < 400:
            _count(deadline, None)
            return answer
        failure = error_for(answer.status, answer.body, answer.headers)
        _count(deadline, failure)
        if isinstance(failure, NoCapacity) or answer.status not in RETRIED_STATUSES:
            raise failure
        return failure

    def _pause(self, attempt: int, failure: PodSlotsError, deadline: Deadline | None) -> float:
        """The wait before the next try; out of time (no try fits before the deadline), `NoAnswerInTime`.

        Checked before the retries are counted: a try cut short by the deadline failed for want of
        time, so even the last of the retries ends in the deadline's error.
        """
        wait = self._delay(attempt, failure.retry_after_s)
        if deadline is None:
            return wait
        pause = deadline.pause(wait)
        if pause is None:
            raise NoAnswerInTime.after(deadline) from failure
        return pause

    def _delay(self, attempt: int, asked: float | None) -> float:
        """The backoff's wait, at least what a `Retry-After` asked (capped) and never under the floor."""
        rand = self.rand()
        delay = floored(self.backoff.delay(attempt, rand), rand)
        if asked is not None:
            delay = max(delay, min(asked, self.backoff.cap_s))
        return delay

    def _once(self, method: str, url: str, data: bytes | None, timeout: float) -> Answer:
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.auth is not None:
            headers = self.auth.headers(method, url, headers, data)
        # S310: every URL comes through `checked_url`, so only http(s) is opened.
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        try:
            return self._exchange(request, timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"{method} {_path(url)}: {reason}", kind=_kind(exc)) from exc

    def _exchange(self, request: urllib.request.Request, timeout: float) -> Answer:
        """The answer, error answers included. `timeout` bounds the connect and each read of the
        socket (not their sum: a server that trickles its answer byte by byte can hold a try longer)."""
        try:
            with self._opener.open(request, timeout=timeout) as response:
                return Answer(response.status, _json(response.read()), _headers(response.headers))
        except urllib.error.HTTPError as exc:
            with exc:  # an error answer is still an answer: its body says which error
                return Answer(exc.code, _json(exc.read() if exc.fp else b""), _headers(exc.headers))


def _count(deadline: Deadline | None, failure: PodSlotsError | None) -> None:
    if deadline is not None:
        deadline.tries += 1
        deadline.last = None if failure is None else failure.outcome


def _kind(exc: BaseException) -> str:
    """How a try failed without an answer, in the client's words (an error's text may quote the server)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (TimeoutError, "timed out"),
        (ConnectionRefusedError, "connection refused"),
        (http.client.RemoteDisconnected, "closed without an answer"),
        (ConnectionResetError, "connection reset"),
        (socket.gaierror, "name not resolved"),
        (ssl.SSLError, "TLS failed"),
        (http.client.HTTPException, "not an HTTP answer"),
        (OSError, "network error"),
    )
    return next((words for kind, words in kinds if isinstance(reason, kind)), "no answer")


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
