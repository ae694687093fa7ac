"""Reading a pod manifest that may be malformed, for the Pod Security Standards' checks (pod_security.py).

Every reader is total: a field of the wrong type reads as unset (an empty mapping or list), never as
an exception, so a check can walk any manifest. Kept apart from the controls so each module reads in
one sitting; `Violation` is what every control yields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Violation:
    control: str  # the reference implementation's check id, e.g. `capabilities_restricted`
    field: str  # the path in the manifest, e.g. `spec.containers[0].securityContext.capabilities.add[1]`
    problem: str  # what the level allows there (fixed text)

    def as_dict(self) -> dict[str, str]:
        return {"control": self.control, "field": self.field, "problem": self.problem}


Check = Callable[[Mapping[str, Any]], Iterator[Violation]]

# ---- reading a manifest that may be malformed ----------------------------------------------


def as_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_seq(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def one_of(value: Any, allowed: frozenset[str]) -> bool:
    """True when `value` is one of the allowed strings (an unhashable value is simply not one)."""
    return isinstance(value, str) and value in allowed


def pod_spec(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(manifest.get("spec"))


def pod_context(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    return as_map(pod_spec(manifest).get("securityContext"))


def containers(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every container with its path: init containers, containers, ephemeral containers (the
    reference's `visitContainers`)."""
    spec = pod_spec(manifest)
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(as_seq(spec.get(kind))):
            yield f"spec.{kind}[{i}]", as_map(container)


def container_contexts(manifest: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any] | None]]:
    """Each container's securityContext path and value (None when the container sets none)."""
    for path, container in containers(manifest):
        context = container.get("securityContext")
        yield f"{path}.securityContext", context if isinstance(context, Mapping) else None


def annotation_items(manifest: Mapping[str, Any]) -> list[tuple[str, Any]]:
    annotations = as_map(as_map(manifest.get("metadata")).get("annotations"))
    return sorted((key, value) for key, value in annotations.items() if isinstance(key, str))


def annotation_path(key: str) -> str:
    return f"metadata.annotations[{key!r}]"


def unset_or(value: Any, allowed: tuple[Any, ...]) -> bool:
    """Undefined, or exactly one of the allowed values (`False` is not `0`, nor `0` `False`)."""
    return value is None or any(value is a or (type(value) is type(a) and value == a) for a in allowed)
