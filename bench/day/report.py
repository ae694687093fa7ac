"""`python -m bench.day.report DIR`: the markdown tables of every run saved in DIR, for RESULTS.md.

So that RESULTS.md quotes the runs, never retyped figures. The runs of one seed (same hours and
pools) may have been made by several invocations (`--label`): they are joined into one table,
rows in the order of their letters, and `--png` draws the trade-off of each seed (pod-hours
against p95 dispatch wait, one point per policy).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.day import common
from bench.day.figures import Figures, table
from bench.day.plots import compare_png

# The seed's picture: the alternatives, then podslots' defaults (last: its packed work is the dotted line)
COMPARED = ("(a)", "(c)", "(e)", "(d)")

# Issue 19's targets, against (a) the Deployment on the seed's rule, on the same trace
MAX_RATIO_TO_DEPLOYMENT = 0.7
MAX_P95_S = 30.0
STRETCH_RATIO_TO_BOUND = 1.3


def to_deployment(row: Figures, deployment: Figures) -> float:
    """The row's pod-hours over the Deployment's (NaN when the Deployment has none)."""
    return row.pod_hours / deployment.pod_hours if deployment.pod_hours else math.nan


def verdict(row: Figures, deployment: Figures) -> str:
    """Which of the targets a podslots row meets: nothing interrupted or lost, pod-hours at most
    0.7x the Deployment's, p95 wait at most 30 s; and the stretch, at most 1.3x its own bound."""
    missed = []
    if row.interrupted or row.apply_lost:
        missed.append("interruptions")
    if not to_deployment(row, deployment) <= MAX_RATIO_TO_DEPLOYMENT:  # the ratio: 0.7 itself passes
        missed.append("pod-hours")
    if not row.wait_p95 <= MAX_P95_S:
        missed.append("p95 wait")
    said = "met" if not missed else " and ".join(missed) + " not met"
    return said + ("; stretch met" if row.ratio <= STRETCH_RATIO_TO_BOUND else "")


