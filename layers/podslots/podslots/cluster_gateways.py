"""Which cluster a pool lives in: its own kubeconfig secret, or the stack's (KUBECONFIG_SECRET)."""

from __future__ import annotations

import os
from collections.abc import Callable

from podslots.cluster import KubeGateway
from podslots.kubeconfig import ClusterConnections
from podslots.store import RegisteredPool

CONNECT_TIMEOUT_S = 3.0


def pool_gateways(connections: Callable[[], ClusterConnections]) -> Callable[[RegisteredPool], KubeGateway]:
    """A gateway per pool, over the cached connection of its kubeconfig secret.

    KUBE_READ_TIMEOUT_S bounds every call's read (10 s by default, well inside the run's minute).
    """

    def gateway_for(pool: RegisteredPool) -> KubeGateway:
        secret = pool.settings.kubeconfig_secret or os.environ["KUBECONFIG_SECRET"]
        read_timeout_s = float(os.environ.get("KUBE_READ_TIMEOUT_S", "10"))
        return KubeGateway(connections().api_client(secret), timeout_s=(CONNECT_TIMEOUT_S, read_timeout_s))

    return gateway_for
