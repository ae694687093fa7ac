"""A pool's settings: the whole document of `PUT /pools/{pool}`, its defaults and its rules.

One pydantic model is both the API body and the domain value, so the rules (min not above max,
down threshold below up) live in exactly one place and every error names its field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from podslots.names import (
    SLOTS_MAX,
    SLOTS_MIN,
    DnsLabel,
    DnsSubdomain,
    EnvName,
    LabelValue,
    QualifiedName,
    Quantity,
)

# Environment names podslots sets for the agent itself; a template may not override them.
RESERVED_ENV = frozenset({"PODSLOTS_POOL", "PODSLOTS_POD_NAME", "PODSLOTS_SLOTS", "PODSLOTS_HEARTBEAT_URL"})


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests: dict[QualifiedName, Quantity] = Field(default_factory=dict, max_length=16)
    limits: dict[QualifiedName, Quantity] = Field(default_factory=dict, max_length=16)


class Toleration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: QualifiedName | None = None
    operator: str | None = Field(default=None, pattern=r"^(Exists|Equal)$")
    value: LabelValue | None = None
    effect: str | None = Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    toleration_seconds: int | None = Field(default=None, ge=0)


class PodTemplate(BaseModel):
    """What every agent pod of the pool is made from (`podspec.pod_manifest` builds the manifest)."""

    model_config = ConfigDict(extra="forbid")
    image: str = Field(min_length=1, max_length=512, pattern=r"^\S+$")
    service_account: DnsSubdomain | None = None
    resources: Resources = Field(default_factory=Resources)
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=4096)]] = Field(default_factory=dict, max_length=64)
    node_selector: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    labels: dict[QualifiedName, LabelValue] = Field(default_factory=dict, max_length=32)
    annotations: dict[QualifiedName, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict, max_length=32
    )
    termination_grace_period_s: int = Field(default=30, ge=0, le=86400)

    @model_validator(mode="after")
    def _no_reserved_env(self) -> PodTemplate:
        clash = sorted(RESERVED_ENV & self.env.keys())
        if clash:
            raise ValueError(f"pod_template.env may not set {', '.join(clash)}: podslots sets them")
        return self


class PoolSettings(BaseModel):
    """The whole settings document; fields left out take these defaults."""

    model_config = ConfigDict(extra="forbid")
    namespace: DnsLabel = "agents"
    slots_per_pod: int = Field(default=3, ge=SLOTS_MIN, le=SLOTS_MAX)
    min_pods: int = Field(default=0, ge=0, le=1000)
    max_pods: int = Field(default=10, ge=0, le=1000)
    scale_up_utilization: float = Field(default=0.8, gt=0, le=1)
    scale_down_utilization: float = Field(default=0.2, ge=0, lt=1)
    scale_down_delay_s: int = Field(default=300, ge=0, le=86400)
    reservation_ttl_s: int = Field(default=86400, ge=60, le=7 * 86400)
    heartbeat_timeout_s: int = Field(default=120, ge=10, le=86400)
    startup_timeout_s: int = Field(default=600, ge=30, le=86400)
    leak_grace_s: int = Field(default=600, ge=30, le=86400)
    kubeconfig_secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Secrets Manager name or ARN of this pool's kubeconfig (default: the stack's).",
    )
    pod_template: PodTemplate

    @model_validator(mode="after")
    def _coherent(self) -> PoolSettings:
        if self.min_pods > self.max_pods:
            raise ValueError(f"min_pods ({self.min_pods}) is above max_pods ({self.max_pods})")
        if self.scale_down_utilization >= self.scale_up_utilization:
            raise ValueError(
                f"scale_down_utilization ({self.scale_down_utilization}) must be below "
                f"scale_up_utilization ({self.scale_up_utilization})"
            )
        return self

    @classmethod
    def from_stored(cls, document: dict[str, Any]) -> PoolSettings:
        return cls.model_validate(document)
