"""Values given with Snakemake's ``--config``, typed as the schema says.

Snakemake parses ``--config key=value`` with ``int``, ``float``, a boolean parser and then
YAML's *base* loader, so a value inside a list or mapping stays a string: ``--config
seeds=[0]`` gives ``["0"]``, which the schema refuses (``'0' is not of type 'integer'``).
:func:`coerce_config` converts such strings, in place, where the schema leaves no doubt:

- to an integer, number or boolean where the schema allows that type and not a string
  (``"0"`` for ``seeds`` items, ``"0.9"`` for a mask's ``p``, ``"true"`` for ``amp``);
- to null where the schema allows null (``"null"``, ``"~"``: YAML's null, as a file means it).

A string where the schema also allows a string (a path, a name), or with no type in the schema
(a backbone's ``kwargs``), is left as it is; the validation then names what is still wrong
and :func:`config_hint` says to write the value in an overlay file instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["coerce_config", "config_hint"]

_INT = re.compile(r"[-+]?\d+")
_NULLS = ("null", "Null", "NULL", "~")
_BOOLS = {"true": True, "false": False}


def _resolve(node: Any, root: Mapping[str, Any]) -> Any:
    """Follow local ``$ref`` s (``#/$defs/name``) to the schema they name."""
    seen = 0
    while isinstance(node, Mapping) and "$ref" in node and seen < 32:
        target: Any = root
        for part in str(node["$ref"]).removeprefix("#/").split("/"):
            target = target[part]
        extra = {k: v for k, v in node.items() if k != "$ref"}  # e.g. a description beside it
        node = {**target, **extra}
        seen += 1
    return node


def _json_type(value: Any) -> str:
    """The JSON Schema type name of a Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _types(node: Any, root: Mapping[str, Any]) -> set[str] | None:
    """The JSON types a scalar may have under ``node``, or None when the schema does not say."""
    node = _resolve(node, root)
    if not isinstance(node, Mapping):
        return None
    known: list[set[str]] = []
    if "type" in node:
        kinds = node["type"]
        known.append({kinds} if isinstance(kinds, str) else set(kinds))
    if "enum" in node or "const" in node:
        members = node.get("enum", [node.get("const")])
        known.append({_json_type(m) for m in members})
    for key in ("anyOf", "oneOf"):
        if key in node:
            branches = [_types(b, root) for b in node[key]]
            if any(b is None for b in branches):
                return None
            known.append(set().union(*(b for b in branches if b is not None)))
    for branch in node.get("allOf", []):
        kinds = _types(branch, root)
        if kinds is not None:
            known.append(kinds)
    if not known:
        return None
    allowed = set(known[0]).intersection(*known[1:])
    if "number" in allowed:
        allowed.add("integer")
    return allowed


def _scalar(text: str, node: Any, root: Mapping[str, Any]) -> Any:
    """``text`` as the type the schema gives it, or ``text`` itself when that is not certain."""
    allowed = _types(node, root)
    if allowed is None:
        return text
    if "null" in allowed and text in _NULLS:
        return None
    if "string" in allowed:
        return text
    if "boolean" in allowed and text.lower() in _BOOLS:
        return _BOOLS[text.lower()]
    if "integer" in allowed and _INT.fullmatch(text.strip()):
        return int(text)
    if "number" in allowed:
        try:
            return float(text)
        except ValueError:
            pass
    return text


def _accepts(node: Any, root: Mapping[str, Any], value: Any) -> bool:
    """Whether ``value`` is valid under the sub-schema ``node`` (an ``if``) of ``root``."""
    import jsonschema

    schema = {"$defs": root.get("$defs", {}), **_resolve(node, root)}
    return bool(jsonschema.Draft202012Validator(schema).is_valid(value))


def _parts(node: Any, root: Mapping[str, Any], value: Any) -> list[Mapping[str, Any]]:
    """``node`` and those of its parts that apply to ``value``.

    The parts: ``allOf``'s, the ``then`` or ``else`` of an ``if``, and the branch of ``anyOf`` /
    ``oneOf`` that takes ``value``'s type when only one does.
    """
    node = _resolve(node, root)
    if not isinstance(node, Mapping):
        return []
    parts = [node]
    for branch in node.get("allOf", []):
        parts += _parts(branch, root, value)
    if "if" in node:
        branch = node.get("then") if _accepts(node["if"], root, value) else node.get("else")
        parts += _parts(branch, root, value)
    kind = _json_type(value)
    for key in ("anyOf", "oneOf"):
        fits = [b for b in node.get(key, []) if kind in (_types(b, root) or {kind})]
        if len(fits) == 1:
            parts += _parts(fits[0], root, value)
    return parts


def _children(node: Any, root: Mapping[str, Any], value: Any, key: str | int) -> list[Any]:
    """The schemas of ``value[key]`` (a property of a mapping, an item of a list)."""
    found = []
    for part in _parts(node, root, value):
        if isinstance(key, int):
            prefix = part.get("prefixItems", [])
            sub = prefix[key] if key < len(prefix) else part.get("items")
        elif key in part.get("properties", {}):
            sub = part["properties"][key]
        else:
            pattern = [s for p, s in part.get("patternProperties", {}).items() if re.search(p, key)]
            extra = part.get("additionalProperties")
            sub = pattern[0] if pattern else extra if isinstance(extra, Mapping) else None
        if sub is not None:
            found.append(sub)
    return found


def _walk(
    value: Any,
    node: Any,
    root: Mapping[str, Any],
    path: str,
    changed: list[str],
    only: Any = None,
) -> Any:
    """``value`` with its strings converted under ``node`` (containers in place).

    ``only``: a mapping of the keys to convert (the ``--config`` values), or None for all.
    """
    if isinstance(value, str):
        new = _scalar(value, node, root)
        if new is not value:
            changed.append(path)
        return new
    if isinstance(value, MutableMapping):
        keys = [k for k in value if not isinstance(only, Mapping) or k in only]
    elif isinstance(value, list):
        keys = list(range(len(value)))
    else:
        return value
    for key in keys:
        below = only.get(key) if isinstance(only, Mapping) else None
        for sub in _children(node, root, value, key if isinstance(key, int) else str(key)):
            where = f"{path}.{key}".lstrip(".")
            value[key] = _walk(value[key], sub, root, where, changed, below)
    return value


def coerce_config(
    config: MutableMapping[str, Any],
    schema: Mapping[str, Any],
    only: Mapping[str, Any] | None = None,
) -> list[str]:
    """Convert strings of ``config`` to the types the schema gives them, in place.

    Args:
        config: The merged config (Snakemake's ``config``); changed in place.
        schema: The JSON schema (``config/schema.yaml``, loaded).
        only: The values given with ``--config`` (``workflow.config_settings.config``): only
            their keys are converted, so a string written in a YAML file stays a string.
            None converts the whole config.

    Returns:
        The dotted keys whose values were converted.
    """
    changed: list[str] = []
    _walk(config, schema, schema, "", changed, only)
    return sorted(set(changed))


def config_hint(message: str, given: Mapping[str, Any] | None) -> str:
    """What to add to a config error about a key given with ``--config``.

    Args:
        message: The validation error (``config key 'seeds.0': ...``).
        given: The values given with ``--config``.

    Returns:
        A sentence to append (starting with a space), or ``""`` when the key named in
        ``message`` was not given with ``--config``.
    """
    m = re.search(r"config key '([^']+)'", message)
    if not m or not given or m.group(1).split(".")[0] not in given:
        return ""
    return (
        f" ('{m.group(1).split('.')[0]}' was given with --config, where Snakemake passes the "
        "values inside lists and mappings as strings; those the schema types unambiguously "
        "are converted, this one is not: write it in an overlay file given with --configfile)"
    )
