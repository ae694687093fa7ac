"""`python -m bench.day`: one seeded trace of Terraform traffic, replayed under four policies.

    python -m bench.day                                 # a weekday, one pool, seed 1
    python -m bench.day --hours 2 --start-hour 9        # the short form `make bench` runs
    python -m bench.day --hours 168 --pools 10          # a week, ten pools

Prints one row of figures per policy and seed, and writes to --out: a JSON of the figures and
samples, a markdown table, one PNG per policy and one comparing the four.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial
from pathlib import Path

from bench.day import common
from bench.day.deployment import DeploymentModel
from bench.day.figures import Figures, figures_of, table
from bench.day.hpa import HpaModel
from bench.day.ledger import Ledger
from bench.day.plots import compare_png, policy_png
from bench.day.podslots_policy import PodslotsModel
from bench.day.scaledjob import ScaledJobModel
from bench.day.traffic import HOUR, Trace, make_trace
from bench.day.workers import RunNotes, run_split, timed

LAST_NOTES: list[RunNotes] = []
WORKERS = [1]
PROGRESS_EVERY_H = [6.0]
KEYED_QUERIES = [True]
DIRECT_ANSWERS = [True]
PARSED_ONCE = [True]
QUEUES_IN_PROCESS = [True]
HISTORY_SEED = 1000  # the week a pre-warming pool learned from: seed + 1000


def _deployment(trace: Trace, seed: int) -> Ledger:
    return DeploymentModel(trace, graceful=False, seed=seed).run()


def _graceful(trace: Trace, seed: int) -> Ledger:
    return DeploymentModel(trace, graceful=True, seed=seed).run()


def _job(trace: Trace, seed: int) -> Ledger:
    return ScaledJobModel(trace, seed).run()


def _hpa(trace: Trace, seed: int) -> Ledger:
    return HpaModel(trace, seed).run()


def _play_podslots(
    seed: int, settings: dict[str, object], history: Trace | None, placement: str | None, trace: Trace
) -> tuple[Ledger, RunNotes]:
    model = PodslotsModel(
        trace,
        seed,
        progress_every_h=PROGRESS_EVERY_H[0],
        settings=settings,
        keyed_queries=KEYED_QUERIES[0],
        direct_answers=DIRECT_ANSWERS[0],
        parsed_once=PARSED_ONCE[0],
        queues_in_process=QUEUES_IN_PROCESS[0],
        placement=placement,
        history=history,
    )
    ledger = model.run()
    return ledger, RunNotes.of(model)


def _podslots_with(placement: str | None = None, **settings: object) -> Callable[[Trace, int], Ledger]:
    """podslots with its defaults changed by `settings` (none: the defaults). A pre-warming pool is
    given the history a week of the same traffic model (another seed: another week) leaves. With
    `--workers N` and several pools, N processes run a share of the pools each (bench/day/workers.py)."""

    def play(trace: Trace, seed: int) -> Ledger:
        history = make_trace(seed + HISTORY_SEED, 168, len(trace.pools)) if settings.get("prewarm") else None
        one = partial(_play_podslots, seed, settings, history, placement)
        workers = min(WORKERS[0], len(trace.pools))
        ledger, notes = run_split(partial(timed, one), trace, workers) if workers > 1 else one(trace)
        LAST_NOTES[:] = [notes]  # for the notes printed after its row
        return ledger

    return play


POLICIES: dict[str, tuple[str, Callable[[Trace, int], Ledger]]] = {
    "deployment": ("(a) Deployment", _deployment),
    "graceful": ("(b) Deployment, graceful", _graceful),
    "job": ("(c) pod per task", _job),
    "podslots": ("(d) podslots", _podslots_with()),
    "hpa": ("(e) Deployment, HPA 70 % busy", _hpa),
    "utilization": ("(f) podslots, utilization 80/20", _podslots_with(scaling="utilization")),
    "headroom0": ("(g) podslots, headroom 0", _podslots_with(headroom_pods=0)),
    "headroom2": ("(h) podslots, headroom 2", _podslots_with(headroom_pods=2)),
    "warm": ("(i) podslots, headroom 0, warm 2 slots", _podslots_with(headroom_pods=0, warm_slots=2)),
    "prewarm": ("(j) podslots, headroom 0, pre-warm", _podslots_with(headroom_pods=0, prewarm=True)),
    "prewarm1": ("(k) podslots, pre-warm", _podslots_with(prewarm=True)),
    "fullness": ("(l) podslots, placement by fullness alone", _podslots_with(placement="fullness")),
    "oldestpin": ("(m) podslots, pinning tasks to the pod pinned longest", _podslots_with(placement="oldest-pin")),
}
PODSLOTS_KEYS = {
    "podslots",
    "utilization",
    "headroom0",
    "headroom2",
    "warm",
    "prewarm",
    "prewarm1",
    "fullness",
    "oldestpin",
}
DEFAULT_POLICIES = "deployment,graceful,job,podslots"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.day", description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=24, help="hours of traffic (default 24)")
    parser.add_argument("--pools", type=int, default=1, help="pools, each with its own traffic (default 1)")
    parser.add_argument("--seed", type=int, nargs="+", default=[1], help="one trace per seed (default 1)")
    parser.add_argument("--start-hour", type=int, default=0, help="hour of the (Monday) day the run starts")
    parser.add_argument(
        "--drain-hours",
        type=float,
        default=common.DRAIN_S / HOUR,
        help="simulated after the last arrival, so reservations can expire (default 25)",
    )
    parser.add_argument(
        "--progress-hours", type=float, default=6, help="podslots prints its cost this often (0: never)"
    )
    parser.add_argument(
        "--policies", default=DEFAULT_POLICIES, help=f"some of {','.join(POLICIES)} (default {DEFAULT_POLICIES})"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="podslots' pools shared over this many processes (bench/day/workers.py; default 1)",
    )
    parser.add_argument(
        "--moto-table",
        "--moto-queries",
        dest="moto_queries",
        action="store_true",
        help="podslots on moto's own Query and transactions, which walk and copy the whole table (slow; bench/day/sim_table.py)",
    )
    parser.add_argument(
        "--moto-answers",
        action="store_true",
        help="podslots on moto's own serializer of DynamoDB's answers (slow; bench/day/sim_wire.py)",
    )
    parser.add_argument(
        "--moto-expressions",
        action="store_true",
        help="podslots on moto's expression parsing, once per request (slow; bench/day/sim_expressions.py)",
    )
    parser.add_argument(
        "--moto-queues",
        action="store_true",
        help="podslots' fan-out through moto's SQS, as the local stack does (slow; bench/day/sim_stack.py)",
    )
    parser.add_argument(
        "--label",
        default="",
        help="added to the names of the JSON and table, so runs of other policies on the same seed sit beside them",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results"), help="where to write (default bench/results)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    common.DRAIN_S = args.drain_hours * HOUR
    PROGRESS_EVERY_H[0] = args.progress_hours
    KEYED_QUERIES[0] = not args.moto_queries
    DIRECT_ANSWERS[0] = not args.moto_answers
    PARSED_ONCE[0] = not args.moto_expressions
    WORKERS[0] = max(1, args.workers)
    QUEUES_IN_PROCESS[0] = not args.moto_queues
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.day " + shlex.join(sys.argv[1:] if argv is None else argv)
    rows: list[Figures] = []
    for seed in args.seed:
        trace = make_trace(seed, args.hours, args.pools, args.start_hour)
        print(
            f"seed {seed}: {len(trace.tasks)} tasks over {args.hours:g} h on {args.pools} pool(s), "
            f"then {args.drain_hours:g} h of drain",
            flush=True,
        )
        runs = []
        for key in args.policies.split(","):
            name, play = POLICIES[key]
            wall, cpu = time.perf_counter(), time.process_time()
            ledger = play(trace, seed)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if key in PODSLOTS_KEYS:
                cpu += LAST_NOTES[0].workers_cpu_s  # the workers' CPU, when the pools were shared out
            figures = figures_of(name, trace, ledger, wall)
            rows.append(figures)
            print(f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
            if key in PODSLOTS_KEYS:
                _podslots_notes(LAST_NOTES[0])
            run: dict[str, object] = {"figures": asdict(figures), "cpu_s": cpu, "samples": ledger.samples}
            if key in PODSLOTS_KEYS:
                run["progress"] = LAST_NOTES[0].progress
            runs.append(run)
            stem = f"day-seed{seed}-{key}"  # one picture per policy: policies of separate runs never collide
            policy_png(args.out / f"{stem}.png", f"{name}, seed {seed}", ledger.samples, ledger.slots_per_pod)
        slots = common.pool_settings().slots_per_pod
        suffix = f"-{args.label}" if args.label else ""
        compare_png(args.out / f"day-seed{seed}{suffix}-compare.png", f"{len(runs)} policies, seed {seed}", runs, slots)
        document = {
            "command": command,
            "seed": seed,
            "tasks": len(trace.tasks),
            "args": vars(args) | {"out": str(args.out)},
            "runs": runs,
        }
        (args.out / f"day-seed{seed}{suffix}.json").write_text(json.dumps(document))
    print()
    print(table(rows))
    seeds = "-".join(str(s) for s in args.seed)
    suffix = f"-{args.label}" if args.label else ""
    (args.out / f"table-h{args.hours:g}-p{args.pools}-s{seeds}{suffix}.md").write_text(
        f"`{command}`\n\n{table(rows, markdown=True)}\n"
    )
    return 0


def _podslots_notes(notes: RunNotes) -> None:
    spent = sorted(notes.sim_wall.items(), key=lambda kv: -kv[1])
    print(f"    {notes.calls} API calls; " + ", ".join(f"{k} {v:.0f} s" for k, v in spent[:3]))
    print("    invocations: " + ", ".join(f"{k} {v}" for k, v in sorted(notes.invocations.items())))
    for violation in notes.violations[:5]:
        print(f"    ! {violation}")
    if len(notes.violations) > 5:
        print(f"    ! ... {len(notes.violations) - 5} more")


if __name__ == "__main__":
    sys.exit(main())
