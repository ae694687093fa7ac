"""Agent heartbeat: registration and liveness.

The first beat of a pod turns its item from `starting` to `ready` (it may take tasks now); a beat
brings an `unhealthy` pod back. The beat may also say which tasks the agent still holds, which is
how reconcile finds a slot whose task the agent has forgotten. A beat that does not say (the agent
cannot read its task list, or is older than the field) is a sign of life and nothing more: "holds
nothing" is `[]`, never an absent list, so no running task is lost on the word of an agent that
did not know. A draining or unknown pod is told to go (410): it must exit, and take no more work.

A beat speaks for the pod its path names, and only that one: IAM lets an agent of EKS Pod Identity
call its own pod's path alone (template.yaml, `AgentInvokePolicy`). What a beat cannot change is
what the cluster says: the pod's IP comes from reconcile and autoscale. The IP the agent reports
is kept as `reported_ip`, and one that differs from the cluster's is counted
(`HeartbeatIpMismatch`) and logged, never used.

The pod's address at once: the beat that registers a pod whose IP the cluster has not yet given
podslots puts `PodRegistered {pool, pod}` on the bus, and a rule runs reconcile for that pool
(through the dispatcher), which records the IP from its LIST within seconds instead of at the next
minute. The publish is best effort: the minute's reconcile records the IP anyway.
"""

from __future__ import annotations

from podslots.bus import EventPublisher
from podslots.clock import Clock
from podslots.errors import Gone
from podslots.model import Pod
from podslots.observability import count, logger
from podslots.ports import HeartbeatStore
from podslots.scrub import exception_facts
from podslots.store import StoreConflict

IP_MISMATCH_METRIC = "HeartbeatIpMismatch"
POD_REGISTERED = "PodRegistered"


class HeartbeatService:
    def __init__(self, store: HeartbeatStore, clock: Clock, bus: EventPublisher | None = None) -> None:
        self.store = store
        self.clock = clock
        self.bus = bus

    def beat(self, pool: str, pod: str, held_tasks: list[str] | None, reported_ip: str | None) -> Pod:
        """`held_tasks` None: the agent does not know what it holds; the beat keeps the pod alive and
        leaves the last listing as it was (no slot is freed as leaked on the word of this beat)."""
        now = int(self.clock.now())
        held = sorted(set(held_tasks)) if held_tasks is not None else None
        try:
            answer = self.store.heartbeat(pool, pod, held, reported_ip, now)
        except StoreConflict as exc:
            logger.info("heartbeat from a draining or unknown pod", extra={"pool": pool, "pod": pod})
            raise Gone(
                f"pod {pod} of pool {pool} is draining or unknown; the agent should exit",
                pool=pool,
                pod=pod,
            ) from exc
        if answer.registered_at == now and answer.pod_ip is None:
            self._announce(answer)
        if reported_ip and answer.pod_ip and reported_ip != answer.pod_ip:
            count(IP_MISMATCH_METRIC)
            logger.warning(
                "heartbeat reports an IP the cluster does not; the cluster's is kept",
                extra={"pool": pool, "pod": pod, "reported_ip": reported_ip, "cluster_ip": answer.pod_ip},
            )
        return answer

    def _announce(self, pod: Pod) -> None:
        """`PodRegistered` for a pod that has just registered and has no IP yet (a pod that reconcile
        already saw, an adopted one, has one: nothing to hurry). A failed publish is logged by its type
        and swallowed: the beat stands, and the minute's reconcile records the IP."""
        if self.bus is None:
            return
        try:
            self.bus.publish(POD_REGISTERED, {"pool": pod.pool, "pod": pod.name})
        except Exception as exc:
            logger.warning(
                "PodRegistered not published", extra={"pool": pod.pool, "pod": pod.name, **exception_facts(exc)}
            )
