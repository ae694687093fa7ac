"""`podslots pools apply`: make the API's pools what the files declare, writing only what differs.

Each declared pool is read first (`GET`); its stored settings are compared with the file's, both
normalised (`pool_settings`), and only a new or changed pool is `PUT`, with the file's own
document (the server fills the defaults). A pool the files do not declare is deleted only with
`prune`; a pool already being deleted is left to finish. `plan` reads and writes nothing, so a
dry run is `plan` alone; `carry_out` makes the writes. A second apply of the same files plans
nothing but `unchanged`.

A refusal that concerns one pool (400 or 422 for its name or settings, 409 while it is being
deleted) is that pool's, and the others go on; any other failure (no credentials, forbidden,
unreachable, 5xx past the retries) ends the run, and the steps not yet made say so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from podslots_client.client import PoolsClient
from podslots_client.errors import BadRequest, Conflict, NotFound, PodSlotsError
from podslots_client.pool_files import DeclaredPool
from podslots_client.pool_settings import ABSENT, Change, differences, normalised

UNREADABLE = "unreadable_settings"  # 409: stored settings that no longer validate; a whole PUT repairs them


class NotAttempted(PodSlotsError):
    """A write left out because an earlier call of the run failed for a reason not about its pool."""

    CODE = "not_attempted"

    def __str__(self) -> str:
        return self.message


class Action(StrEnum):
    CREATE = "create"
    CHANGE = "change"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    DELETING = "deleting"  # not declared, and already being deleted: nothing to do
    REFUSE = "refuse"  # the pool cannot be applied (see `error`)


WRITES = (Action.CREATE, Action.CHANGE, Action.DELETE)


@dataclass(frozen=True)
class Step:
    """What apply does, or did, to one pool. `error` set: refused or failed; `done`: written."""

    pool: str
    action: Action
    source: str | None = None  # the file that declares it (None: a pool only the API has)
    changes: tuple[Change, ...] = ()
    settings: dict[str, Any] | None = field(default=None, repr=False)  # the file's document, to PUT
    note: str | None = None
    error: PodSlotsError | None = None
    done: bool = False
    answer: dict[str, Any] | None = field(default=None, repr=False)  # the write's answer


@dataclass(frozen=True)
class Plan:
    steps: list[Step]
    kept: list[str]  # pools the API has that no file declares, left alone (no prune)

    @property
    def failed(self) -> bool:
        return any(step.error is not None for step in self.steps)


def plan(pools: PoolsClient, declared: Sequence[DeclaredPool], *, prune: bool) -> Plan:
    """What apply would do, from one read of each pool: nothing is written."""
    steps = [_declared_step(pools, pool) for pool in declared]
    wanted = {pool.name for pool in declared}
    others = [name for name in pools.names() if name not in wanted]
    if not prune:
        return Plan(steps, others)
    for name in others:
        step = _undeclared_step(pools, name)
        if step is not None:
            steps.append(step)
    return Plan(steps, [])


def carry_out(pools: PoolsClient, planned: Plan) -> Plan:
    """Make each write the plan holds, in order; the first failure not about its pool ends the run."""
    steps: list[Step] = []
    stopped: PodSlotsError | None = None
    for step in planned.steps:
        if step.action not in WRITES or step.error is not None:
            steps.append(step)
        elif stopped is not None:
            steps.append(replace(step, error=NotAttempted(f"not attempted: an earlier call failed ({stopped})")))
        else:
            try:
                steps.append(_write(pools, step))
            except (BadRequest, Conflict, NotFound) as exc:
                steps.append(replace(step, error=exc))
            except PodSlotsError as exc:
                stopped = exc
                steps.append(replace(step, error=exc))
    return Plan(steps, planned.kept)


def _declared_step(pools: PoolsClient, pool: DeclaredPool) -> Step:
    step = Step(pool.name, Action.CREATE, pool.source, settings=pool.settings)
    try:
        current = pools.get(pool.name)
    except NotFound:
        return replace(step, changes=tuple(differences({}, pool.settings)))
    except Conflict as exc:
        if exc.code != UNREADABLE:
            raise
        note = "its stored settings can no longer be read: the whole document replaces them"
        return replace(step, action=Action.CHANGE, note=note)
    except BadRequest as exc:  # a name the API refuses
        return replace(step, action=Action.REFUSE, error=exc)
    if current.deleting:
        gone = Conflict(f"pool {pool.name} is being deleted: apply again once it is gone", status=409)
        return replace(step, action=Action.REFUSE, error=gone)
    changes = tuple(differences(dict(current.settings), normalised(pool.settings)))
    return replace(step, action=Action.CHANGE if changes else Action.UNCHANGED, changes=changes)


def _undeclared_step(pools: PoolsClient, name: str) -> Step | None:
    """A pool no file declares, to be pruned; None if it went meanwhile."""
    try:
        deleting = pools.get(name).deleting
    except NotFound:
        return None
    except Conflict as exc:
        if exc.code != UNREADABLE:
            raise
        deleting = False
    return Step(name, Action.DELETING if deleting else Action.DELETE)


def _write(pools: PoolsClient, step: Step) -> Step:
    if step.action is Action.DELETE:
        gone = pools.delete(step.pool)
        return replace(step, done=True, answer=dict(gone.raw))
    assert step.settings is not None
    put = pools.put(step.pool, step.settings)
    return replace(step, done=True, answer=dict(put.raw))


def as_json(planned: Plan, *, dry_run: bool) -> dict[str, Any]:
    """The plan or its outcome for scripts: each pool's action, changes, error, and the answer."""
    return {
        "dry_run": dry_run,
        "failed": planned.failed,
        "pools": [_step_json(step) for step in planned.steps],
        "kept": planned.kept,
    }


def _step_json(step: Step) -> dict[str, Any]:
    data: dict[str, Any] = {"pool": step.pool, "action": step.action.value, "source": step.source, "done": step.done}
    data["changes"] = [
        {"field": c.field, **({"from": c.before} if c.before is not ABSENT else {}), **_to(c)} for c in step.changes
    ]
    if step.note:
        data["note"] = step.note
    if step.error is not None:
        data["error"] = {"status": step.error.status, "code": step.error.code, "message": step.error.message}
        problems = step.error.body.get("problems")
        if problems:
            data["error"]["problems"] = problems
    if step.answer is not None:
        data["answer"] = step.answer
    return data


def _to(change: Change) -> dict[str, Any]:
    return {"to": change.after} if change.after is not ABSENT else {}
