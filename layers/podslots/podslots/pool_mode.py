"""What each pool mode allows, in one place: both scheduled steps ask `PoolMode` and nothing else.

Pure (the `pure core` contract): `settings.PoolSettings.mode` is one of these.
"""

from __future__ import annotations

from enum import StrEnum


class PoolMode(StrEnum):
    """How far podslots may act on a pool's cluster (docs/architecture.md, "Staged enablement").

    - `active`: everything (the default);
    - `observe`: records pods and slots, and what it would do (scale steps, deletions), as history
      and metrics, but creates, deletes and patches nothing in the cluster;
    - `paused`: no scale step and no deletion (for an incident); allocation goes on.
    """

    ACTIVE = "active"
    OBSERVE = "observe"
    PAUSED = "paused"

    # What each mode allows, in one place (docs/architecture.md, "Staged enablement"). Both scheduled
    # steps ask these and nothing else; what a mode forbids, they record as "Would…" instead.

    @property
    def may_scale(self) -> bool:
        """Scale steps and roll-outs: create pods, cordon outdated ones, drain idle ones."""
        return self is PoolMode.ACTIVE

    @property
    def may_delete(self) -> bool:
        """Reconcile's deletes: a pod that finished, never came up, or whose drain is retried."""
        return self is PoolMode.ACTIVE

    @property
    def may_empty_deleted_pool(self) -> bool:
        """A DELETE of the pool is the operator's own explicit act: a paused pool's pods go too. An
        observed pool's pods may be a Deployment's: its items are forgotten, its pods left."""
        return self is not PoolMode.OBSERVE

    @property
    def may_patch(self) -> bool:
        """Protection labels and annotations on busy pods (they create or delete nothing)."""
        return self is not PoolMode.OBSERVE

    @property
    def may_rank(self) -> bool:
        """Order where new tasks go (outdated pods a second choice): table writes only, every mode."""
        return True

    @property
    def records_would(self) -> bool:
        """Records what it would do (`WouldScale`, `WouldDelete`) instead of doing it."""
        return not self.may_scale
