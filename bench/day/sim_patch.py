"""One way for the simulation's shortcuts to swap a library's function for their own, and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def swapped(owner: Any, name: str, replacement: Any, original: list[Any]) -> Iterator[None]:
    """`owner.name` is `replacement` within the block, and `original[0]` what it was (the
    replacement falls back on it); a block within another such block changes nothing. An
    attribute `owner` inherited is inherited again after the block, not copied onto `owner`
    (a later change to its base's must still reach it)."""
    if getattr(owner, name) is replacement:
        yield
        return
    inherited = name not in vars(owner)
    original[:] = [getattr(owner, name)]
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        if inherited:
            delattr(owner, name)
        else:
            setattr(owner, name, original[0])
