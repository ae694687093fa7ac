"""Agent heartbeat: registration and liveness.

The first beat of a pod turns its item from `starting` to `ready` (it may take tasks now); a beat
brings an `unhealthy` pod back. The beat also says which tasks the agent still holds, which is
how reconcile finds a slot whose task the agent has forgotten. A draining or unknown pod is told
to go (410): it must exit, and take no more work.
"""

from __future__ import annotations

from podslots.clock import Clock
from podslots.errors import Gone
from podslots.model import Pod
from podslots.observability import logger
from podslots.store import SlotStore, StoreConflict


class HeartbeatService:
    def __init__(self, store: SlotStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def beat(self, pool: str, pod: str, held_tasks: list[str], pod_ip: str | None) -> Pod:
        now = int(self.clock.now())
        try:
            answer = self.store.heartbeat(pool, pod, sorted(set(held_tasks)), pod_ip, now)
        except StoreConflict as exc:
            logger.info("heartbeat from a draining or unknown pod", extra={"pool": pool, "pod": pod})
            raise Gone(
                f"pod {pod} of pool {pool} is draining or unknown; the agent should exit",
                pool=pool,
                pod=pod,
            ) from exc
        return answer
