"""Errors named for the API's error codes, so callers catch what happened rather than a status.

Every error podslots answers is `{"error": <code>, "message": ...}`; the class is chosen by that
code, and by the status only where API Gateway answered in its own words (`{"message": ...}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from podslots_client.retry import Deadline, retry_after_s


class PodSlotsError(Exception):
    """Base of everything the client raises: an error answer, or no usable answer at all."""

    CODE: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status  # None: no HTTP answer (the connection failed, or it could not be signed)
        self.code = code or self.CODE
        self.body: dict[str, Any] = dict(body or {})
        self.headers: dict[str, str] = dict(headers or {})

    @property
    def retry_after_s(self) -> float | None:
        """The answer's `Retry-After` header in seconds (429 and 503 may carry one)."""
        return retry_after_s(self.headers.get("Retry-After"))

    @property
    def outcome(self) -> str:
        """What the request met, in the client's words: the status and this class's code (`502
        server_error`), never the server's text, so it can be logged and kept."""
        return f"{self.status} {self.CODE}" if self.status is not None else self.CODE

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"


class NotFound(PodSlotsError):
    CODE = "not_found"


class Conflict(PodSlotsError):
    """The request contradicts the current state: an ended task, another pool or type, a pool being
    deleted, an uncordon of a draining pod or of a cordon only podslots ends."""

    CODE = "conflict"

    @property
    def cordoned(self) -> str | None:
        """Why the pod stays cordoned, when an uncordon was refused (`pool deleted`, `outdated revision`)."""
        value = self.body.get("cordoned")
        return value if isinstance(value, str) else None


class ReservationGone(Conflict):
    """An approval (`expect="resume"`), or one that met the task's loss, found no reservation to
    resume. `task_status` is what the task is now (`lost`, `expired`, ...; None: unknown task) and
    `previous` the slot it had and why that ended; the queue plans again."""

    CODE = "reservation_gone"

    @property
    def task_status(self) -> str | None:
        value = self.body.get("task_status")
        return value if isinstance(value, str) else None

    @property
    def previous(self) -> dict[str, Any] | None:
        value = self.body.get("previous")
        return dict(value) if isinstance(value, Mapping) else None


class ResumeContended(Conflict):
    """The resume of a reserved slot kept meeting concurrent writes; nothing moved: safe to send again."""

    CODE = "resume_contended"


class TaskIdTaken(Conflict):
    """The task id is another caller's task (tasks belong to the caller that allocated them): dispatch
    under another id. The answer says nothing else of that task."""

    CODE = "task_id_taken"


class Gone(PodSlotsError):
    """The pod is draining or unknown: its agent should take no more work and exit. (A cordoned pod
    is answered 200, with `cordoned` set: it finishes its tasks and beats on until it is drained.)"""

    CODE = "gone"


class NoCapacity(PodSlotsError):
    """No ready pod has an idle slot; the task is recorded as waiting. `QueueClient.allocate` retries
    it until its deadline, then raises it."""

    CODE = "no_capacity"

    @property
    def retry_after_s(self) -> float | None:
        """The `Retry-After` header, else the body's `retry_after_s`; None when neither says."""
        header = super().retry_after_s
        if header is not None:
            return header
        value = self.body.get("retry_after_s")
        return float(value) if isinstance(value, int | float) else None


class BadRequest(PodSlotsError):
    """The request itself is wrong; sending it again cannot help."""

    CODE = "bad_request"


class InvalidRequest(BadRequest):
    """The body or a path name breaks the schema; `problems` names each field."""

    CODE = "invalid_request"

    @property
    def problems(self) -> list[dict[str, Any]]:
        return list(self.body.get("problems") or [])


class InvalidInput(BadRequest):
    """The body passed the schema but breaks a rule (min above max, a bad name); `field` names it."""

    CODE = "invalid"

    @property
    def field(self) -> str | None:
        return self.body.get("field")


class InvalidJson(BadRequest):
    CODE = "invalid_json"


class InvalidBody(BadRequest):
    CODE = "invalid_body"


class UnsupportedMediaType(BadRequest):
    CODE = "unsupported_media_type"


class BodyTooLarge(BadRequest):
    CODE = "body_too_large"


class Forbidden(PodSlotsError):
    """API Gateway refused the caller: unsigned, badly signed, no IAM permission, or a wrong API key
    (also its answer for a path with no route)."""

    CODE = "forbidden"


