"""A pool's settings: the whole document of `PUT /pools/{pool}`, its defaults and its rules.

One pydantic model is both the API body and the domain value, so the rules (min not above max,
down threshold below up) live in exactly one place and every error names its field.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
from podslots.tenancy import CALLER_PATTERNS_MAX, check_caller_pattern

# The deployment environment (template.yaml sets it from its Environment parameter). The cluster
# functions may read the secrets under podslots/<environment>/ only, so a pool may name no other.
ENVIRONMENT_VAR = "PODSLOTS_ENVIRONMENT"
DEFAULT_ENVIRONMENT = "dev"  # outside Lambda (the local stack, tests), where nothing sets it
_SECRET_LEAF = r"[A-Za-z0-9/_+=.@-]+"  # noqa: S105 (a name pattern, not a secret)
_SECRET_ARN_HEAD = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"  # noqa: S105


def environment() -> str:
    return os.environ.get(ENVIRONMENT_VAR) or DEFAULT_ENVIRONMENT


def secret_prefix(env: str | None = None) -> str:
    """`podslots/<environment>/`: the only secrets this deployment's cluster functions may read."""
    return f"podslots/{env or environment()}/"


def is_own_secret(name: str, env: str | None = None) -> bool:
    """A secret name under this environment's prefix, or the ARN of one."""
    prefix = re.escape(secret_prefix(env))
    return bool(re.fullmatch(f"(?:{_SECRET_ARN_HEAD})?{prefix}{_SECRET_LEAF}", name))


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


# The prefix of the labels and annotations podslots writes on pods (`podslots.io/pool`, the claim...).
PODSLOTS_LABEL_PREFIX = "podslots.io/"

# The ServiceAccount podslots itself runs as in the cluster (k8s/rbac.yaml): it may create and delete
# pods. An agent pod must never run as it.
CONTROLLER_SERVICE_ACCOUNT = "podslots"

Capability = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z_]{0,31}$")]


class SecurityContext(BaseModel):
    """The agent container's security context; every field left out keeps the restricted default.

    What it can never do: run privileged, or keep a capability it does not name (`capabilities: drop
    ALL` always; `capabilities_add` names the few it needs back).
    """

    model_config = ConfigDict(extra="forbid")
    run_as_non_root: bool = True
    run_as_user: int | None = Field(default=None, ge=0, le=2147483647)
    run_as_group: int | None = Field(default=None, ge=0, le=2147483647)
    fs_group: int | None = Field(default=None, ge=0, le=2147483647)  # pod level: volume ownership
    allow_privilege_escalation: bool = False
    read_only_root_filesystem: bool = False
    capabilities_add: list[Capability] = Field(default_factory=list, max_length=8)
    seccomp_profile: Literal["RuntimeDefault", "Unconfined"] = "RuntimeDefault"

    @model_validator(mode="after")
    def _non_root_means_it(self) -> SecurityContext:
        if self.run_as_non_root and self.run_as_user == 0:
            raise ValueError("security_context.run_as_user 0 is root; set run_as_non_root false to allow it")
        if "SYS_ADMIN" in self.capabilities_add or "ALL" in self.capabilities_add:
            raise ValueError("security_context.capabilities_add may not add ALL or SYS_ADMIN")
        return self


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
    # The agent talks to podslots over the API with its own IAM identity, not to Kubernetes: no token
    # unless the pool asks for one.
    automount_service_account_token: bool = False
    security_context: SecurityContext = Field(default_factory=SecurityContext)

    @model_validator(mode="after")
    def _no_reserved_env(self) -> PodTemplate:
        clash = sorted(RESERVED_ENV & self.env.keys())
        if clash:
            raise ValueError(f"pod_template.env may not set {', '.join(clash)}: podslots sets them")
        return self

    @field_validator("service_account")
    @classmethod
    def _not_the_controllers(cls, value: str | None) -> str | None:
        if value == CONTROLLER_SERVICE_ACCOUNT:
            raise ValueError(
                f"service_account may not be {CONTROLLER_SERVICE_ACCOUNT!r}: that is podslots' own account, "
                "which may create and delete pods; give the agents an account of their own"
            )
        return value


