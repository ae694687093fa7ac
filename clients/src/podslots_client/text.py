"""What `podslots` prints for people (`-o json` or `-o yaml` prints the API's answer instead).

Apart from the command line so each stays small; the texts read only the answer models.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from podslots_client.apply import Action, Plan, Step
from podslots_client.models import CordonChange, OutdatedPod, Pod, Pool, PoolEvent, Rollout, Task
from podslots_client.pool_settings import ABSENT, Change


def when(epoch: int | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if epoch is not None else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _slots(pod: Pod) -> str:
    return " ".join(f"{s.slot}:{s.status}" + (f"({s.task_id})" if s.task_id else "") for s in pod.slots)


def pool_text(pool: Pool, *, wide: bool = False) -> str:
    """The pool for people; `wide` adds every setting and each pod's last task listing (HELD)."""
    s, f = pool.settings, pool.figures
    template = s.get("pod_template") or {}
    lines = [
        f"pool      {pool.pool}{'  (deleting)' if pool.deleting else ''}",
        f"pods      {s.get('min_pods')}-{s.get('max_pods')} of {s.get('slots_per_pod')} slots",
        f"image     {template.get('image')}",
    ]
    # An older server sends neither the revision nor the mode; say nothing rather than guess.
    if pool.revision is not None:
        lines.append(f"revision  {pool.revision}")
    if s.get("mode") is not None:
        lines.append(f"mode      {s['mode']}")
    if pool.rollout is not None and pool.rollout.rolling:
        lines.append(f"rollout   {rollout_text(pool.rollout)}")
    lines.append("figures   " + "  ".join(f"{k}={v}" for k, v in sorted(f.items())))
    if wide:
        lines += ["", settings_text(pool)]
    if pool.pods:
        old = {o.pod for o in pool.rollout.outdated} if pool.rollout is not None else set()
        rows = [
            [
                p.pod,
                p.state,
                str(p.busy),
                p.pod_ip or "-",
                when(p.heartbeat_at),
                *([when(p.raw.get("held_at"))] if wide else []),
                _cordons(p.cordon_reasons),
                (p.revision or "-") + (" (old)" if p.pod in old else ""),
                _slots(p),
            ]
            for p in pool.pods
        ]
        header = ["POD", "STATE", "BUSY", "IP", "HEARTBEAT", *(["HELD"] if wide else []), "CORDONED", "REVISION"]
        lines += ["", table([*header, "SLOTS"], rows)]
    return "\n".join(lines)


def rollout_text(rollout: Rollout) -> str:
    """One line: pods per revision, then each old pod and what keeps it."""
    counts = " ".join(f"{rev}={n}" for rev, n in sorted(rollout.pods_by_revision.items()))
    holding = "; ".join(f"{o.pod} ({o.revision or '-'}) {_holds(o)}" for o in rollout.outdated)
    return f"to {rollout.revision}: pods {counts}; old pods: {holding}"


def _holds(pod: OutdatedPod) -> str:
    """Why an old pod is still there: its tasks, or the capacity it still serves, or the drain to come."""
    if pod.running or pod.reserved:
        kept = f"{pod.running} running, {pod.reserved} reserved"
    elif not pod.cordon_reasons:
        kept = "in service until current pods are ready"
    else:
        kept = "idle, to be drained"
    return kept + (f" [cordoned: {_cordons(pod.cordon_reasons)}]" if pod.cordon_reasons else "")


def _cordons(reasons: Sequence[str]) -> str:
    return ", ".join(reasons) or "-"


def cordon_text(change: CordonChange, asked: str) -> str:
    """`asked` is `cordon` or `uncordon`: the same answer reads differently for each."""
    pod = change.pod
    name = f"pod {pod.pod} of pool {pod.pool}"
    if asked == "cordon":
        if change.changed:
            busy = f"{pod.busy} busy slot{'' if pod.busy == 1 else 's'}"
            return f"{name} cordoned: it gets no new task, and is drained once idle ({busy})"
        if pod.state == "draining":
            return f"{name} is already draining"
        return f"{name} was already cordoned ({_cordons(pod.cordon_reasons)})"
    if change.changed:
        return f"{name} uncordoned: it takes new tasks again" + ("" if pod.state == "ready" else " once ready")
    return f"{name} was not cordoned"


def events_text(events: Sequence[PoolEvent]) -> str:
    rows = [[when(e.at), e.kind, " ".join(f"{k}={v}" for k, v in sorted(e.detail.items()))] for e in events]
    return table(["AT", "KIND", "DETAIL"], rows) if rows else "no events"


def task_text(task: Task) -> str:
    rows = [
        ("task", task.task_id),
        ("pool", task.pool),
        ("type", task.task_type),
        ("status", task.status),
        ("pod", task.pod or "-"),
        ("slot", task.slot or "-"),
        ("reserved", when(task.reserved_until)),
    ]
    return "\n".join(f"{k:<9} {v}" for k, v in rows)


