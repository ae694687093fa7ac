"""An allocation as bare requests, sent with boto3: the baseline the allocation benchmarks divide by.

The same two requests podslots sends for a new allocation: the Query of the sparse `open_slots`
index (the four fullest open pods), then one TransactWriteItems of the same shape (a conditional
Put of the task item that returns the old item if it fails, and a conditional Update of the pod's
slot, `busy` and `idle`, with a client request token). No placement rules, no retries, no
conversions: what is left of an allocation once podslots' own code is taken away.
"""

from __future__ import annotations

import uuid
from typing import Any

OPEN_PODS = 4


def open_pods(client: Any, table: str, pool: str) -> list[dict[str, Any]]:
    return list(
        client.query(
            TableName=table,
            IndexName="open_slots",
            KeyConditionExpression="#p = :p AND #i > :zero",
            ExpressionAttributeNames={"#p": "open_pool", "#i": "idle"},
            ExpressionAttributeValues={":p": {"S": pool}, ":zero": {"N": "0"}},
            Limit=OPEN_PODS,
        )["Items"]
    )


def first_idle(pod: dict[str, Any]) -> str | None:
    for key, slot in sorted(pod["slots"]["M"].items()):
        if slot["M"]["status"]["S"] == "idle":
            return key
    return None


def transaction(
    table: str, pool: str, pod: dict[str, Any], slot: str, task_id: str, now: int, token: str
) -> list[dict[str, Any]]:
    """The allocation's TransactItems: the task item put if absent, the slot taken if idle."""
    task = {
        "pk": {"S": f"TASK#{task_id}"},
        "sk": {"S": "#TASK"},
        "task_id": {"S": task_id},
        "pool": {"S": pool},
        "task_type": {"S": "plan"},
        "status": {"S": "running"},
        "pod": {"S": pod["name"]["S"]},
        "slot": {"S": slot},
        "allocated_at": {"N": str(now)},
        "updated_at": {"N": str(now)},
        "request_token": {"S": token},
    }
    if "pod_ip" in pod:
        task["pod_ip"] = pod["pod_ip"]
    doc = {"status": {"S": "running"}, "task_id": {"S": task_id}, "task_type": {"S": "plan"}, "since": {"N": str(now)}}
    return [
        {
            "Put": {
                "TableName": table,
                "Item": task,
                "ConditionExpression": "attribute_not_exists(pk)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {
            "Update": {
                "TableName": table,
                "Key": {"pk": pod["pk"], "sk": pod["sk"]},
                "UpdateExpression": "SET slots.#s = :doc, busy = busy + :one, idle = idle - :one, last_used_at = :now",
                "ConditionExpression": "#state = :ready AND attribute_not_exists(cordoned) AND slots.#s.#status = :idle",
                "ExpressionAttributeNames": {"#s": slot, "#state": "state", "#status": "status"},
                "ExpressionAttributeValues": {
                    ":doc": {"M": doc},
                    ":one": {"N": "1"},
                    ":now": {"N": str(now)},
                    ":ready": {"S": "ready"},
                    ":idle": {"S": "idle"},
                },
            }
        },
    ]


def allocate(client: Any, table: str, pool: str, task_id: str, now: int) -> tuple[str, str]:
    """Query, then take the first idle slot of the fullest pod: (pod, slot). Raises on a lost race."""
    pods = open_pods(client, table, pool)
    pod = pods[0]
    slot = first_idle(pod)
    assert slot is not None, "the index proposed a pod without an idle slot"
    token = uuid.uuid4().hex
    client.transact_write_items(
        TransactItems=transaction(table, pool, pod, slot, task_id, now, token), ClientRequestToken=token
    )
    return pod["name"]["S"], slot
