"""Random ids podslots makes, one rule each, so their shape is stated once.

- An event id: 12 hex digits (48 random bits). It only tells apart the history entries of one pool
  written in the same second (`EVENT#<at>#<id>`), and travels as the bus event's id.
- A token: 32 hex digits (a uuid4's 122 random bits), for what must be unique everywhere: a
  transaction's client request token, an autoscale run's lease holder.
"""

from __future__ import annotations

import uuid

EVENT_ID_DIGITS = 12


def new_token() -> str:
    return uuid.uuid4().hex


def new_event_id() -> str:
    return new_token()[:EVENT_ID_DIGITS]
