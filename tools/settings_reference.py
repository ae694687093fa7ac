"""Write docs/settings.md, the pool settings reference, from the settings model itself.

    make docs                                  # writes docs/settings.md
    .venv/bin/python -m tools.settings_reference --check   # exit 1 when the file is stale

Every row comes from the JSON schema pydantic makes of `PoolSettings` (the same one the OpenAPI
document and the client's schema hold: type, bounds, description) and from the model's defaults;
the task types and statuses from their enums in `podslots.model`. Nothing here restates a rule:
a field added to the model shows up at the next `make docs`, and tests/unit/test_settings_reference.py
fails until it does (or when a field has no description).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "settings.md"

# What each task type and status means to the task queue. The values come from the enums; a value
# without a text here stops the generator (a new status must be explained before it is documented).
TASK_TYPE_MEANING = {
    "plan": "A plan alone: the slot is freed when the task ends.",
    "apply": "An apply alone (its plan ran elsewhere, or no plan is kept): freed when it ends.",
    "plan_and_apply": (
        "A plan whose apply must run on the same pod: `apply_pending` keeps the slot reserved while the "
        "plan waits for approval, and the approval (an allocation with `expect: resume`) resumes it there."
    ),
}
TASK_STATUS_MEANING = {
    "pending": "Asked for a slot, got a 503, still waiting: the demand autoscale sizes the pool for.",
    "running": "Holds a slot and runs in it.",
    "apply_pending": "A `plan_and_apply` whose plan is done: its slot is reserved for the apply.",
    "success": "Ended well (a plan, or an apply reported as such).",
    "applied": "Ended: the apply ran.",
    "failed": "Ended: the task failed.",
    "cancelled": "Ended: the queue cancelled it.",
    "lost": "podslots took its slot: its pod vanished, or the agent stopped listing it. Dispatch it again.",
    "expired": "Its reservation passed `reservation_ttl_s` before the approval came. Plan again.",
}


@dataclass(frozen=True)
class Row:
    path: str
    type: str
    default: str
    bounds: str
    meaning: str


def _schema() -> dict[str, Any]:
    from podslots.settings import PoolSettings

    return PoolSettings.model_json_schema()


def _ref_name(prop: dict[str, Any]) -> str | None:
    """The model a property holds (`$ref`, alone or beside null), if it holds one."""
    for option in [prop, *prop.get("anyOf", []), *prop.get("allOf", [])]:
        ref = option.get("$ref")
        if ref:
            return str(ref).rsplit("/", 1)[-1]
    return None


def _type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    """A property's type in words: `integer`, `map of string to string`, an enum's values, ..."""
    if "anyOf" in prop:
        options = [o for o in prop["anyOf"] if o.get("type") != "null"]
        text = " or ".join(_type(o, defs) for o in options)
        return f"{text} or null" if len(options) < len(prop["anyOf"]) else text
    ref = _ref_name(prop)
    target = defs.get(ref, {}) if ref else prop
    if "enum" in target:
        return " | ".join(f"`{value}`" for value in target["enum"])
    return "object" if ref else _plain_type(prop, defs)


def _plain_type(prop: dict[str, Any], defs: dict[str, Any]) -> str:
    kind = str(prop.get("type", "any"))
    if kind == "array":
        items = prop.get("items", {})
        return "list of objects" if _ref_name(items) else f"list of {_type(items, defs)}"
    values = [*prop.get("patternProperties", {}).values()] or [prop.get("additionalProperties")]
    if kind == "object" and isinstance(values[0], dict):
        return f"map of string to {_type(values[0], defs)}"
    return kind


_BOUNDS = (
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("minLength", "at least {} character(s)"),
    ("maxLength", "at most {} characters"),
    ("minItems", "at least {} items"),
    ("maxItems", "at most {} items"),
    ("minProperties", "at least {} entries"),
    ("maxProperties", "at most {} entries"),
)


def _bounds(prop: dict[str, Any]) -> str:
    parts: list[str] = []
    for option in [prop, *prop.get("anyOf", [])]:
        parts += [text.format(option[key]) for key, text in _BOUNDS if key in option]
        pattern = option.get("pattern")
        if pattern and len(pattern) <= 32:
            parts.append(f"pattern `{pattern}`")
    return ", ".join(parts)


def _default(model: Any, name: str, required: bool) -> str:
    if required:
        return "required"
    from pydantic_core import to_jsonable_python

    value = model.model_fields[name].get_default(call_default_factory=True)
    text = json.dumps(to_jsonable_python(value), sort_keys=True)
    return "none" if text == "null" else f"`{text}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(model: Any, schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> tuple[list[Row], list[Any]]:
    """One model's rows, and the nested models (path, class, schema) whose own tables follow."""
    rows: list[Row] = []
    nested: list[Any] = []
    required = set(schema.get("required", []))
    for name, prop in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        items = prop.get("items", {}) if prop.get("type") == "array" else {}
        ref = _ref_name(prop) or _ref_name(items)
        if ref and "properties" in defs.get(ref, {}):
            field = model.model_fields[name]
            inner = _model_of(field.annotation, ref)
            nested.append((f"{path}[]" if items else path, inner, defs[ref]))
        rows.append(
            Row(
                path=path,
                type=_type(prop, defs),
                default=_default(model, name, name in required),
                bounds=_bounds(prop),
                meaning=prop.get("description", ""),
            )
        )
    return rows, nested


