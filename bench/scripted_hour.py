"""A scripted hour of load on the embedded stack (virtual clock): pods over time, scale steps,
blocked scale-downs, and the time from the first 503 to the first allocation on the new pod.

The load: 2 dispatches a minute for 10 minutes, 4 a minute for 15, 1 a minute for 15, then none;
plans of 4 to 9 minutes, every fifth a plan_and_apply approved 10 minutes after its plan ends.
Pods start in 20 s. Autoscale and reconcile run every minute, expire every 5, as the template says.

    make bench            # or, from the repository root: .venv/bin/python -m bench.scripted_hour
"""

from __future__ import annotations

import random
import warnings

from local.demo import POOL, SETTINGS, Story
from local.stack import Stack

MINUTES = 75  # the hour of load, and 15 minutes of quiet to see the pool come down


def rate(minute: int) -> int:
    return 2 if minute < 10 else 4 if minute < 25 else 1 if minute < 40 else 0


def main() -> None:
    warnings.filterwarnings("ignore", "No application metrics to publish")
    from podslots.clock import ManualClock

    clock = ManualClock(start=1_800_000_000.0)
    rng = random.Random(3)
    timeline: list[tuple[int, int, int, float]] = []
    with Stack(clock) as stack:
        story = Story(stack, quiet=True, started=clock.now())
        stack.on_event.append(lambda e: story.scaled.append(e["detail"]) if e["detail-type"] == "PoolScaled" else None)
        stack.call("PUT", "/pools/{pool}", dict(SETTINGS, min_pods=0, max_pods=12), pool=POOL)
        approvals: dict[str, float] = {}
        n = 0
        for minute in range(MINUTES):
            for _ in range(rate(minute)):
                kind = "plan_and_apply" if n % 5 == 4 else "plan"
                story.submit(f"task-{n:03d}", kind, duration_s=rng.randint(240, 540))
                n += 1
            for _ in range(6):
                story.tick(10)
                for job in story.jobs.values():
                    if job.state == "waiting_approval" and job.task_id not in approvals:
                        approvals[job.task_id] = story.now + 600
                    elif job.state == "waiting_approval" and story.now >= approvals[job.task_id]:
                        story.approve(job)
            figures = story.pool()["figures"]
            timeline.append(
                (
                    minute + 1,
                    figures["pods_total"],
                    figures["slots_running"] + figures["slots_reserved"],
                    figures["utilization"],
                )
            )
        first_503 = min(j.first_503 for j in story.jobs.values() if j.first_503)
        first_placed = min(j.placed_at for j in story.jobs.values() if j.placed_at)
        autoscale_runs = [
            t for t, f in stack.invocations if f == "AutoscaleFunction" and first_503 <= t <= first_placed
        ]
        violations = story.violations

    print("minute  pods  busy slots  utilization")
    for minute, pods, busy, util in timeline:
        if minute % 5 == 0 or minute == 1:
            print(f"{minute:6d} {pods:5d} {busy:11d} {util:12.0%}")
    ups = [s for s in story.scaled if s["direction"] == "up"]
    downs = [s for s in story.scaled if s["direction"] == "down"]
    print(
        f"\n{n} tasks dispatched; scale steps: {len(ups)} up, {len(downs)} down; "
        f"pods at most {max(p for _, p, _, _ in timeline)}"
    )
    print(
        f"blocked scale-downs: {sum(1 for s in downs if s['blocked'])} steps, {sum(s['blocked'] for s in downs)} pods kept because busy"
    )
    print(
        f"first 503 -> first allocation on the new pod: {first_placed - first_503:.0f} s, "
        f"{len(autoscale_runs)} autoscale run(s) (on the CapacityShortage), pod start-up 20 s"
    )
    print(f"promise violations: {len(violations)}")


if __name__ == "__main__":
    main()
