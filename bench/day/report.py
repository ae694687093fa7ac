"""`python -m bench.day.report DIR`: the markdown tables of every run saved in DIR, for RESULTS.md.

So that RESULTS.md quotes the runs, never retyped figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.day.figures import Figures, table


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "bench/results")
    for path in sorted(out.glob("day-seed*.json")):
        document = json.loads(path.read_text())
        args = document["args"]
        rows = [Figures(**run["figures"]) for run in document["runs"]]
        print(
            f"**Seed {document['seed']}**: {document['tasks']} tasks over {args['hours']:g} h on "
            f"{args['pools']} pool(s), then {args['drain_hours']:g} h of drain. `{document['command']}`\n"
        )
        print(table(rows, markdown=True))
        cpu = ", ".join(f"{r['figures']['policy']} {r['cpu_s']:.1f} s" for r in document["runs"])
        print(f"\nCPU: {cpu}.")
        for run in document["runs"]:
            if run.get("progress"):
                steps = "; ".join(f"{h:g} h: {c:.0f} s CPU, {n} calls" for h, c, _, n in run["progress"])
                print(f"podslots' cost as the run went: {steps}.")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