def targets_table(runs: dict[str, list[Figures]]) -> str:
    """One line per podslots row of every run that has (a) beside it: the targets' figures and verdict."""
    lines = [
        "| policy | run | interrupted (run/rsv) | applies lost | pod-h | (a) pod-h | pod-h / (a) | p95 s "
        "| pod-h / bound | targets; stretch |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in runs.items():
        deployment = next((f for f in rows if f.policy.startswith("(a)")), None)
        if deployment is None:
            continue
        for f in rows:
            if "podslots" not in f.policy:
                continue
            lines.append(
                f"| {f.policy} | {name} | {f.interrupted} ({f.interrupted_running}/{f.interrupted_reserved}) "
                f"| {f.apply_lost} | {f.pod_hours:.1f} | {deployment.pod_hours:.1f} "
                f"| {to_deployment(f, deployment):.2f} "
                f"| {f.wait_p95:.0f} | {f.ratio:.2f} | {verdict(f, deployment)} |"
            )
    return "\n".join(lines)


def documents(out: Path) -> dict[tuple[int, float, int, float, float], list[dict[str, Any]]]:
    """The saved runs of the same trace and span, by (seed, hours, pools, start hour, drain hours):
    only rows of one trace and span are compared."""
    found: dict[tuple[int, float, int, float, float], list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(out.glob("day-seed*.json")):
        document = json.loads(path.read_text())
        args = document["args"]
        key = (document["seed"], args["hours"], args["pools"], args.get("start_hour", 0), args["drain_hours"])
        found[key].append(document)
    return found


def rows_of(docs: list[dict[str, Any]]) -> list[tuple[Figures, dict[str, Any], str]]:
    """Every run of the seed, once per policy (the latest file wins), in the order of the letters."""
    by_policy: dict[str, tuple[Figures, dict[str, Any], str]] = {}
    for document in docs:
        for run in document["runs"]:
            figures = Figures(**run["figures"])
            by_policy[figures.policy] = (figures, run, document["command"])
    return [by_policy[k] for k in sorted(by_policy)]


def placement_table(runs: dict[str, list[Figures]]) -> str:
    """Reservation-aware placement (d) against placement by fullness alone (l), on every run with both."""
    lines = [
        "| policy | run | interrupted (run/rsv) | pod-h | pod-h / bound | p95 s | pinned pod-h | (d) saves: pod-h (pinned) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in runs.items():
        by_letter = {f.policy[:3]: f for f in rows}
        if "(l)" not in by_letter or "(d)" not in by_letter:
            continue
        fullness, aware = by_letter["(l)"], by_letter["(d)"]
        for f in (fullness, aware):
            saved = (
                f"{fullness.pod_hours - aware.pod_hours:.1f} ({fullness.pinned_hours - aware.pinned_hours:.1f})"
                if f is aware
                else ""
            )
            lines.append(
                f"| {f.policy} | {name} | {f.interrupted} ({f.interrupted_running}/{f.interrupted_reserved}) "
                f"| {f.pod_hours:.1f} | {f.ratio:.2f} | {f.wait_p95:.0f} | {f.pinned_hours:.1f} | {saved} |"
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    png = "--png" in argv
    argv = [a for a in argv if a != "--png"]
    out = Path(argv[0] if argv else "bench/results")
    runs: dict[str, list[Figures]] = {}
    for (seed, hours, pools, _, _), docs in sorted(documents(out).items()):
        rows = rows_of(docs)
        runs[f"seed {seed}, {hours:g} h, {pools} pool{'s' if pools > 1 else ''}"] = [f for f, _, _ in rows]
        drain = {d["args"]["drain_hours"] for d in docs}
        print(
            f"**Seed {seed}**: {docs[0]['tasks']} tasks over {hours:g} h on {pools} pool(s), "
            f"then {'/'.join(f'{d:g}' for d in sorted(drain))} h of drain. "
            + "; ".join(f"`{d['command']}`" for d in docs)
            + "\n"
        )
        print(table([f for f, _, _ in rows], markdown=True))
        cpu = ", ".join(f"{f.policy} {run['cpu_s']:.1f} s" for f, run, _ in rows)
        print(f"\nCPU: {cpu}.")
        for f, run, _ in rows:
            if run.get("progress"):
                steps = "; ".join(f"{h:g} h: {c:.0f} s CPU, {n} calls" for h, c, _, n in run["progress"])
                print(f"{f.policy}'s cost as the run went: {steps}.")
        print()
        if png:
            tradeoff_png(out / f"tradeoff-h{hours:g}-p{pools}-s{seed}.png", seed, [f for f, _, _ in rows])
            by_letter = {f.policy[:3]: run for f, run, _ in rows}
            main_runs = [by_letter[letter] for letter in COMPARED if letter in by_letter]
            title = f"seed {seed}: the Deployment, its HPA, a pod per task and podslots"
            compare_png(out / f"day-seed{seed}-compare.png", title, main_runs, common.pool_settings().slots_per_pod)
    print("**Targets**\n")
    print(targets_table(runs))
    print("\n**Placement**\n")
    print(placement_table(runs))
    return 0


def tradeoff_png(path: Path, seed: int, rows: list[Figures]) -> None:
    """Pod-hours against p95 dispatch wait, one labelled point per policy; the bound as a line."""
    from bench.day.plots import plt

    fig, ax = plt.subplots(figsize=(10, 5.5))
    placed: list[tuple[float, float, int]] = []  # each point and the line its letter went on
    for f in sorted(rows, key=lambda r: (r.wait_p95, r.pod_hours)):
        podslots = "podslots" in f.policy
        marker = "o" if podslots else ("s" if f.interrupted == 0 else "X")
        ax.scatter(f.pod_hours, f.wait_p95, marker=marker, s=60, color="tab:blue" if podslots else "tab:red")
        # points close together (most sit at 0 s) get their letters stacked, not printed over each other
        taken = {n for x, y, n in placed if abs(x - f.pod_hours) < 0.05 * f.pod_hours and abs(y - f.wait_p95) < 3}
        line = min(n for n in range(len(rows) + 1) if n not in taken)
        placed.append((f.pod_hours, f.wait_p95, line))
        ax.annotate(
            f.policy.split(" ")[0], (f.pod_hours, f.wait_p95), textcoords="offset points", xytext=(6, 4 + 11 * line)
        )
    bound = max(f.bound_hours for f in rows)  # the work as given: a policy that kills tasks has less left
    ax.axvline(bound, color="black", linestyle=":", label=f"bound {bound:.0f} pod-h")
    ax.axhline(MAX_P95_S, color="grey", linestyle="--", label=f"target p95 {MAX_P95_S:g} s")
    ax.set_xlabel("pod-hours")
    ax.set_ylabel("p95 dispatch wait, s")
    ax.set_title(f"seed {seed}: cost against wait (blue: podslots; red X: interrupts tasks)")
    ax.legend(loc="center right")
    names = ax.text(
        1.02,
        1.0,
        "\n".join(f.policy for f in rows),
        transform=ax.transAxes,
        fontsize=7,
        va="top",
        family="monospace",
    )
    names.set_in_layout(False)  # beside the axes, in the room the layout leaves on the right
    fig.tight_layout(rect=(0, 0, 0.72, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
