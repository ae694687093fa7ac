"""The demo story (`make demo`) plays on the embedded stack, and every promise holds."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_every_promise_of_the_demo_story_holds():
    from local.demo import play

    promises = play(quiet=True)
    assert len(promises) == 9  # the roll-out chapter and the PodSpec chapter included
    broken = [f"{p.text}: {p.detail}" for p in promises if not p.held]
    assert broken == []
