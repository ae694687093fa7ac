"""What a placement reports as the slot a task had (`previous`), from task items of every age."""

from __future__ import annotations

from podslots.model import RESERVATION_EXPIRED, EndedSlot, Task, TaskStatus, TaskType


def task(status: TaskStatus, pod: str | None = None, slot: str | None = None, ended: EndedSlot | None = None) -> Task:
    return Task("run-42", "terraform", TaskType.PLAN_AND_APPLY, status, pod=pod, slot=slot, ended=ended)


def test_a_task_podslots_ended_reports_the_slot_and_reason_it_recorded():
    ended = EndedSlot("terraform-a", "s0", TaskStatus.LOST, "vanished")
    assert task(TaskStatus.LOST, pod="terraform-a", slot="s0", ended=ended).previous_slot == ended


def test_a_task_that_waited_after_its_loss_still_reports_the_slot_it_lost():
    ended = EndedSlot("terraform-a", "s0", TaskStatus.LOST, "leaked")
    assert task(TaskStatus.PENDING, ended=ended).previous_slot == ended


def test_an_item_from_before_the_record_reports_its_slot_and_what_its_status_tells():
    expired = task(TaskStatus.EXPIRED, pod="terraform-a", slot="s1")
    lost = task(TaskStatus.LOST, pod="terraform-a", slot="s2")
    assert expired.previous_slot == EndedSlot("terraform-a", "s1", TaskStatus.EXPIRED, RESERVATION_EXPIRED)
    assert lost.previous_slot == EndedSlot("terraform-a", "s2", TaskStatus.LOST, None)


def test_a_task_that_never_had_a_slot_taken_reports_none():
    assert task(TaskStatus.PENDING).previous_slot is None
    assert task(TaskStatus.RUNNING, pod="terraform-a", slot="s0").previous_slot is None
    assert task(TaskStatus.SUCCESS, pod="terraform-a", slot="s0").previous_slot is None