def deletion_text(pool: str, status: str, remaining: int) -> str:
    if status == "deleted":  # servers before the pool waited for the cluster to show none of its pods
        return f"pool {pool} deleted"
    if remaining == 0:
        return f"pool {pool} deleting: no pod to drain; it goes once the cluster shows none of its pods"
    return f"pool {pool} deleting: {remaining} pods to drain; new allocations are refused"


def pools_table(pools: Sequence[Pool]) -> str:
    """`pools list -o wide`: one row a pool, its size, image, revision and live figures."""
    rows = []
    for pool in pools:
        s, f = pool.settings, pool.figures
        rows.append(
            [
                pool.pool,
                "deleting" if pool.deleting else str(s.get("mode") or "-"),
                f"{s.get('min_pods')}-{s.get('max_pods')}",
                str(s.get("slots_per_pod")),
                f"{f.get('pods_ready', '-')}/{f.get('pods_total', '-')}",
                f"{f.get('slots_running', '-')}/{f.get('slots_reserved', '-')}/{f.get('slots_idle', '-')}",
                str(pool.revision or "-"),
                str((s.get("pod_template") or {}).get("image")),
            ]
        )
    header = ["POOL", "MODE", "PODS", "SLOTS", "READY", "RUN/RES/IDLE", "REVISION", "IMAGE"]
    return table(header, rows) if rows else "no pools"


def settings_text(pool: Pool) -> str:
    """`pools get -o wide`: every setting, one line a field (`pod_template.env.TF_LOG`), as JSON."""
    leaves = sorted(_leaves(dict(pool.settings), ""))
    width = max((len(name) for name, _ in leaves), default=0)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in leaves)


def _leaves(value: object, path: str) -> list[tuple[str, str]]:
    """A nested mapping as (dotted field, JSON value) pairs; empty mappings and lists stay whole."""
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in _leaves(item, f"{path}.{key}" if path else key)]
    return [(path, json.dumps(value, sort_keys=True))]


# What `pools apply` says of each step: (once written, in a dry run).
_SAID = {
    Action.CREATE: ("created", "would be created"),
    Action.CHANGE: ("changed", "would change"),
    Action.UNCHANGED: ("unchanged", "unchanged"),
    Action.DELETE: ("deleting", "would be deleted"),
    Action.DELETING: ("already being deleted", "already being deleted"),
    Action.REFUSE: ("refused", "refused"),
}
_FAILED = {Action.CREATE: "not created", Action.CHANGE: "not changed", Action.DELETE: "not deleted"}
_COUNTED = {  # the summary's words, likewise
    Action.CREATE: ("created", "to create"),
    Action.CHANGE: ("changed", "to change"),
    Action.UNCHANGED: ("unchanged", "unchanged"),
    Action.DELETE: ("deleting", "to delete"),
    Action.DELETING: ("already being deleted", "already being deleted"),
}


def apply_text(plan: Plan, *, dry_run: bool) -> str:
    """Each pool with what changes (`~` from -> to, `+` added, `-` taken out), then a summary."""
    lines: list[str] = []
    for step in plan.steps:
        lines += _step_lines(step, dry_run)
    lines.append(_summary(plan, dry_run))
    if plan.kept:
        lines.append(f"kept {len(plan.kept)} pool(s) no file declares (--prune deletes them): {', '.join(plan.kept)}")
    return "\n".join(lines)


def _step_lines(step: Step, dry_run: bool) -> list[str]:
    name = f"pool {step.pool}" + (f" ({step.source})" if step.source else "")
    if step.error is not None:
        verb = _FAILED.get(step.action, "refused")
        problems = step.error.body.get("problems") or []
        if problems:  # 422: one line a field
            head = f"{name}: {verb}: {step.error.status} {step.error.code}"
            return [head, *(f"  ! {p.get('field')}: {p.get('problem')}" for p in problems)]
        return [f"{name}: {verb}: {step.error}"]
    said = _SAID[step.action][1 if dry_run else 0]
    if step.action is Action.DELETE and step.answer is not None:
        said += f" ({step.answer.get('pods_remaining')} pods to drain)"
    lines = [f"{name}: {said}"]
    if step.note:
        lines.append(f"  {step.note}")
    return lines + [f"  {_change_text(c)}" for c in step.changes]


def _change_text(change: Change) -> str:
    if change.before is ABSENT:
        return f"+ {change.field}: {_value(change.after)}"
    if change.after is ABSENT:
        return f"- {change.field}: {_value(change.before)}"
    return f"~ {change.field}: {_value(change.before)} -> {_value(change.after)}"


def _value(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _summary(plan: Plan, dry_run: bool) -> str:
    counts: dict[str, int] = {}
    for step in plan.steps:
        word = "failed" if step.error is not None else _COUNTED[step.action][1 if dry_run else 0]
        counts[word] = counts.get(word, 0) + 1
    if not plan.steps:
        return "no pool declared"
    if set(counts) <= {"unchanged", "already being deleted"}:
        return "nothing to change: " + ", ".join(f"{n} {word}" for word, n in counts.items())
    said = ", ".join(f"{n} {word}" for word, n in counts.items())
    return f"dry run, nothing written: {said}" if dry_run else said
