"""A pool's settings: the whole document of `PUT /pools/{pool}`, its defaults and its rules.

One pydantic model is both the API body and the domain value, so the rules (min not above max,
down threshold below up) live in exactly one place and every error names its field.
"""

from __future__ import annotations

import hashlib
import json
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

from podslots.environment import agent_namespaces, environment
from podslots.names import (
    CONTROLLER_SERVICE_ACCOUNT,
    PODSLOTS_LABEL_PREFIX,
    SLOTS_MAX,
    SLOTS_MIN,
    DnsLabel,
    DnsSubdomain,
    EnvName,
    LabelValue,
    QualifiedName,
    Quantity,
    revision_from_digest,
)
from podslots.pod_security import (
    APPARMOR_ANNOTATION_PREFIX,
    SECCOMP_CONTAINER_ANNOTATION_PREFIX,
    SECCOMP_POD_ANNOTATION,
    Level,
)
from podslots.pod_template_spec import SIDECAR_FIELD, SPEC_FIELD, SpecRules, is_own_env
from podslots.pool_mode import PoolMode
from podslots.settings_help import described
from podslots.tenancy import CALLER_PATTERNS_MAX, check_caller_pattern

_SECRET_LEAF = r"[A-Za-z0-9/_+=.@-]+"  # noqa: S105 (a name pattern, not a secret)
_SECRET_ARN_HEAD = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:"  # noqa: S105


def secret_prefix(env: str | None = None) -> str:
    """`podslots/<environment>/`: the only secrets this deployment's cluster functions may read."""
    return f"podslots/{env or environment()}/"


def is_own_secret(name: str, env: str | None = None) -> bool:
    """A secret name under this environment's prefix, or the ARN of one."""
    prefix = re.escape(secret_prefix(env))
    return bool(re.fullmatch(f"(?:{_SECRET_ARN_HEAD})?{prefix}{_SECRET_LEAF}", name))


def namespace_allowed(namespace: str) -> bool:
    return namespace in agent_namespaces()


DEFAULT_RESERVATION_TTL_S = 24 * 3600  # the default, and the task step's when a pool's settings are unreadable


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=described)
    requests: dict[QualifiedName, Quantity] = Field(default_factory=dict, max_length=16)
    limits: dict[QualifiedName, Quantity] = Field(default_factory=dict, max_length=16)


class Toleration(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=described)
    key: QualifiedName | None = None
    operator: str | None = Field(default=None, pattern=r"^(Exists|Equal)$")
    value: LabelValue | None = None
    effect: str | None = Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    toleration_seconds: int | None = Field(default=None, ge=0)


# The ServiceAccount podslots itself runs as in the cluster (k8s/rbac.yaml): it may create and delete
# pods. An agent pod must never run as it. It lives, with its token Secret, in a namespace of its own
# that no pool may use, and a RoleBinding lets it act in the agents' namespace: a pod can only run as
# (or mount a Secret of) its own namespace, so no agent pod can reach it. The name is refused anyway,
# for clusters set up before the account moved (it was `podslots` in `agents`).
CONTROLLER_NAMESPACE = "podslots-system"

Capability = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z_]{0,31}$")]
# What sets the AppArmor or seccomp profile by annotation: podslots' own, never the pool's (the
# security context says which profile; an annotation could say `unconfined` past it).
PROFILE_ANNOTATIONS = (APPARMOR_ANNOTATION_PREFIX, SECCOMP_CONTAINER_ANNOTATION_PREFIX, SECCOMP_POD_ANNOTATION)


def _stored(info: ValidationInfo) -> bool:
    """Read back from the table (`PoolSettings.from_stored`): checked when it was put. A rule added
    since leaves an older document readable; the steps report what it breaks instead."""
    return bool(info.context and info.context.get("stored"))


