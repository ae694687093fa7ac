"""The simulation's in-process step queues keep what SQS FIFO promises the fan-out
(`bench/day/sim_stack.py`): deduplication within 5 minutes, order, and a held group."""

from __future__ import annotations

from bench.day.sim_stack import InProcessQueues
from podslots.clock import ManualClock
from podslots.step_queues import PoolRun


def test_a_resend_of_the_same_trigger_is_dropped_within_five_minutes_only():
    # Given a queue that has a's run of minute 1
    clock = ManualClock(start=1_000)
    queues = InProcessQueues(clock)
    queues.send("reconcile", [PoolRun("a", "reconcile:a:minute-1")])
    # When the same run is sent again at once, and again six minutes later
    queues.send("reconcile", [PoolRun("a", "reconcile:a:minute-1")])
    first = queues.receive("reconcile", 10)
    clock.set(1_000 + 360)
    queues.send("reconcile", [PoolRun("a", "reconcile:a:minute-1")])
    # Then the resend within the interval was dropped, the later one was not
    assert [m.pool for m in first] == ["a"]
    assert [m.pool for m in queues.receive("reconcile", 10)] == ["a"]


def test_a_failed_message_holds_back_its_pool_and_no_other_until_it_is_visible_again():
    # Given runs for a, b and a again, and a's first run failed (hidden for 30 s)
    clock = ManualClock(start=1_000)
    queues = InProcessQueues(clock)
    queues.send("autoscale", [PoolRun("a", "1"), PoolRun("b", "2"), PoolRun("a", "3")])
    failed = queues.receive("autoscale", 1)[0]
    failed.visible_at = clock.now() + 30
    queues.queues["autoscale"].insert(0, failed)
    # When the queue is read before and after the visibility timeout
    before = queues.receive("autoscale", 10)
    clock.set(1_031)
    after = queues.receive("autoscale", 10)
    # Then only b went before; then a's failed run, then a's later one, in order
    assert [m.pool for m in before] == ["b"]
    assert [(m.pool, m.id) for m in after] == [("a", failed.id), ("a", after[1].id)]
    assert after[1].id != failed.id
