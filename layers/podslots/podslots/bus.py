"""The EventBridge gateway: the only module that puts events on the bus.

Events are how podslots tells others what happened (a shortage, a lost task, an expired
reservation, a scaling step). Source is always `podslots`; the detail-type is the event's name.
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

SOURCE = "podslots"


class EventPublisher(Protocol):
    def publish(self, detail_type: str, detail: dict[str, Any]) -> None: ...


class EventBridgePublisher:
    """Puts one event per call; a failed entry raises, so the caller can decide to retry."""

    def __init__(self, bus_name: str | None = None, client: Any = None) -> None:
        self.bus_name = bus_name or os.environ.get("EVENT_BUS_NAME", "default")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # noqa: PLC0415 (first use only: most API calls never publish)

            self._client = boto3.client("events", endpoint_url=os.environ.get("EVENTS_ENDPOINT") or None)
        return self._client

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        answer = self.client.put_events(
            Entries=[
                {
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, sort_keys=True),
                    "EventBusName": self.bus_name,
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            failed = answer["Entries"][0]
            raise RuntimeError(
                f"EventBridge refused {detail_type}: {failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
            )


class RecordingPublisher:
    """An in-memory publisher for unit tests and simulations: it keeps what was published."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        self.events.append((detail_type, dict(detail)))

    def of(self, detail_type: str) -> list[dict[str, Any]]:
        return [d for t, d in self.events if t == detail_type]