class PoolMode(StrEnum):
    """How far podslots may act on a pool's cluster (docs/architecture.md, "Staged enablement").

    - `active`: everything (the default);
    - `observe`: records pods and slots, and what it would do (scale steps, deletions), as history
      and metrics, but creates, deletes and patches nothing in the cluster;
    - `paused`: no scale step and no deletion (for an incident); allocation goes on.
    """

    ACTIVE = "active"
    OBSERVE = "observe"
    PAUSED = "paused"

    @property
    def acts(self) -> bool:
        return self is PoolMode.ACTIVE


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
        description=(
            "Secrets Manager name or ARN of this pool's kubeconfig (default: the stack's); "
            "under podslots/<environment>/, the only secrets the cluster functions may read."
        ),
    )
    pod_template: PodTemplate
    max_surge: int = Field(
        default=1,
        ge=1,
        le=100,
        description="During a roll-out, how many pods the pool may have above its target size (new pods first).",
    )
    mode: PoolMode = PoolMode.ACTIVE
    adopt_selector: dict[QualifiedName, LabelValue] | None = Field(
        default=None,
        min_length=1,
        max_length=16,
        description=(
            "Labels (all must match) of pods podslots did not create, e.g. an existing Deployment's, "
            "that this pool adopts and counts as its own (no podslots.io/ key: those mark another pool's "
            "pods); see docs/architecture.md, 'Adoption' and 'Migration'."
        ),
    )

    allowed_callers: list[Annotated[str, AfterValidator(check_caller_pattern)]] = Field(
        default_factory=list,
        max_length=CALLER_PATTERNS_MAX,
        description=(
            "IAM principals (ARN patterns, ArnLike's `*` and `?`: arn:aws:iam::<account>:role/<name>) that may "
            "allocate in this pool; a session counts as its role. Empty (the default): any holder of the "
            "task queue's policy. See docs/security.md, 'Tasks belong to the queue that allocated them'."
        ),
    )

    @field_validator("adopt_selector")
    @classmethod
    def _not_podslots_labels(cls, value: dict[str, str] | None, info: ValidationInfo) -> dict[str, str] | None:
        # podslots' own labels say which pool a pod already belongs to: selecting by them is
        # adopting another pool's pods. A stored document from before this rule stays readable; its
        # reconcile still refuses every pod another pool claims (docs/architecture.md, "Adoption").
        stored = bool(info.context and info.context.get("stored"))
        reserved = sorted(key for key in value or {} if key.startswith(PODSLOTS_LABEL_PREFIX))
        if reserved and not stored:
            raise ValueError(
                f"adopt_selector may not select by podslots' own labels ({', '.join(reserved)}): "
                "they mark the pods another pool already owns"
            )
        return value

    @field_validator("kubeconfig_secret")
    @classmethod
    def _own_environments_secret(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A stored document was checked when it was put; an old one under another prefix is left to
        # IAM (its reads are refused, for that pool alone) rather than making the pool unreadable.
        stored = bool(info.context and info.context.get("stored"))
        if value is not None and not stored and not is_own_secret(value):
            raise ValueError(
                f"kubeconfig_secret must be a secret name (or its ARN) under {secret_prefix()}: "
                "the only secrets this deployment may read"
            )
        return value

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
        return cls.model_validate(document, context={"stored": True})


def template_revision(settings: PoolSettings) -> str:
    """What a pod is made from, as 10 hex digits: the template and the slot count, nothing else.

    Two pods of the same revision have the same manifest but for their names. Changing the
    scaling fields (`min_pods`, `max_pods`, thresholds, `max_surge`, `mode`) keeps the revision, so
    it rolls nothing; changing the image, the env or the slot count rolls every pod.
    """
    shape = {"pod_template": settings.pod_template.model_dump(mode="json"), "slots_per_pod": settings.slots_per_pod}
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return digest[:10]