class CallerNotAllowed(Forbidden):
    """The pool's `allowed_callers` does not name this caller: it may not allocate in that pool."""

    CODE = "caller_not_allowed"


class Throttled(PodSlotsError):
    CODE = "throttled"


class ServerError(PodSlotsError):
    """A 5xx that is not the contract's no_capacity: Lambda failed or timed out behind API Gateway."""

    CODE = "server_error"


class Unreachable(PodSlotsError):
    """No HTTP answer: the connection failed or timed out. `kind` says how (`timed out`,
    `connection refused`, ...), in the client's words."""

    CODE = "unreachable"

    def __init__(self, message: str, *, kind: str = "no answer", **details: Any) -> None:
        super().__init__(message, **details)
        self.kind = kind

    @property
    def outcome(self) -> str:
        return self.kind


class DeadlineExceeded(PodSlotsError):
    """The call's deadline passed before it had its answer. `tries` is how many requests were
    sent, `last` what the last one met (`503 no_capacity`, `502 server_error`, `timed out`), in the
    client's words: never a header or body text of the server's.

    Catch it for any deadline. Each one raised is also what callers caught before deadlines bounded
    each request: `NoAnswerInTime` is an `Unreachable`, `NoCapacityInTime` a `NoCapacity`.
    """

    CODE = "deadline_exceeded"

    def __init__(self, message: str, *, tries: int, last: str | None, **details: Any) -> None:
        super().__init__(message, **details)
        self.tries = tries
        self.last = last


class NoAnswerInTime(DeadlineExceeded, Unreachable):
    """No usable answer before the deadline: each try timed out, failed to connect, or was answered
    with a 429 or 5xx that a retry might have cured, had there been time for one."""

    CODE = DeadlineExceeded.CODE

    @classmethod
    def after(cls, deadline: Deadline) -> NoAnswerInTime:
        return cls(
            f"no answer within the {deadline.seconds:g} s deadline: "
            f"{_tries(deadline)} in {deadline.elapsed():.1f} s, the last {deadline.last or 'unsent'}",
            tries=deadline.tries,
            last=deadline.last,
            kind="deadline exceeded",
        )


class NoCapacityInTime(DeadlineExceeded, NoCapacity):
    """`allocate` met 503 no_capacity until its deadline. `status`, `body` and `retry_after_s` are
    the last 503's."""

    CODE = NoCapacity.CODE

    @classmethod
    def after(cls, deadline: Deadline, last: NoCapacity) -> NoCapacityInTime:
        """From the last 503: its status, body and headers (for `retry_after_s`), not its words."""
        return cls(
            f"no capacity within the {deadline.seconds:g} s deadline: "
            f"gave up after {_tries(deadline)} in {deadline.elapsed():.0f} s, the last {last.outcome}",
            tries=deadline.tries,
            last=last.outcome,
            status=last.status,
            body=last.body,
            headers=last.headers,
        )


def _tries(deadline: Deadline) -> str:
    return f"{deadline.tries} {'try' if deadline.tries == 1 else 'tries'}"


class CannotSign(PodSlotsError):
    """SigV4 found no AWS credentials (env, web identity, container or instance role), or no region."""

    CODE = "cannot_sign"


class UnexpectedAnswer(PodSlotsError):
    """A success answer without a field the contract promises: the URL is probably not podslots."""

    CODE = "unexpected_answer"


_BY_CODE: dict[str, type[PodSlotsError]] = {
    kind.CODE: kind
    for kind in (
        NotFound,
        Conflict,
        ReservationGone,
        ResumeContended,
        TaskIdTaken,
        CallerNotAllowed,
        Gone,
        NoCapacity,
        InvalidRequest,
        InvalidInput,
        InvalidJson,
        InvalidBody,
        UnsupportedMediaType,
        BodyTooLarge,
    )
}
_BY_STATUS: dict[int, type[PodSlotsError]] = {
    400: BadRequest,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: BodyTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: Throttled,
}


def error_for(status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> PodSlotsError:
    """The exception for an error answer: by its `error` code, else by its status."""
    code = body.get("error")
    message = str(body.get("message") or f"HTTP {status}")
    if isinstance(code, str) and code in _BY_CODE:
        kind = _BY_CODE[code]
    elif status >= 500:
        kind = ServerError
    else:
        kind = _BY_STATUS.get(status, PodSlotsError)
    return kind(message, status=status, code=code if isinstance(code, str) else None, body=body, headers=headers)
