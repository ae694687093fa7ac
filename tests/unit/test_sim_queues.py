"""The simulation's in-process step queues and bus keep what SQS FIFO and EventBridge promise the
fan-out (`bench/day/sim_stack.py`): deduplication within 5 minutes, order, a held group, the
template's retention and redrive; an event's own id and time."""

from __future__ import annotations

from bench.day.sim_stack import InProcessBus, InProcessQueues
from podslots.clock import ManualClock
from podslots.step_queues import PoolRun
from podslots.triggers import fan_out_run


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
    assert [(m.pool, m.id) for m in after] == [("a", "m-0"), ("a", "m-2")]
    assert failed.id == "m-0"


def test_a_message_past_the_queues_retention_is_gone():
    # Given a run for a held back (its earlier run failed) and a run for b, both sent at 1,000
    clock = ManualClock(start=1_000)
    queues = InProcessQueues(clock, retention_s=300, max_receives=5)
    queues.send("expire", [PoolRun("a", "1"), PoolRun("b", "2")])
    # When the queue is read only after the retention period
    clock.set(1_300)
    # Then neither is received: both are gone, as SQS deletes them
    assert queues.receive("expire", 10) == []
    assert (queues.expired, queues.dead_letters) == (2, [])


def test_a_message_received_as_often_as_the_redrive_allows_is_dead_lettered_not_received_again():
    # Given a's run received (and failed) twice, with a redrive after 2 receives
    clock = ManualClock(start=1_000)
    queues = InProcessQueues(clock, retention_s=300, max_receives=2)
    queues.send("expire", [PoolRun("a", "1"), PoolRun("b", "2")])
    for _ in range(2):
        message = queues.receive("expire", 1)[0]
        queues.queues["expire"].insert(0, message)
    # When the queue is read again, then b's run comes and a's is in the dead-letter queue
    assert [m.pool for m in queues.receive("expire", 10)] == ["b"]
    assert [m.pool for m in queues.dead_letters] == ["a"]


def test_a_bus_event_carries_its_own_id_and_time_so_its_run_is_not_the_minutes():
    # Given the in-process bus at 10:00:07 on the virtual clock
    clock = ManualClock(start=1_799_661_607)
    bus = InProcessBus(clock)
    # When a pod registers, and the pool runs short
    bus.publish("PodRegistered", {"pool": "tf-00", "pod": "tf-00-abcde"})
    bus.publish("CapacityShortage", {"pool": "tf-00", "task_id": "t-1", "waiting": 1})
    registered, shortage = bus.pending
    # Then each has EventBridge's fields, and the dispatcher names their runs after them
    assert registered["time"] == "2027-01-11T10:00:07Z"
    assert registered["id"] != shortage["id"]
    assert fan_out_run(registered)[2] == f"registered-{1_799_661_607 // 10}"
    assert fan_out_run(shortage)[2] == f"event-{shortage['id']}"
