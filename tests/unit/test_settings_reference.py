"""docs/settings.md is the settings model, written out: every field described, the file current,
and the same descriptions in the OpenAPI document the API ships and the client's schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from podslots.settings import PoolSettings
from podslots.settings_help import FIELD_HELP
from tools import settings_reference
from tools.openapi import document


def properties(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(model.field, its schema) for every field of the settings and the models inside them."""
    models = {"PoolSettings": schema, **schema.get("$defs", {})}
    for model, body in models.items():
        for name, prop in body.get("properties", {}).items():
            yield f"{model}.{name}", prop


def test_every_settings_field_has_a_description() -> None:
    # Given the settings' JSON schema (what the OpenAPI document and the client's schema hold)
    schema = PoolSettings.model_json_schema()

    # When each field of each model is read
    undescribed = [name for name, prop in properties(schema) if not prop.get("description")]

    # Then none is without a description
    assert undescribed == []


def test_the_help_texts_name_only_fields_that_exist() -> None:
    # Given the fields of every settings model
    fields = {name for name, _ in properties(PoolSettings.model_json_schema())}

    # When the help table is compared with them
    stale = [f"{model}.{name}" for model, texts in FIELD_HELP.items() for name in texts]

    # Then every text belongs to a field that is there (a renamed field's text is not left behind)
    assert sorted(set(stale) - fields) == []


def test_docs_settings_md_is_what_make_docs_writes() -> None:
    # Given the reference as the model says today, When compared with the committed file
    committed = settings_reference.TARGET.read_text(encoding="utf-8")

    # Then they are the same: run `make docs` after changing the settings
    assert committed == settings_reference.render(), "docs/settings.md is stale: run `make docs`"


def test_the_reference_lists_every_field_every_task_type_and_status() -> None:
    from podslots.model import TaskStatus, TaskType

    # Given the rendered reference
    text = settings_reference.render()

    # Then each top-level field, each task type and each status has its row
    for name in PoolSettings.model_fields:
        assert f"| `{name}` |" in text, name
    for value in [*TaskType, *TaskStatus]:
        assert f"| `{value.value}` |" in text, value


def test_the_openapi_document_carries_the_settings_descriptions() -> None:
    # Given the OpenAPI document the API ships (make openapi)
    openapi = json.loads(document())
    schemas = openapi["components"]["schemas"]

    # When the settings' models in it are read
    described = {
        f"{model}.{name}": prop.get("description")
        for model in ("PoolSettings", "PodTemplate", "SecurityContext")
        for name, prop in schemas[model]["properties"].items()
    }

    # Then each field has the description the model gives it
    expected = dict(properties(PoolSettings.model_json_schema()))
    for name, text in described.items():
        assert text, name
        assert text == expected[name]["description"], name
