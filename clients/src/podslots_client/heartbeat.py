"""The heartbeat loop of an agent pod, as a library; `python -m podslots_client.agent` is the
sidecar command around it.

The first beat registers the pod (it becomes ready and may take tasks); each beat lists the tasks
the agent holds, which is how podslots finds a slot whose task the agent no longer runs. A beat
sends `held_tasks` only when the agent could read its task list: podslots reads `[]` as "holds
nothing" and frees those slots, but a beat without the field as "unknown" (the pod stays alive,
no slot is freed on its word). A 410
means the pod is draining or unknown: the agent takes no more work and the process exits. A
cordoned pod is still answered 200, with `cordoned` saying why: podslots sends it no new task, its
agent finishes what it runs and beats on, and the pod is drained (then told to go) once it is idle.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from podslots_client.auth import SIGV4_DEFAULT, Auth
from podslots_client.errors import BadRequest, Gone, PodSlotsError
from podslots_client.models import Pod
from podslots_client.retry import Backoff
from podslots_client.transport import Transport, checked_url

log = logging.getLogger("podslots_client.agent")


class AgentExit(enum.Enum):
    STOPPED = "stopped"  # `stop()` was called (SIGTERM, in the command)
    GONE = "gone"  # podslots answered 410: exit, and take no more work


class Agent:
    """Beats every `interval_s` until stopped or told to go; on errors, backs off (exponential,
    capped at `backoff.cap_s`, jittered) instead.

    `held_tasks` is asked before each beat. If it raises, the beat is never sent with a guess: an
    empty list would tell podslots the agent's running tasks are gone, and their slots would be
    freed for other tasks. It goes without `held_tasks` (alive, holdings unknown) once an answer
    has shown that the server reads an absent list as unknown (its answers carry `held_at`); a
    server older than that would read it as `[]`, so until then the beat is skipped and retried
    with backoff.
    """

    def __init__(
        self,
        heartbeat_url: str,
        held_tasks: Callable[[], Iterable[str]],
        *,
        auth: Auth | None = SIGV4_DEFAULT,
        interval_s: float = 30.0,
        pod_ip: str | None = None,
        slots: int | None = None,
        on_gone: Callable[[Gone], None] | None = None,
        on_beat: Callable[[Pod], None] | None = None,
        backoff: Backoff | None = None,
        timeout_s: float = 10.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.heartbeat_url = checked_url(heartbeat_url)
        self.held_tasks = held_tasks
        self.interval_s = interval_s
        self.pod_ip = pod_ip
        self.slots = slots
        self.on_gone = on_gone
        self.on_beat = on_beat
        self.backoff = backoff or Backoff(base_s=1.0, cap_s=60.0)
        self.rand = rand
        self.registered = False
        self.gone: Gone | None = None
        self.cordoned: str | None = None  # why podslots sends this pod no new task, as the last beat said
        self.unknown_is_safe = False  # the server reads a beat without `held_tasks` as "unknown"
        # No retries inside a beat: the loop's own backoff is the one policy, and `stop()` is never
        # held up by a retry's sleep.
        self._transport = Transport(auth, timeout_s=timeout_s, retries=0)
        self._stopping = threading.Event()

    def beat(self) -> Pod:
        """One beat with the tasks held now. Raises `Gone` on a 410, and what the call raised else.

        When the held tasks cannot be read, the beat says so by leaving `held_tasks` out, if the
        server is known to read that as unknown; else it raises what the read raised (no beat).
        """
        body: dict[str, object] = {}
        try:
            held = sorted(set(self.held_tasks()))
        except Exception as exc:
            if not self.unknown_is_safe:
                raise
            log.warning("held tasks unknown (%s): beating without them", _describe(exc))
        else:
            if self.slots is not None and len(held) > self.slots:
                log.warning("%d tasks held on a pod of %d slots", len(held), self.slots)
            body["held_tasks"] = held
        if self.pod_ip:
            body["pod_ip"] = self.pod_ip
        answer = self._transport.request("POST", self.heartbeat_url, body)
        pod = Pod.from_json(answer.body)
        self.unknown_is_safe = "held_at" in answer.body
        if not self.registered:
            log.info("registered: pod %s of pool %s is %s", pod.pod, pod.pool, pod.state)
            self.registered = True
        if pod.cordoned != self.cordoned:
            _log_cordon(pod)
            self.cordoned = pod.cordoned
        if self.on_beat is not None:
            self.on_beat(pod)
        return pod

    def run(self) -> AgentExit:
        """Beat until `stop()` or a 410. Raises `BadRequest` (a beat that can never succeed)."""
        failures = 0
        while not self._stopping.is_set():
            try:
                self.beat()
            except Gone as exc:
                log.warning("told to go: %s", exc.message)
                self.gone = exc
                if self.on_gone is not None:
                    self.on_gone(exc)
                return AgentExit.GONE
            except BadRequest:
                raise
            except Exception as exc:  # the API unreachable or failing, or held_tasks failing: try later
                wait = self.backoff.delay(failures, self.rand())
                failures += 1
                log.warning("heartbeat %d failed (%s); next in %.1f s", failures, _describe(exc), wait)
            else:
                failures = 0
                wait = self.interval_s
            self._stopping.wait(wait)
        return AgentExit.STOPPED

    def stop(self) -> None:
        """End `run()` now, from any thread or a signal handler; no further beat is sent."""
        self._stopping.set()


def _log_cordon(pod: Pod) -> None:
    """Once per change, not per beat: a cordon lasts until the pod is drained, beats are every 30 s."""
    if pod.cordoned is None:
        log.info("uncordoned: pod %s takes new tasks again", pod.pod)
    else:
        log.info(
            "cordoned (%s): pod %s gets no new task, and is drained once idle (%d busy slot%s)",
            pod.cordoned,
            pod.pod,
            pod.busy,
            "" if pod.busy == 1 else "s",
        )


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, PodSlotsError) else f"{type(exc).__name__}: {exc}"


TASK_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # the server's task id syntax (podslots.names.TASK_ID)


def held_in(directory: Path) -> Callable[[], list[str]]:
    """The task ids a directory holds: one regular file per task, named by its id (the file
    protocol, docs/agent-protocol.md). Ignored: dot files (a writer writes `.run-42.tmp` and renames
    it, so a half-written file is never listed), names that are no task id (an editor's `run-42~`, a
    `lost+found`), and anything not a regular file. A directory that cannot be read raises: the beat
    then goes without the list (or is skipped, on a server that would read that as empty), never
    sent empty. A file's content is never read."""

    def held() -> list[str]:
        return sorted(
            p.name
            for p in directory.iterdir()
            if not p.name.startswith(".") and TASK_ID.fullmatch(p.name) and p.is_file()
        )

    return held
