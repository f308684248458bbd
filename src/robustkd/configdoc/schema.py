"""Walking ``config/schema.yaml``: every key a config can hold, and its type in words.

The walk follows ``$ref`` (a local ``description`` wins over the target's), the distortion
families of ``allOf``, the named entries of a mapping (:data:`NAME`) and the items of a list of
mappings (:data:`ITEM`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ITEM", "NAME", "SOURCE", "Key", "keys", "type_text", "undescribed", "unsourced"]

NAME = "<name>"  # a path part standing for any key of a mapping of named entries
ITEM = "[]"  # a path part standing for any item of a list of mappings
SOURCE = re.compile(r"\s*\bSource:\s*")  # what follows it in a description: the source


@dataclass(frozen=True)
class Key:
    """One documented key of the config.

    Attributes:
        path: The key's parts from the top, with :data:`NAME` and :data:`ITEM` for named
            entries and list items (``("distortions", "<name>", "p")``).
        schema: Its schema, ``$ref`` resolved (a local ``description`` wins over the target's).
        required: Whether its parent requires it.
        families: The distortion families it belongs to (empty: every entry).
        leaf: Whether no key lies below it (a value, not a section).
    """

    path: tuple[str, ...]
    schema: Mapping[str, Any]
    required: bool
    families: tuple[str, ...] = ()
    leaf: bool = True

    @property
    def dotted(self) -> str:
        """``training.distill.lr``; ``experiments.fig2.ladders[].train`` for list items."""
        return ".".join(self.path).replace(f".{ITEM}", ITEM)

    @property
    def description(self) -> str:
        """The description, whitespace collapsed ("" when there is none)."""
        return " ".join(str(self.schema.get("description", "")).split())


def _resolve(node: Any, root: Mapping[str, Any]) -> Any:
    """``node`` with its ``$ref`` (``#/$defs/<name>``) replaced by the target's keywords."""
    if not isinstance(node, Mapping) or "$ref" not in node:
        return node
    target = _resolve(root["$defs"][str(node["$ref"]).rsplit("/", 1)[-1]], root)
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _has_children(node: Any) -> bool:
    return isinstance(node, Mapping) and bool(node.get("properties") or node.get("allOf"))


def _children(node: Mapping[str, Any], path: tuple[str, ...], root: Mapping) -> Iterator[Key]:
    own = node.get("properties", {})
    required = set(node.get("required", []))
    for name, sub in own.items():
        yield from _walk(name, sub, path, name in required, (), root)
    for branch in node.get("allOf", []):
        family = branch["if"]["properties"]["family"]["const"]
        then = branch.get("then", {})
        for name, sub in then.get("properties", {}).items():
            if sub is True and name in own:  # `family: true`: the property described above
                continue
            yield from _walk(name, sub, path, name in then.get("required", []), (family,), root)
    entry = _resolve(node.get("additionalProperties"), root)
    if _has_children(entry):
        yield from _children(entry, (*path, NAME), root)
    item = _resolve(node.get("items"), root)
    if node.get("type") == "array" and _has_children(item):
        yield from _children(item, (*path, ITEM), root)


def _walk(
    name: str, sub: Any, path: tuple[str, ...], required: bool, families: tuple, root: Mapping
) -> Iterator[Key]:
    schema = _resolve(sub, root)
    schema = schema if isinstance(schema, Mapping) else {}
    below = list(_children(schema, (*path, name), root))
    yield Key((*path, name), schema, required, families, leaf=not below)
    yield from below


def keys(schema: Mapping[str, Any]) -> list[Key]:
    """Every key a config can hold, in the schema's order.

    A key that several distortion families share with the same description and type
    (``stands_for``) is one key with all of them.

    Args:
        schema: The parsed ``config/schema.yaml``.

    Returns:
        The keys.
    """
    merged: dict[tuple, Key] = {}
    for key in _children(schema, (), schema):
        ident = (key.path, key.description, type_text(key.schema))
        if ident in merged and key.families:
            old = merged[ident]
            key = Key(old.path, old.schema, old.required, (*old.families, *key.families), key.leaf)
        merged[ident] = key
    return list(merged.values())


def undescribed(schema: Mapping[str, Any]) -> list[str]:
    """The properties of ``schema`` without a description, as dotted paths.

    Every property counts: those reached from the top (through ``$ref``), those of every
    ``$defs`` entry (``$defs.<name>.<key>``, used or not), and a bare ``true`` or ``false``
    property, unless it re-admits in an ``allOf`` branch a property its object describes.

    Args:
        schema: The parsed ``config/schema.yaml``.

    Returns:
        Sorted paths, empty when every property is described.
    """
    found = list(_children(schema, (), schema))
    for name, definition in schema.get("$defs", {}).items():
        found += _children(_resolve(definition, schema), ("$defs", name), schema)
    return sorted({k.dotted for k in found if not k.description})


def unsourced(schema: Mapping[str, Any]) -> list[str]:
    """The leaf keys (no keys below them) whose description names no ``Source:``.

    Args:
        schema: The parsed ``config/schema.yaml``.

    Returns:
        Dotted paths, in the schema's order; empty when every value has a source.
    """
    return [k.dotted for k in keys(schema) if k.leaf and not SOURCE.search(k.description)]


def _bounds(s: Mapping[str, Any]) -> str:
    low = ("[", s["minimum"]) if "minimum" in s else ("(", s.get("exclusiveMinimum"))
    high = ("]", s["maximum"]) if "maximum" in s else (")", s.get("exclusiveMaximum"))
    if low[1] is not None and high[1] is not None:
        return f" in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low[1] is not None:
        return f" {'≥' if low[0] == '[' else '>'} {low[1]}"
    if high[1] is not None:
        return f" {'≤' if high[0] == ']' else '<'} {high[1]}"
    return ""


def type_text(s: Mapping[str, Any]) -> str:
    """A schema as words: ``integer ≥ 1``, ``list of string (non-empty, unique)``, ...

    Args:
        s: A resolved schema.

    Returns:
        The text (``any`` for a schema without type).
    """
    if "enum" in s:
        return "one of " + ", ".join(f"`{v}`" for v in s["enum"])
    kinds = s.get("type", [])
    words = []
    for kind in [kinds] if isinstance(kinds, str) else kinds:
        if kind in ("integer", "number"):
            odd = "odd " if s.get("not") == {"multipleOf": 2} else ""
            words.append(f"{odd}{kind}{_bounds(s)}")
        elif kind == "string" and "pattern" in s:
            words.append(f"string matching `{s['pattern']}`")
        elif kind == "array":
            words.append(f"list of {type_text(s.get('items', {}))}{_list_terms(s)}")
        elif kind == "object":
            extra = s.get("additionalProperties")
            plain = isinstance(extra, Mapping) and not _has_children(extra)
            words.append(f"mapping: name -> {type_text(extra)}" if plain else "mapping")
        else:
            words.append(kind)
    return " or ".join(words) or "any"


def _list_terms(s: Mapping[str, Any]) -> str:
    terms = []
    if s.get("minItems") is not None and s.get("minItems") == s.get("maxItems"):
        terms.append(f"exactly {s['minItems']}")
    elif s.get("minItems") == 1:
        terms.append("non-empty")
    elif s.get("minItems"):
        terms.append(f"at least {s['minItems']}")
    if s.get("uniqueItems"):
        terms.append("unique")
    return f" ({', '.join(terms)})" if terms else ""
