"""Pools as files: what `podslots pools apply -f` and `pools put -f` read, in YAML or JSON.

A pool file declares one pool as a `name` and the `settings` document of `PUT /pools/{pool}`:

    name: terraform
    settings:
      max_pods: 6
      pod_template:
        image: tf-agent:1.9

A file declares several with YAML documents (`---` between them) or a list of such declarations
(YAML or JSON). A directory means every `*.yaml`, `*.yml` and `*.json` directly in it, by name:
not its subdirectories, so a directory of pools can keep other things below it. `-` reads stdin.

A file that cannot be read as pools raises `PoolFileError`, naming the file, the document and
the field, before anything is sent: a half-read set of files never reaches the API.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUFFIXES = (".yaml", ".yml", ".json")
DECLARATION_FIELDS = ("name", "settings")


class PoolFileError(ValueError):
    """A pool file that cannot be read or does not declare pools; the message names where."""


@dataclass(frozen=True)
class DeclaredPool:
    name: str
    settings: dict[str, Any]
    source: str  # where it was declared: `pools/tf.yaml`, `pools/all.yaml, document 2`


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a mapping with a key twice (PyYAML keeps the last one, silently) and reads
    dates and times as the strings they were written as: a settings document holds JSON values."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _as_written(loader: _UniqueKeyLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _as_written)


def read_documents(path: str) -> list[Any]:
    """Every document of a file (`-`: stdin): JSON for a `.json` name, YAML otherwise (YAML reads
    JSON too). Empty YAML documents are left out."""
    text = _text(path)
    if path.endswith(".json"):
        try:
            return [json.loads(text)]
        except ValueError as exc:
            raise PoolFileError(f"{path}: not JSON: {exc}") from exc
    try:
        documents = list(yaml.load_all(text, Loader=_UniqueKeyLoader))
    except yaml.MarkedYAMLError as exc:
        raise PoolFileError(f"{path}: not YAML: {_yaml_problem(exc)}") from exc
    except yaml.YAMLError as exc:
        raise PoolFileError(f"{path}: not YAML: {exc}") from exc
    return [d for d in documents if d is not None]


def read_settings(path: str) -> dict[str, Any]:
    """One settings document (`pools put -f`): a file of one mapping."""
    documents = read_documents(path)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise PoolFileError(f"{path}: the settings document must be one mapping (a JSON object)")
    _json_values(documents[0], path)
    return documents[0]


def declared_pools(paths: Sequence[str]) -> list[DeclaredPool]:
    """The pools `paths` (files, directories, `-`) declare, in order; each name once."""
    pools: list[DeclaredPool] = []
    where: dict[str, str] = {}
    for file in _files(paths):
        for pool in _declarations(file):
            if pool.name in where:
                raise PoolFileError(f"{pool.source}: pool {pool.name} is declared twice (also in {where[pool.name]})")
            where[pool.name] = pool.source
            pools.append(pool)
    if not pools:
        raise PoolFileError(f"{', '.join(paths)}: no pool declared")
    return pools


def _files(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found = sorted(p for p in Path(path).iterdir() if p.is_file() and p.suffix in SUFFIXES)
            if not found:
                raise PoolFileError(f"{path}: no {', '.join('*' + s for s in SUFFIXES)} file in the directory")
            yield from (str(p) for p in found)
        else:
            yield path


def _declarations(path: str) -> Iterator[DeclaredPool]:
    documents = read_documents(path)
    for number, document in enumerate(documents, start=1):
        source = path if len(documents) == 1 else f"{path}, document {number}"
        if isinstance(document, list):
            for item, declaration in enumerate(document, start=1):
                yield _declared(declaration, f"{source}, item {item}")
        else:
            yield _declared(document, source)


def _declared(declaration: Any, source: str) -> DeclaredPool:
    if not isinstance(declaration, dict):
        raise PoolFileError(f"{source}: a pool is a mapping of {' and '.join(DECLARATION_FIELDS)}")
    unknown = sorted(str(k) for k in declaration if k not in DECLARATION_FIELDS)
    if unknown:
        raise PoolFileError(f"{source}: {', '.join(unknown)}: not a field of a pool (only name and settings)")
    name, settings = declaration.get("name"), declaration.get("settings")
    if not isinstance(name, str) or not name:
        raise PoolFileError(f"{source}: name: the pool's name is required, a string")
    if not isinstance(settings, dict):
        raise PoolFileError(f"{source}: settings: pool {name}'s settings document is required, a mapping")
    _json_values(settings, f"{source}: settings")
    return DeclaredPool(name, settings, source)


def _json_values(value: Any, where: str) -> None:
    """Refuse what YAML reads but JSON cannot carry (binary, sets, keys that are not strings)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise PoolFileError(f"{where}: the key {key!r} is not a string")
            _json_values(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _json_values(item, f"{where}[{index}]")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise PoolFileError(f"{where}: a {type(value).__name__} is not a JSON value; quote it")


def _text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PoolFileError(f"{path}: {exc.strerror if isinstance(exc, OSError) else exc}") from exc


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(p) for p in (exc.context, exc.problem) if p)
