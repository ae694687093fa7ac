"""A run's figures, from its ledger: the table's one row per policy."""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.day.ledger import Ledger
from bench.day.traffic import Trace


@dataclass(frozen=True)
class Figures:
    policy: str
    tasks: int
    completed: int
    interrupted: int
    interrupted_running: int
    interrupted_reserved: int
    apply_lost: int
    pod_hours: float
    bound_hours: float
    wait_p50: float
    wait_p95: float
    wait_max: float
    expired: int
    scale_up: int
    scale_down: int
    wall_s: float
    pinned_hours: float = math.nan  # pods holding a reserved slot, in pod-hours (podslots only)

    @property
    def ratio(self) -> float:
        return self.pod_hours / self.bound_hours if self.bound_hours else math.nan


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every figure is a wait some task had)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def figures_of(policy: str, trace: Trace, ledger: Ledger, wall_s: float) -> Figures:
    fates = [ledger.fate(t.task_id) for t in trace.tasks]
    waits = [f.wait_s for f in fates if f.wait_s is not None]
    return Figures(
        policy=policy,
        tasks=len(fates),
        completed=sum(f.done for f in fates),
        interrupted=sum(f.interrupted is not None for f in fates),
        interrupted_running=sum(f.interrupted == "running" for f in fates),
        interrupted_reserved=sum(f.interrupted == "reserved" for f in fates),
        apply_lost=sum(f.apply_lost for f in fates),
        pod_hours=ledger.pod_seconds / 3600,
        bound_hours=ledger.bound_seconds / 3600,
        wait_p50=percentile(waits, 50),
        wait_p95=percentile(waits, 95),
        wait_max=max(waits) if waits else math.nan,
        expired=sum(f.expired for f in fates),
        scale_up=ledger.scale_up,
        scale_down=ledger.scale_down,
        wall_s=wall_s,
        pinned_hours=ledger.pinned_seconds / 3600 if ledger.pins_tracked else math.nan,
    )


COLUMNS = [
    ("policy", "{}"),
    ("tasks", "{:d}"),
    ("done", "{:d}"),
    ("interrupted (run/rsv)", "{}"),
    ("applies lost", "{:d}"),
    ("pod-h", "{:.1f}"),
    ("bound pod-h", "{:.1f}"),
    ("pod-h / bound", "{:.2f}"),
    ("pinned pod-h", "{:.1f}"),
    ("wait p50 s", "{:.0f}"),
    ("p95 s", "{:.0f}"),
    ("max s", "{:.0f}"),
    ("expired", "{:d}"),
    ("scale up/down", "{}"),
    ("wall s", "{:.1f}"),
]


def row(f: Figures) -> list[str]:
    values = [
        f.policy,
        f.tasks,
        f.completed,
        f"{f.interrupted} ({f.interrupted_running}/{f.interrupted_reserved})",
        f.apply_lost,
        f.pod_hours,
        f.bound_hours,
        f.ratio,
        f.pinned_hours,
        f.wait_p50,
        f.wait_p95,
        f.wait_max,
        f.expired,
        f"{f.scale_up}/{f.scale_down}",
        f.wall_s,
    ]
    return [fmt.format(v) for (_, fmt), v in zip(COLUMNS, values, strict=True)]


def table(rows: list[Figures], markdown: bool = False) -> str:
    head = [name for name, _ in COLUMNS]
    body = [row(f) for f in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)
