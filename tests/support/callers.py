"""Callers as the steps see them: the task queue of the local stack's events, and others."""

from __future__ import annotations

from local.apigw import ACCOUNT, TASK_QUEUE_SESSION
from podslots.tenancy import Caller, principal_of

# What every request of local/apigw.py (and events/) is: a session of the task queue's role.
TASK_QUEUE = Caller(principal_of({"userArn": TASK_QUEUE_SESSION}))
TASK_QUEUE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/task-queue"
