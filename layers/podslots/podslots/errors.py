"""Domain errors: what went wrong, in the words of the slot life cycle.

They know nothing of HTTP; `podslots.api` maps each kind to one status code, in one place.
"""

from __future__ import annotations

from podslots.scrub import scrub


class PodSlotsError(Exception):
    """Base of every error a caller can cause or a step can report."""

    code = "error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class FieldProblems(ValueError):
    """A settings check that found several problems, each at its own path: raised inside a model
    validator (pydantic reads it as a ValueError), it lets the 422 name every field apart."""

    def __init__(self, found: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {problem}" for path, problem in found))
        self.found = list(found)


class NotFound(PodSlotsError):
    code = "not_found"


class Conflict(PodSlotsError):
    """The request contradicts the current state (an ended task, another pool, another type)."""

    code = "conflict"


class UnreadableSettings(Conflict):
    """A pool's stored settings cannot be read back (written by an older version, or by hand).

    Only that pool is affected: every other pool goes on, and a whole new PUT replaces them.
    """

    code = "unreadable_settings"


class ReservationGone(Conflict):
    """An approval met no reservation to resume: it expired, its pod or slot was lost, or the task is
    unknown. The details name the task and what happened to it; the queue plans again, knowingly."""

    code = "reservation_gone"


class ResumeContended(Conflict):
    """A resume kept meeting transient faults (conflicts, throttling); nothing moved. Try again."""

    code = "resume_contended"


class BelowPodSecurity(PodSlotsError):
    """The pod a pool's settings would make breaks the pool's `pod_security` level; the details list
    each violation (control and field path in the manifest)."""

    code = "below_pod_security"


class TaskIdTaken(Conflict):
    """The task id belongs to another caller's task. Nothing of that task is told (not its pool, pod,
    slot or status): task ids are chosen by callers, and one queue must not learn another's."""

    code = "task_id_taken"


class CallerNotAllowed(PodSlotsError):
    """The pool's `allowed_callers` does not name the caller: it may not allocate in this pool."""

    code = "caller_not_allowed"


class Gone(PodSlotsError):
    """The pod is draining or unknown: its agent should exit."""

    code = "gone"


class NoCapacity(PodSlotsError):
    """No ready pod has an idle slot: the task is recorded as waiting."""

    code = "no_capacity"

    def __init__(self, message: str, retry_after_s: int, **details: object) -> None:
        super().__init__(message, **details)
        self.retry_after_s = retry_after_s


MESSAGE_LIMIT = 600  # a refusal's message is ours, and says what to do instead: longer than a server's


class ClusterAccessError(PodSlotsError):
    """The kubeconfig cannot be read, parsed or used to reach the cluster (no secret value in the message).

    The message names fields, never their values; what it quotes of another error (AWS's answer, the
    loader's words) goes through `scrub` here, so no caller has to remember to.
    """

    code = "cluster_access"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(scrub(message, limit=MESSAGE_LIMIT), **details)
