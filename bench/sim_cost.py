"""`python -m bench.sim_cost`: what the day simulation's shortcuts buy, and that they change nothing.

Runs the same short window of podslots' day twice, each in a fresh interpreter: on moto as it is
(`--moto-table --moto-answers --moto-queues`: whole-table Query and transaction undo, moto's
serializer, the fan-out through moto's SQS) and with the simulation's shortcuts
(`bench/day/sim_table.py`, `sim_wire.py`, `sim_stack.py`). Prints each run's CPU, the ratio, and
whether the two figure rows are the same (they must be: the shortcuts change what a run costs,
never what it decides).

    python -m bench.sim_cost                      # 2 h from 09:00, 30 min of drain
    python -m bench.sim_cost --hours 4 --seed 2
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

SLOW = ["--moto-table", "--moto-answers", "--moto-queues"]


def run(hours: float, seed: int, extra: list[str]) -> tuple[float, str]:
    """(CPU seconds, podslots' figure row without its wall column) of one run in a fresh interpreter."""
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
            "--policies",
            "podslots",
            "--progress-hours",
            "0",
            "--out",
            out,
            *extra,
        ]
        printed = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
    cpu = float(re.search(r"\(d\) podslots: [\d.]+ s wall, ([\d.]+) s CPU", printed).group(1))  # type: ignore[union-attr]
    row = next(line for line in printed.splitlines() if line.startswith("(d) podslots "))
    return cpu, row.rsplit(maxsplit=1)[0]  # the last column is wall time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    slow_cpu, slow_row = run(args.hours, args.seed, SLOW)
    fast_cpu, fast_row = run(args.hours, args.seed, [])
    print(f"day simulation, {args.hours:g} h from 09:00 + 30 min, seed {args.seed}, podslots:")
    print(f"  on moto as it is:          {slow_cpu:6.1f} s CPU")
    print(f"  with the shortcuts:        {fast_cpu:6.1f} s CPU  ({slow_cpu / fast_cpu:.2f}x less)")
    same = slow_row == fast_row
    print(f"  the same figures: {'yes' if same else 'NO'}")
    if not same:
        print(f"    {slow_row}\n    {fast_row}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
