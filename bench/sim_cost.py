"""`python -m bench.sim_cost`: what the day simulation's shortcuts buy, and that they change nothing.

Runs the same short window of podslots' day twice, each in a fresh interpreter: on moto as it is
(`--moto-table --moto-answers --moto-expressions --moto-queues`: whole-table Query and
transaction undo, moto's serializer, every expression parsed per request, the fan-out through
moto's SQS) and with the simulation's shortcuts (`bench/day/sim_table.py`, `sim_wire.py`,
`sim_expressions.py`, `sim_stack.py`). Prints each run's CPU, the ratio, and
whether the two runs decided the same (every figure but wall time, and the pods and slots of
every minute: they must be the same, as the shortcuts change what a run costs, never what it
decides; both runs draw their random choices from the same seeded streams).

    python -m bench.sim_cost                      # 2 h from 09:00, 30 min of drain
    python -m bench.sim_cost --hours 4 --seed 2
    python -m bench.sim_cost --only expressions   # what one shortcut buys
    python -m bench.sim_cost --pools 10 --hours 1 # where the agents' beats weigh most
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

SHORTCUTS = ["table", "answers", "expressions", "queues"]  # each turned off by `--moto-<name>`


def run(hours: float, seed: int, extra: list[str], pools: int = 1) -> tuple[float, dict[str, Any]]:
    """(CPU seconds, what the run decided: its figures but wall time, and its per-minute samples) of
    one run in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-m",
            "bench.day",
            "--hours",
            f"{hours:g}",
            "--start-hour",
            "9",
            "--drain-hours",
            "0.5",
            "--seed",
            str(seed),
            "--pools",
            str(pools),
            "--policies",
            "podslots",
            "--progress-hours",
            "0",
            "--out",
            out,
            *extra,
        ]
        subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ)
        document = json.loads((Path(out) / f"day-seed{seed}.json").read_text())
    run = document["runs"][0]
    figures = {k: v for k, v in run["figures"].items() if k != "wall_s"}
    return float(run["cpu_s"]), {"figures": figures, "samples": run["samples"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pools", type=int, default=1, help="pools, in one process (default 1)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SHORTCUTS,
        default=SHORTCUTS,
        help="the slow run turns off only these shortcuts (default: all of them)",
    )
    args = parser.parse_args(argv)
    slow = [f"--moto-{name}" for name in args.only]
    slow_cpu, slow_row = run(args.hours, args.seed, slow, args.pools)
    fast_cpu, fast_row = run(args.hours, args.seed, [], args.pools)
    print(f"day simulation, {args.hours:g} h from 09:00 + 30 min, {args.pools} pool(s), seed {args.seed}, podslots:")
    print(f"  on moto as it is ({' '.join(slow)}): {slow_cpu:6.1f} s CPU")
    print(f"  with the shortcuts:        {fast_cpu:6.1f} s CPU  ({slow_cpu / fast_cpu:.2f}x less)")
    same = slow_row == fast_row
    print(f"  the same decisions (every figure, every minute's pods and slots): {'yes' if same else 'NO'}")
    if not same:
        print(f"    moto as it is: {slow_row['figures']}\n    shortcuts:     {fast_row['figures']}")
        print("    (moto's SQS deduplicates only against messages still queued: a NO can be moto's, not a shortcut's)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