class SecurityContext(BaseModel):
    """The agent container's security context; every field left out keeps the restricted default,
    whatever the pool's `pod_security` level.

    What it can never do: run privileged, or keep a capability it does not name (`capabilities: drop
    ALL` always; `capabilities_add` names the few it needs back). What it may loosen is the pool's
    level's to say (`pod_security.check` over the manifest, at the PUT): the shape here is only what
    a Kubernetes security context can hold.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=described)
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
        return self

    @field_validator("capabilities_add")
    @classmethod
    def _kubernetes_names(cls, value: list[str], info: ValidationInfo) -> list[str]:
        # Kubernetes names capabilities without the kernel's CAP_ prefix, and the standard compares
        # names exactly: CAP_SYS_ADMIN would pass a list that refuses SYS_ADMIN, and runtimes differ
        # in what they make of it. Refused, not normalised: the document says what the pod gets.
        prefixed = [name for name in value if name.startswith("CAP_")]
        if prefixed and not _stored(info):
            raise ValueError(
                f"capabilities_add names capabilities without the CAP_ prefix, as Kubernetes does: "
                f"{', '.join(name.removeprefix('CAP_') for name in prefixed)}"
            )
        return value


class PodTemplate(SpecRules):
    """What every agent pod of the pool is made from (`podspec.pod_manifest` builds the manifest)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=described)
    image: str | None = Field(default=None, min_length=1, max_length=512, pattern=r"^\S+$")  # or the spec's
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
    spec: dict[str, Any] | None = SPEC_FIELD  # pod_template_spec.py: the rules podslots keeps
    sidecar: str | None = SIDECAR_FIELD

    @field_validator("annotations")
    @classmethod
    def _no_profile_annotations(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        taken = sorted(key for key in value if key.startswith(PROFILE_ANNOTATIONS))
        if taken and not _stored(info):
            raise ValueError(
                f"pod_template.annotations may not set {', '.join(taken)}: the AppArmor and seccomp profiles "
                "are podslots' own (security_context.seccomp_profile sets seccomp)"
            )
        return value

    @model_validator(mode="after")
    def _no_reserved_env(self, info: ValidationInfo) -> PodTemplate:
        """The PODSLOTS_* prefix, as for a spec's env (pod_template_spec.is_own_env): one rule."""
        clash = sorted(key for key in self.env if is_own_env(key, sidecar=self.sidecar is not None))
        if clash and not _stored(info):
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


class ScalingRule(StrEnum):
    """Which rule sizes the pool (docs/architecture.md, "Scaling").

    - `packed` (the default): as many pods as the used and waiting slots fill, plus `headroom_pods`
      and enough for `warm_slots` idle slots;
    - `utilization`: the rule before it, on `scale_up_utilization` and `scale_down_utilization`.
    """

    PACKED = "packed"
    UTILIZATION = "utilization"


class PoolSettings(BaseModel):
    """The whole settings document; fields left out take these defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=described)
    namespace: DnsLabel = Field(
        default="agents",
        description="The namespace of the pool's pods: one of the deployment's AgentNamespaces.",
    )
    pod_security: Level = Field(
        default=Level.RESTRICTED,
        description=(
            "The Kubernetes Pod Security Standards level every agent pod meets: `restricted` (the default) "
            "or `baseline`; a PUT whose pod would break it is a 422 naming each field (docs/security.md)."
        ),
    )
    slots_per_pod: int = Field(default=3, ge=SLOTS_MIN, le=SLOTS_MAX)
    min_pods: int = Field(default=0, ge=0, le=1000)
    max_pods: int = Field(default=10, ge=0, le=1000)
    scaling: ScalingRule = Field(
        default=ScalingRule.PACKED,
        description=(
            "The scaling rule: `packed` (the default): ceil((running + reserved + waiting) / slots_per_pod) "
            "+ headroom_pods pods, at least enough for warm_slots idle slots; `utilization`: the rule of "
            "earlier releases, on scale_up_utilization and scale_down_utilization. A pool stored without "
            "this field reads as `packed`; put `utilization` to keep the old rule."
        ),
    )
    headroom_pods: int = Field(
        default=1,
        ge=0,
        le=100,
        description="`packed` only: pods kept beyond what the used and waiting slots fill, so a new task seldom waits.",
    )
    warm_slots: int = Field(
        default=0,
        ge=0,
        le=10000,
        description=(
            "`packed` only: the pool keeps at least this many idle slots on pods in service, so a burst is "
            "served at once; never by deleting a busy pod."
        ),
    )
    prewarm: bool = Field(
        default=False,
        description=(
            "`packed` only: learn the pool's arrivals by hour of the week (from its own allocations, folded "
            "once an hour) and, when the next 15 minutes are expected to bring more tasks than its idle "
            "slots can take while a new pod starts, start pods ahead of the ramp."
        ),
    )
    scale_up_utilization: float = Field(
        default=0.8, gt=0, le=1, description="`utilization` only: step up above this share of used slots."
    )
    scale_down_utilization: float = Field(
        default=0.2, ge=0, lt=1, description="`utilization` only: step down below this share, after the delay."
    )
    scale_down_delay_s: int = Field(default=300, ge=0, le=86400)
    reservation_ttl_s: int = Field(default=DEFAULT_RESERVATION_TTL_S, ge=60, le=7 * 86400)
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

    @field_validator("namespace")
    @classmethod
    def _not_the_controllers_namespace(cls, value: str) -> str:
        # Its pods could run as podslots' own account and mount its token; stored or not, no agent
        # pod is ever made there (as for the account itself).
        if value == CONTROLLER_NAMESPACE:
            raise ValueError(
                f"namespace may not be {CONTROLLER_NAMESPACE!r}: that is podslots' own namespace, where its "
                "ServiceAccount and token live; give the agents a namespace of their own"
            )
        return value

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

    @field_validator("namespace")
    @classmethod
    def _allowed_namespace(cls, value: str, info: ValidationInfo) -> str:
        # A stored pool whose namespace was allowed when it was put stays readable; reconcile and
        # autoscale leave it alone, and report it, while its namespace is not allowed.
        if not _stored(info) and not namespace_allowed(value):
            raise ValueError(
                f"namespace must be one of this deployment's agent namespaces "
                f"({', '.join(sorted(agent_namespaces())) or 'none'}: the AgentNamespaces parameter)"
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
    """What a pod is made from, as a few hex digits (`names.REVISION`): the template and the slot count, nothing else.

    Two pods of the same revision have the same manifest but for their names. Changing the
    scaling fields (`min_pods`, `max_pods`, thresholds, `max_surge`, `mode`) keeps the revision, so
    it rolls nothing; changing the image, the env or the slot count rolls every pod.
    """
    unset = {field for field in ("spec", "sidecar") if getattr(settings.pod_template, field) is None}  # as before them
    template = settings.pod_template.model_dump(mode="json", exclude=unset)
    shape = {"pod_template": template, "slots_per_pod": settings.slots_per_pod}
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return revision_from_digest(digest)