def _model_of(annotation: Any, name: str) -> Any:
    """The pydantic model named `name` inside a field's annotation (`list[Toleration]`, `X | None`)."""
    from typing import get_args

    if getattr(annotation, "__name__", None) == name:
        return annotation
    for arg in get_args(annotation):
        found = _model_of(arg, name)
        if found is not None:
            return found
    return None


def _markdown_table(rows: list[Row]) -> list[str]:
    lines = ["| setting | type | default | bounds | meaning |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        cells = [f"`{row.path}`", row.type, row.default, row.bounds, row.meaning]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _settings_sections() -> list[str]:
    from podslots.settings import PoolSettings

    schema = _schema()
    defs = schema.get("$defs", {})
    lines: list[str] = []
    queue: list[Any] = [("", PoolSettings, schema)]
    while queue:
        path, model, model_schema = queue.pop(0)
        rows, nested = _table(model, model_schema, defs, f"{path}." if path else "")
        title = f"`{path}`" if path else "The pool"
        lines += ["", f"## {title}", ""]
        intro = " ".join((model_schema.get("description") or "").split())
        if intro:
            lines += [intro, ""]
        lines += _markdown_table(rows)
        queue += nested
    return lines


def _task_sections() -> list[str]:
    from podslots.model import CALLER_END_STATUSES, TaskStatus, TaskType

    lines = ["", "## Task types", "", "| `task_type` | meaning |", "| --- | --- |"]
    lines += [f"| `{t.value}` | {TASK_TYPE_MEANING[t.value]} |" for t in TaskType]
    lines += [
        "",
        "## Task statuses",
        "",
        "What `GET /tasks/{task_id}` answers. *Holds a slot*: a slot is running or reserved for it. "
        "*Ends it*: no `PUT /tasks/{task_id}/status` moves it on (a 409). *Set by*: who moves a task into it "
        "(`PUT /tasks/{task_id}/status` for the caller). *Dispatch again*: a new allocation may reuse the "
        "task id, in any pool.",
        "",
        "| `status` | holds a slot | ends it | set by | dispatch again | meaning |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for status in TaskStatus:
        by = "caller" if status in CALLER_END_STATUSES or status is TaskStatus.APPLY_PENDING else "podslots"
        if status is TaskStatus.RUNNING:
            by = "podslots (an allocation); the caller, from `apply_pending`"
        if status is TaskStatus.PENDING:
            by = "podslots (an allocation answered 503)"
        cells = [
            f"`{status.value}`",
            "yes" if status.holds_slot else "no",
            "yes" if status.is_end else "no",
            by,
            "yes" if status.redispatchable else "no",
            TASK_STATUS_MEANING[status.value],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render() -> str:
    """docs/settings.md as the model says today."""
    lines = [
        "# Pool settings reference",
        "",
        "<!-- Generated by `make docs` (tools/settings_reference.py) from the settings model: do not edit by "
        "hand. A test fails when it is stale. -->",
        "",
        "The body of `PUT /pools/{pool}` (YAML or JSON with `podslots pools put` and `pools apply`). A field "
        "left out takes its default; an unknown field, a value outside its bounds or a broken rule between "
        "fields (`min_pods` above `max_pods`) is a 422 that names the field. The same descriptions are in the "
        "OpenAPI document (`make openapi`) and the client's schema. Changing `pod_template` or "
        '`slots_per_pod` rolls the pool\'s pods (docs/architecture.md, "Roll-out"); every other field '
        "takes effect at the next step.",
    ]
    lines += _settings_sections()
    lines += _task_sections()
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if TARGET.read_text(encoding="utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path[:0] = [str(ROOT / "layers/podslots"), str(ROOT)]
    raise SystemExit(main(sys.argv[1:]))
