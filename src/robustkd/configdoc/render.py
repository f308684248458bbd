"""Writing the reference: one table per top-level key, values from the paper and demo configs."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from robustkd.config import merge_configs
from robustkd.configdoc.intro import INTRO
from robustkd.configdoc.schema import ITEM, NAME, SOURCE, Key, keys, type_text

__all__ = ["generate", "render", "source_for", "value_text"]

_MISSING = object()
_TAGGED = re.compile(r"^([a-z_]+(?:, [a-z_]+)*): (.+)$")  # "distill, finetune: assumed (...)"


def value_text(value: Any) -> str:
    """A config value in YAML's flow style: ``[0, 1, 2]``, ``{family: mask, p: 0.75}``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def _lookup(config: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = config
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _top_level_split(text: str, sep: str = ";") -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += (char in "([") - (char in ")]")
        if char == sep and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [p for p in (*parts, current.strip()) if p]


def source_for(path: Sequence[str], source: str) -> str:
    """The part of a shared key's source that concerns ``path``.

    A key of a shared definition names one source per use: ``distill: paper (section 3.4);
    finetune: assumed (...); pretrain: miniature``. Where a tag is a part of ``path``, only
    that tag's text is kept (with any untagged part); otherwise the source is kept whole.

    Args:
        path: The key's parts (``("training", "finetune", "lr")``).
        source: The text after ``Source:`` in its description.

    Returns:
        The source for this key, without a final full stop.
    """
    source = source.strip().removesuffix(".")
    parts = []
    for segment in _top_level_split(source):
        match = _TAGGED.match(segment)
        parts.append(
            (set(match.group(1).split(", ")), match.group(2)) if match else (None, segment)
        )
    if not any(tags and tags & set(path) for tags, _ in parts):
        return source
    return "; ".join(text for tags, text in parts if tags is None or tags & set(path))


def _prose(text: str) -> str:
    """Description text as Markdown: ``<`` and ``*`` outside code spans shown as typed."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(
        p if p.startswith("`") else p.replace("<", "&lt;").replace("*", "\\*") for p in parts
    )


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _value_cell(key: Key, config: Mapping[str, Any]) -> str:
    if NAME in key.path:
        return "per entry (below)"
    if ITEM in key.path:
        return f"per item of `{key.path[key.path.index(ITEM) - 1]}`"
    value = _lookup(config, key.path)
    if value is _MISSING:
        return "—"
    return f"`{_cell(value_text(value))}`" if key.leaf else ""


def _row(key: Key, paper: Mapping[str, Any], demo: Mapping[str, Any]) -> str:
    meaning, *source = SOURCE.split(key.description, maxsplit=1)
    source_text = source_for(key.path, source[0]) if source else "—"
    name = f"`{key.dotted}`" + (f" ({', '.join(key.families)})" if key.families else "")
    kind = type_text(key.schema) + ("" if key.required else ", optional")
    in_paper, in_demo = _value_cell(key, paper), _value_cell(key, demo)
    if in_demo == in_paper and in_paper.startswith("`"):
        in_demo = "same"
    prose = [_cell(_prose(meaning)), _cell(_prose(source_text))]
    cells = [name, _cell(kind), in_paper, in_demo, *prose]
    return "| " + " | ".join(cells) + " |"


def _named_entries(top: str, paper: Mapping[str, Any], demo: Mapping[str, Any]) -> list[str]:
    names = [*paper.get(top, {}), *(n for n in demo.get(top, {}) if n not in paper.get(top, {}))]
    lines = ["", f"The entries of `{top}`:", "", "| name | paper | demo |", "|---|---|---|"]
    for name in names:
        a, b = (c.get(top, {}).get(name, _MISSING) for c in (paper, demo))
        left = "—" if a is _MISSING else f"`{_cell(value_text(a))}`"
        right = "same" if a == b else f"`{_cell(value_text(b))}`"
        lines.append(f"| `{name}` | {left} | {right} |")
    return lines


def render(schema: Mapping[str, Any], paper: Mapping[str, Any], demo: Mapping[str, Any]) -> str:
    """The reference: the fixed introduction, an index and a table per top-level key.

    Args:
        schema: The parsed schema.
        paper: The parsed ``config/config.yaml``.
        demo: ``paper`` merged with ``config/demo.yaml``.

    Returns:
        The Markdown text of ``config/README.md``.
    """
    everything = keys(schema)
    tops = [k for k in everything if len(k.path) == 1]
    lines = [*INTRO.strip("\n").splitlines(), "", "## Sections", "", "| key | what |", "|---|---|"]
    for top in tops:
        first = SOURCE.split(top.description, maxsplit=1)[0].split(". ")[0].removesuffix(".")
        lines.append(f"| [`{top.dotted}`](#{top.dotted}) | {_cell(_prose(first))} |")
    header = ["| key | type | paper | demo | meaning | source |", "|---|---|---|---|---|---|"]
    for top in tops:
        lines += ["", f"## {top.dotted}", ""]
        below = [k for k in everything if k.path[0] == top.path[0] and len(k.path) > 1]
        if below:  # a section: its description above its table (a value: in the table)
            pattern = top.schema.get("propertyNames", {}).get("pattern")
            names = f" Entry names match `{_cell(pattern)}`." if pattern else ""
            lines += [_prose(top.description) + names, ""]
        lines += [*header, *(_row(k, paper, demo) for k in below or [top])]
        if any(k.path[1:2] == (NAME,) for k in below):
            lines += _named_entries(top.dotted, paper, demo)
    return "\n".join(lines) + "\n"


def generate(root: str | Path = ".") -> str:
    """``config/README.md`` as the schema and configs of the checkout ``root`` make it.

    Args:
        root: The checkout (holding ``config/``).

    Returns:
        The Markdown text.
    """
    config = Path(root) / "config"

    def load(name: str) -> dict[str, Any]:
        with open(config / name) as fh:
            return yaml.safe_load(fh) or {}

    paper = load("config.yaml")
    return render(load("schema.yaml"), paper, merge_configs(paper, load("demo.yaml")))
