"""The syntax of every name podslots accepts, in one place: pools, tasks, pods, and the Kubernetes
names and values a pool's settings put into a pod manifest.

Each rule is what the Kubernetes API itself accepts (or stricter), so that whatever podslots stores
can also be made into a pod the API server takes, and every map key is non-empty (DynamoDB refuses
empty attribute names).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

POOL_NAME_MAX = 40  # `<pool>-<suffix>` must still fit a pod name (and a label value, 63)
# A DNS label of at most 40 characters.
POOL_NAME = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"
# What the task queue calls its runs; printable, no spaces, no slashes (it appears in a path).
TASK_ID = r"^[A-Za-z0-9._:-]{1,128}$"
TASK_ID_MAX = 128
# A DNS label (RFC 1123): namespaces.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
# A DNS subdomain (RFC 1123): pod names, service accounts; ours are `<pool>-<suffix>`.
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_SUBDOMAIN_MAX = 253
# A qualified name: label and annotation keys, resource names (`cpu`, `nvidia.com/gpu`).
QUALIFIED_NAME = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
QUALIFIED_NAME_MAX = 253 + 1 + 63
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
LABEL_VALUE_MAX = 63
# A resource quantity in the forms people write (`500m`, `2`, `1.5`, `512Mi`, `4G`).
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
# An environment variable name a shell can also read.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SLOTS_MIN, SLOTS_MAX = 1, 32  # per pod: in the settings, and in an adopted pod's annotation
# A pod template's revision (its `podslots.io/revision` label): the first hex digits of its digest.
# Made and read by this one rule: a pod whose label does not match reads as "made before revisions".
REVISION_DIGITS = 10
REVISION = rf"^[0-9a-f]{{{REVISION_DIGITS}}}$"

# The labels and annotations podslots writes on the pods it makes (cluster.py selects by them).
PODSLOTS_LABEL_PREFIX = "podslots.io/"  # podslots' own keys (`podslots.io/pool`, the claim...)
POOL_LABEL = "podslots.io/pool"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "podslots"
SLOTS_ANNOTATION = "podslots.io/slots"
REVISION_LABEL = "podslots.io/revision"  # the pool template's revision the pod was made from
# The ServiceAccount podslots itself runs as (k8s/rbac.yaml); no agent pod may (settings.py says why).
CONTROLLER_SERVICE_ACCOUNT = "podslots"
# The pool that adopted a pod podslots did not make (reconcile's claim; docs/architecture.md, "Adoption").
CLAIM_ANNOTATION = "podslots.io/claimed-by"

PoolNameStr = Annotated[str, StringConstraints(pattern=POOL_NAME, max_length=POOL_NAME_MAX)]
TaskIdStr = Annotated[str, StringConstraints(pattern=TASK_ID, max_length=TASK_ID_MAX)]
DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL, max_length=63)]
DnsSubdomain = Annotated[str, StringConstraints(pattern=DNS_SUBDOMAIN, max_length=DNS_SUBDOMAIN_MAX)]
QualifiedName = Annotated[str, StringConstraints(pattern=QUALIFIED_NAME, max_length=QUALIFIED_NAME_MAX)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=LABEL_VALUE_MAX)]
Quantity = Annotated[str, StringConstraints(pattern=QUANTITY, max_length=32)]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME, max_length=128)]

_POOL_NAME = re.compile(POOL_NAME)
_REVISION = re.compile(REVISION)


def is_pool_name(name: str) -> bool:
    return bool(_POOL_NAME.fullmatch(name))


def revision_from_digest(hex_digest: str) -> str:
    return hex_digest[:REVISION_DIGITS]


def is_revision(label: str) -> bool:
    return bool(_REVISION.fullmatch(label))
