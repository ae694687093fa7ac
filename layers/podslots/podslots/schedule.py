"""The input of the scheduled functions: `{}` for every pool, or `{"pool": name}` for one."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from podslots.model import DNS_LABEL


class ScheduledRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pool: str | None = Field(default=None, pattern=DNS_LABEL.pattern, max_length=40)
