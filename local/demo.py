"""`make demo`: podslots' whole life cycle on the embedded stack, on a virtual clock.

A task queue and simulated agents talk to the real handlers through API Gateway events; autoscale,
reconcile and expire run on the template's schedules, fanned out one message per pool through their
SQS queues; bus events reach the functions whose rules match them. The story:

1. a burst of dispatches on an empty pool: 503s, a cold start, then scale-up;
2. two plan_and_apply tasks whose plans wait for approval (their slots reserved);
3. load falls away: scale-down removes only idle pods, the reserved pods stay;
4. one approval: the apply resumes on the pod and slot of its plan;
5. the other reservation is never approved: it expires at its deadline (a day later), not before;
6. a new agent image is rolled out while a plan waits for approval: new pods surge in, the old
   ones take no new task, finish theirs and go; the approved apply runs on its plan's old pod;
7. the pool goes back to its minimum;
8. the pool's template becomes a Kubernetes PodSpec (a volume for the working directory, command
   and args) with podslots' heartbeat agent as a native sidecar: the pool rolls onto it, a plan runs.

Then each promise is listed with whether it held; the exit status is 1 if any did not.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from local.stack import NAMESPACE, Stack

POOL = "demo"
TICK_S = 10
BEAT_EVERY_S = 30
SETTINGS = {
    "namespace": NAMESPACE,
    "slots_per_pod": 3,
    "min_pods": 1,
    "max_pods": 6,
    "scale_down_delay_s": 120,
    "pod_template": {"image": "registry.example/tf-agent:1.9", "env": {"TF_IN_AUTOMATION": "1"}},
}
NEW_IMAGE = {**SETTINGS, "pod_template": {**SETTINGS["pod_template"], "image": "registry.example/tf-agent:1.10"}}  # type: ignore[dict-item]
# Chapter 8: the same agent as a PodSpec, with the heartbeat sidecar (the simulated agents below play it).
SIDECAR_IMAGE = "registry.example/podslots-sidecar:1"
WITH_SPEC = {
    **SETTINGS,
    "pod_template": {
        "sidecar": SIDECAR_IMAGE,
        "spec": {
            "containers": [
                {
                    "name": "agent",
                    "image": "registry.example/tf-agent:1.10",
                    "command": ["tf-agent"],
                    "args": ["--work-dir", "/work"],
                    "env": [{"name": "TF_IN_AUTOMATION", "value": "1"}],
                    "volumeMounts": [{"name": "work", "mountPath": "/work"}],
                }
            ],
            "volumes": [{"name": "work", "emptyDir": {"sizeLimit": "5Gi"}}],
        },
    },
}


@dataclass
class Job:
    task_id: str
    task_type: str
    duration_s: int
    state: str = "queued"  # queued, running, waiting_approval, done, expired
    pod: str | None = None
    slot: str | None = None
    ends_at: float = 0.0
    retry_at: float = 0.0
    phase: str = "plan"
    first_503: float | None = None
    placed_at: float | None = None


@dataclass
class Promise:
    text: str
    held: bool | None = None
    detail: str = ""


@dataclass
class Story:
    stack: Stack
    quiet: bool = False
    jobs: dict[str, Job] = field(default_factory=dict)
    started: float = 0.0
    last_beat: dict[str, float] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    expired_events: list[dict[str, Any]] = field(default_factory=list)
    scaled: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    live: Any = None  # a rich Live view when the terminal is a TTY

    @property
    def now(self) -> float:
        return float(self.stack.clock.now())

    def say(self, text: str) -> None:
        if not self.quiet:
            minutes, seconds = divmod(int(self.now - self.started), 60)
            line = f"[+{minutes:4d}:{seconds:02d}] {text}"
            if self.live is not None:
                self.live.console.print(line, markup=False, highlight=False)
            else:
                print(line)

    # ---- the task queue ----------------------------------------------------------------------

    def submit(self, task_id: str, task_type: str, duration_s: int) -> Job:
        job = self.jobs[task_id] = Job(task_id, task_type, duration_s)
        self.dispatch(job)
        return job

    def dispatch(self, job: Job) -> None:
        answer = self.stack.call(
            "POST", "/pools/{pool}/allocations", {"task_id": job.task_id, "task_type": job.task_type}, pool=POOL
        )
        if answer.status == 503:
            job.first_503 = job.first_503 or self.now
            job.retry_at = self.now + int(answer.headers.get("Retry-After", "10"))
            return
        if answer.status not in (200, 201):
            self.violations.append(f"dispatch of {job.task_id} answered {answer.status}: {answer.body}")
            return
        job.pod, job.slot, job.state = answer.body["pod"], answer.body["slot"], "running"
        job.placed_at = job.placed_at or self.now
        job.ends_at = self.now + job.duration_s

    def report(self, job: Job, status: str) -> dict[str, Any]:
        answer = self.stack.call("PUT", "/tasks/{task_id}/status", {"status": status}, task_id=job.task_id)
        if answer.status != 200:
            self.violations.append(f"status {status} of {job.task_id} answered {answer.status}: {answer.body}")
        return dict(answer.body or {})

    def queue_step(self) -> None:
        for job in list(self.jobs.values()):
            if job.state == "queued" and self.now >= job.retry_at:
                self.dispatch(job)
            elif job.state == "running" and self.now >= job.ends_at:
                if job.task_type == "plan_and_apply" and job.phase == "plan":
                    self.report(job, "apply_pending")
                    job.state = "waiting_approval"
                    self.say(f"{job.task_id}: plan done, waits for approval on {job.pod}/{job.slot} (reserved)")
                else:
                    self.report(job, "applied" if job.task_type == "plan_and_apply" else "success")
                    job.state = "done"

    def approve(self, job: Job) -> tuple[str | None, str | None]:
        before = (job.pod, job.slot)
        job.phase, job.state = "apply", "queued"
        self.dispatch(job)
        return before

    # ---- the agents ----------------------------------------------------------------------------

    def agents_step(self, startup_s: int) -> None:
        """A created pod runs after `startup_s`; its agent beats every 30 s with the tasks it holds."""
        for pod in self.stack.kube.pods(NAMESPACE):
            meta, status = pod["metadata"], pod.get("status") or {}
            name = meta["name"]
            if meta.get("deletionTimestamp"):
                continue
            created = _epoch(meta["creationTimestamp"])
            if status.get("phase") == "Pending" and self.now - created >= startup_s:
                self.stack.kube.set_phase(NAMESPACE, name, "Running")
                self.stack.kube.set_pod_ip(NAMESPACE, name, f"10.42.0.{len(self.last_beat) % 250 + 2}")
            if (self.stack.kube.pod(NAMESPACE, name) or {}).get("status", {}).get("phase") != "Running":
                continue
            if self.now - self.last_beat.get(name, 0) < BEAT_EVERY_S:
                continue
            held = [
                j.task_id for j in self.jobs.values() if j.pod == name and j.state in ("running", "waiting_approval")
            ]
            answer = self.stack.call(
                "POST", "/pools/{pool}/pods/{pod}/heartbeat", {"held_tasks": held}, pool=POOL, pod=name
            )
            self.last_beat[name] = self.now
            if answer.status == 410:
                self.last_beat[name] = float("inf")  # the agent exits; its pod is being deleted

    # ---- time ----------------------------------------------------------------------------------

    def tick(self, seconds: int = TICK_S, startup_s: int = 20) -> None:
        for _ in range(max(1, seconds // TICK_S)):
            self.stack.clock.advance(TICK_S)
            self.agents_step(startup_s)
            self.queue_step()
            self.stack.run_due_schedules()
            self.check_no_busy_pod_was_deleted()
            if self.live is not None:
                self.live.update(self.view())

    def check_no_busy_pod_was_deleted(self) -> None:
        live = {p["metadata"]["name"] for p in self.stack.kube.pods(NAMESPACE)}
        for job in self.jobs.values():
            if job.state in ("running", "waiting_approval") and job.pod not in live:
                self.violations.append(f"{job.task_id} was {job.state} on {job.pod}, which is gone")

    def pool(self) -> dict[str, Any]:
        return dict(self.stack.call("GET", "/pools/{pool}", pool=POOL).body)

    def view(self) -> Any:
        """The pool as a rich table: each pod, its state and its slots."""
        from rich.table import Table

        glyph = {"running": "[green]■[/]", "reserved": "[yellow]◆[/]", "idle": "[dim]·[/]"}
        pool = self.pool()
        f = pool["figures"]
        minutes = int(self.now - self.started) // 60
        table = Table(
            title=f"pool {POOL} at +{minutes} min: {f['pods_total']} pods, utilization {f['utilization']:.0%}",
            caption="■ running  ◆ reserved (waits for approval)  · idle",
        )
        for column in ("pod", "state", "revision", "slots", "tasks"):
            table.add_column(column)
        for p in pool["pods"]:
            tasks = ", ".join(s["task_id"] for s in p["slots"] if s.get("task_id"))
            state = p["state"] + (f", cordoned ({p['cordoned']})" if p.get("cordoned") else "")
            revision = (p.get("revision") or "") + ("" if p.get("revision") == pool["revision"] else " (old)")
            table.add_row(p["pod"], state, revision, " ".join(glyph[s["status"]] for s in p["slots"]), tasks)
        return table

    def show(self) -> None:
        if self.quiet or self.live is not None:
            return
        marks = {"running": "R", "reserved": "r", "idle": "."}
        view = self.pool()
        pods = "  ".join(
            f"{p['pod'][-5:]}:{''.join(marks[s['status']] for s in p['slots'])}"
            + ("" if p["state"] == "ready" else f"({p['state']})")
            + ("" if p.get("revision") == view["revision"] else "[old]")
            + ("[cordoned]" if p.get("cordoned") else "")
            for p in view["pods"]
        )
        f = view["figures"]
        print(f"           pods {f['pods_total']} | util {f['utilization']:.0%} | {pods or '(none)'}")


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def play(quiet: bool = False) -> list[Promise]:  # noqa: PLR0915 (the story reads top to bottom)
    from podslots.clock import ManualClock  # after the stack's environment is set

    clock = ManualClock(start=1_800_000_000.0)
    promises: list[Promise] = []
    with Stack(clock) as stack:
        story = Story(stack, quiet=quiet, started=clock.now())
        if not quiet and sys.stdout.isatty():
            from rich.live import Live

            story.live = Live(refresh_per_second=8, transient=False)
            story.live.start()
        stack.on_event.append(lambda e: _watch(story, e))
        story.say("PUT /pools/demo: 3 slots a pod, 1 to 6 pods, scale up above 80%, down below 20%")
        stack.call("PUT", "/pools/{pool}", dict(SETTINGS, min_pods=0), pool=POOL)

        story.say("1. a burst of 7 plans and 2 plan_and_apply tasks on an empty pool")
        for i in range(7):
            story.submit(f"plan-{i}", "plan", duration_s=240 + 30 * i)
        approve = story.submit("pa-approve", "plan_and_apply", duration_s=120)
        ignore = story.submit("pa-ignore", "plan_and_apply", duration_s=150)
        first_503 = min(j.first_503 or math.inf for j in story.jobs.values())
        story.say(f"   every dispatch answered 503; CapacityShortage -> autoscale: {_pods(story)} pod(s) starting")
        story.show()
        while any(j.state == "queued" for j in story.jobs.values()):
            story.tick()
        placed = [j.placed_at for j in story.jobs.values() if j.placed_at]
        story.say(f"   all 9 placed, the first {min(placed) - first_503:.0f} s after its first 503")
        story.show()
        used = {j.pod for j in story.jobs.values()}
        promises.append(
            Promise(
                "cold start: an empty pool got a pod at once, and the waiting task its slot",
                min(placed) - first_503 <= 60,
                f"{min(placed) - first_503:.0f} s from the first 503 (pods start in 20 s)",
            )
        )
        promises.append(
            Promise(
                "bin-packing: 9 tasks on 3-slot pods filled ceil(9/3) = 3 pods",
                len(used) == 3,
                f"{len(used)} pods used",
            )
        )

        story.say("2. both plan_and_apply plans finish and wait for approval")
        while not (approve.state == ignore.state == "waiting_approval"):
            story.tick()
        story.show()

        story.say("3. the plans finish; load falls away; autoscale scales down")
        while any(j.state == "running" for j in story.jobs.values()):
            story.tick()
        story.tick(600)
        story.show()
        reserved_pods = {approve.pod, ignore.pod}
        live = {p["metadata"]["name"] for p in stack.kube.pods(NAMESPACE)}
        downs = [s for s in story.scaled if s["direction"] == "down"]
        promises.append(
            Promise(
                "scale-down removed only idle pods; the pods of reserved slots stayed",
                bool(downs) and reserved_pods <= live,
                f"{len(downs)} step(s) down; {len(live)} pod(s) left, the reserved one among them",
            )
        )

        story.say("4. pa-approve is approved: the queue dispatches its apply")
        before = story.approve(approve)
        story.say(f"   the apply runs on {approve.pod}/{approve.slot} (the plan ran on {before[0]}/{before[1]})")
        promises.append(
            Promise("the apply resumed on the pod and slot of its plan", (approve.pod, approve.slot) == before)
        )
        while approve.state != "done":
            story.tick()

        story.say("5. nobody approves pa-ignore: its reservation runs out after 24 hours")
        task = stack.call("GET", "/tasks/{task_id}", task_id="pa-ignore").body
        deadline = task["reserved_until"]
        stack.clock.set(deadline - 1)
        stack.invoke("ExpireFunction", {})
        just_before = stack.call("GET", "/tasks/{task_id}", task_id="pa-ignore").body["status"]
        stack.clock.set(deadline)
        stack.invoke("ExpireFunction", {})
        at_deadline = stack.call("GET", "/tasks/{task_id}", task_id="pa-ignore").body["status"]
        ignore.state = "expired"
        story.say(f"   at deadline-1 s: {just_before}; at the deadline: {at_deadline}")
        promises.append(
            Promise(
                "a reservation nobody approved expired at its deadline, not a second before",
                just_before == "apply_pending" and at_deadline == "expired" and len(story.expired_events) == 1,
                f"ReservationExpired events: {len(story.expired_events)}",
            )
        )
        for schedule in stack.schedules:
            schedule.next_at = stack.clock.now()

        promises.append(roll_out_a_new_image(story))

        story.say("7. the pool's minimum is raised to 1, and the load is gone")
        stack.call("PUT", "/pools/{pool}", NEW_IMAGE, pool=POOL)
        story.tick(900)
        story.show()
        figures = story.pool()["figures"]
        promises.append(
            Promise(
                "the pool went back to its minimum (1 pod, nothing busy)",
                figures["pods_total"] == 1 and figures["slots_running"] + figures["slots_reserved"] == 0,
                f"{figures['pods_total']} pod(s)",
            )
        )
        promises.append(a_pod_spec_with_the_sidecar(story))
        if story.live is not None:
            story.live.stop()
        promises.insert(
            0,
            Promise(
                "no pod holding a running or reserved slot was ever deleted, and every call was answered as documented",
                not story.violations,
                "; ".join(story.violations[:3]),
            ),
        )
    return promises


def roll_out_a_new_image(story: Story) -> Promise:
    """Chapter 6: a new image while two plans run and a plan waits for approval."""
    story.say("6. two plans and a plan_and_apply run on tf-agent:1.9; the plan_and_apply waits for approval")
    running = [story.submit(f"roll-plan-{i}", "plan", duration_s=300 + 60 * i) for i in range(2)]
    waiting = story.submit("pa-rollout", "plan_and_apply", duration_s=90)
    while any(j.state == "queued" for j in (*running, waiting)) or waiting.state != "waiting_approval":
        story.tick()
    old = {p["pod"] for p in story.pool()["pods"]}
    where = {j.task_id: (j.pod, j.slot) for j in (*running, waiting)}
    story.show()
    story.say("   PUT /pools/demo with image tf-agent:1.10: the pool rolls (max_surge 1)")
    story.stack.call("PUT", "/pools/{pool}", dict(NEW_IMAGE, min_pods=0), pool=POOL)
    story.tick(240)
    story.show()
    story.say("   the apply of pa-rollout is approved while its old pod is being retired")
    plan_slot = story.approve(waiting)
    story.say(f"   the apply runs on {waiting.pod}/{waiting.slot} (the plan ran on {plan_slot[0]}/{plan_slot[1]})")
    deadline = story.now + 3600
    while story.now < deadline and not (
        all(j.state == "done" for j in (*running, waiting)) and any(k == "RolloutFinished" for k, _ in story.rollouts)
    ):
        story.tick()
    story.show()
    view = story.pool()
    left_old = old & {p["pod"] for p in view["pods"]}
    current = all(p["revision"] == view["revision"] for p in view["pods"])
    finished_in_place = all(where[j.task_id] == (j.pod, j.slot) for j in (*running, waiting))
    return Promise(
        "a new image rolled out while a plan waited for approval: every task finished where it started, "
        "the apply on its plan's pod, and the old pods went",
        finished_in_place and plan_slot == (waiting.pod, waiting.slot) and not left_old and current,
        f"{len(old)} old pod(s), {len(left_old)} left; roll-out events: {[k for k, _ in story.rollouts]}",
    )


def a_pod_spec_with_the_sidecar(story: Story) -> Promise:
    """Chapter 8: `pod_template.spec` and `pod_template.sidecar`; the pool rolls onto them."""
    story.say("8. the template becomes a PodSpec: a volume for the working dir, command and args, the sidecar")
    answer = story.stack.call("PUT", "/pools/{pool}", WITH_SPEC, pool=POOL)
    revision = story.pool()["revision"]
    deadline = story.now + 600
    while story.now < deadline and not all(
        p["revision"] == revision and p["state"] == "ready" for p in story.pool()["pods"]
    ):
        story.tick()
    job = story.submit("spec-plan", "plan", duration_s=60)
    while story.now < deadline and job.state != "done":
        story.tick()
    story.show()
    pod = story.stack.kube.pod(NAMESPACE, job.pod or "") or {"spec": {}}
    spec = pod["spec"]
    sidecar = (spec.get("initContainers") or [{}])[0]
    agent: dict[str, Any] = next((c for c in spec.get("containers", []) if c["name"] == "agent"), {})
    volumes = [v["name"] for v in spec.get("volumes", [])]
    story.say(
        f"   {job.task_id} ran on {job.pod}: init container {sidecar.get('name')} (restartPolicy "
        f"{sidecar.get('restartPolicy')}) beats for it; volumes {', '.join(volumes)}; "
        f"the agent runs {' '.join(agent.get('command', []) + agent.get('args', []))}"
    )
    return Promise(
        "a pool using a PodSpec and the native sidecar: its pods carry the volume, the command and args and "
        "the sidecar, and a task ran on one",
        answer.status == 200
        and job.state == "done"
        and (sidecar.get("name"), sidecar.get("restartPolicy"), sidecar.get("image"))
        == ("podslots-sidecar", "Always", SIDECAR_IMAGE)
        and volumes == ["work", "podslots-held-tasks"]
        and agent.get("command") == ["tf-agent"],
        f"PUT answered {answer.status}; {job.task_id} {job.state} on {job.pod}",
    )


def _pods(story: Story) -> int:
    return len(story.stack.kube.pods(NAMESPACE))


def _watch(story: Story, event: dict[str, Any]) -> None:
    detail, kind = event["detail"], event["detail-type"]
    if kind == "ReservationExpired":
        story.expired_events.append(detail)
    elif kind in ("PoolScaled", "ScaleBlocked", "PoolRolled", "PodsDrained"):  # the autoscale steps
        story.scaled.append(detail)
        story.say(
            f"   {kind} {detail['direction']}: {detail['before']} -> {detail['after']} ({detail['reason']})"
            + (f", {detail['blocked']} blocked" if detail.get("blocked") else "")
        )
    elif kind in ("RolloutStarted", "RolloutFinished"):
        story.rollouts.append((kind, detail))
        story.say(
            f"   {kind} to revision {detail['revision']}"
            + (f" ({detail['outdated']} old pods)" if "outdated" in detail else f" after {detail['took_s']} s")
        )
    elif kind == "TaskLost":
        story.violations.append(f"task lost: {detail}")


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", "No application metrics to publish")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quiet", action="store_true", help="print only the promises")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    promises = play(quiet=args.quiet)
    print("\nPromises")
    for p in promises:
        mark = "held  " if p.held else "BROKEN"
        print(f"  [{mark}] {p.text}" + (f" ({p.detail})" if p.detail else ""))
    print(f"\nstory played in {time.perf_counter() - began:.1f} s of wall time")
    return 0 if all(p.held for p in promises) else 1


if __name__ == "__main__":
    sys.exit(main())
