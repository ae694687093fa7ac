"""A pool's learned arrivals (prewarm): one small item, read by autoscale when the pool pre-warms,
written once an hour. The fold itself is pure (podslots.prewarm); this part only keeps it."""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from podslots.prewarm import HOURS_A_WEEK, Arrivals
from podslots.store.base import StoreBase
from podslots.store.items import ArrivalsItem
from podslots.store.keys import ARRIVALS_SK, pool_pk
from podslots.store.transaction import conditional


class ArrivalHistory(StoreBase):
    def arrivals(self, pool: str) -> Arrivals | None:
        """The pool's history; None before its first fold."""
        try:
            item = ArrivalsItem.get(pool_pk(pool), ARRIVALS_SK, consistent_read=True)
        except DoesNotExist:
            return None
        rates = list(item.rates or [])[:HOURS_A_WEEK]
        rates += [None] * (HOURS_A_WEEK - len(rates))
        return Arrivals(
            hour=int(item.hour),
            rates=tuple(float(r) if r is not None else None for r in rates),
            seen={pod: int(n) for pod, n in (item.seen.as_dict() if item.seen is not None else {}).items()},
        )

    def save_arrivals(self, pool: str, arrivals: Arrivals, read: Arrivals | None) -> bool:
        """Write the folded history, only over the one it was folded from (`read`; None: none yet).

        False when another run folded first: its fold stands, this one is dropped (the counters
        are still on the pods, so nothing is lost). A transient failure raises, as every write does.
        """
        item = ArrivalsItem(
            pool_pk(pool),
            ARRIVALS_SK,
            hour=arrivals.hour,
            rates=[round(r, 3) if r is not None else None for r in arrivals.rates],
            seen=dict(arrivals.seen),
        )
        condition = ArrivalsItem.pk.does_not_exist() if read is None else ArrivalsItem.hour == read.hour
        return conditional(lambda: item.save(condition=condition))
