"""What `podslots` prints for people (`--json` prints the API's answer instead).

Apart from the command line so each stays small; the texts read only the answer models.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from podslots_client.models import CordonChange, OutdatedPod, Pod, Pool, PoolEvent, Rollout, Task


def when(epoch: int | None) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if epoch is not None else "-"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [header, *rows]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _slots(pod: Pod) -> str:
    return " ".join(f"{s.slot}:{s.status}" + (f"({s.task_id})" if s.task_id else "") for s in pod.slots)


def pool_text(pool: Pool) -> str:
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
    if pool.pods:
        old = {o.pod for o in pool.rollout.outdated} if pool.rollout is not None else set()
        rows = [
            [
                p.pod,
                p.state,
                str(p.busy),
                p.pod_ip or "-",
                when(p.heartbeat_at),
                _cordons(p.cordon_reasons),
                (p.revision or "-") + (" (old)" if p.pod in old else ""),
                _slots(p),
            ]
            for p in pool.pods
        ]
        header = ["POD", "STATE", "BUSY", "IP", "HEARTBEAT", "CORDONED", "REVISION", "SLOTS"]
        lines += ["", table(header, rows)]
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
