"""The configuration reference: every schema property described, config/README.md up to date.

config/README.md is generated (``python -m robustkd.configdoc > config/README.md``) from
config/schema.yaml, config/config.yaml and config/demo.yaml; these tests fail when a property
of the schema has no description, when a value has no source, or when the file is stale. They
also fail when a key whose source says "assumed" is not a row of docs/assumptions.md.
"""

import copy
import re

import pytest
import yaml

from robustkd import configdoc
from robustkd.config import load_config
from robustkd.configdoc.schema import ITEM, NAME, SOURCE

REGENERATE = "run `python -m robustkd.configdoc > config/README.md` and commit the result"
ASSUMED = re.compile(r"\bassumed\b")


@pytest.fixture(scope="module")
def schema(repo_root):
    return yaml.safe_load((repo_root / "config" / "schema.yaml").read_text())


def test_every_schema_property_has_a_description(schema):
    missing = configdoc.undescribed(schema)
    assert not missing, f"schema properties without a description: {missing}"


def test_every_value_names_its_source(schema):
    missing = configdoc.unsourced(schema)
    assert not missing, f"schema keys whose description has no 'Source: ...': {missing}"


def test_config_readme_is_what_the_generator_writes(repo_root):
    written = (repo_root / "config" / "README.md").read_text()
    assert written == configdoc.generate(repo_root), f"config/README.md is stale: {REGENERATE}"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (("properties", "loss", "properties"), "loss.planted"),
        (("$defs", "train", "properties"), "training.distill.planted"),
        (("$defs", "distortion", "allOf", 1, "then", "properties"), "distortions.<name>.planted"),
        (
            ("properties", "experiments", "properties", "fig2", "properties", "ladders", "items")
            + ("properties",),
            "experiments.fig2.ladders[].planted",
        ),
    ],
)
def test_an_undescribed_property_is_found_anywhere(schema, where, expected):
    planted = copy.deepcopy(schema)
    node = planted
    for part in where:
        node = node[part]
    node["planted"] = {"type": "number"}
    found = configdoc.undescribed(planted)
    assert expected in found
    assert all(p.endswith(".planted") for p in found), found


def test_a_bare_true_property_counts_unless_its_object_describes_it(schema):
    # `family: true` in a family's branch re-admits the property described above it.
    assert "distortions.<name>.family" not in configdoc.undescribed(schema)
    planted = copy.deepcopy(schema)
    planted["properties"]["claims"]["properties"]["planted"] = True
    assert configdoc.undescribed(planted) == ["claims.planted"]


def test_an_unused_definition_is_checked_too(schema):
    planted = copy.deepcopy(schema)
    planted["$defs"]["unused"] = {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert configdoc.undescribed(planted) == ["$defs.unused.x"]


def test_the_reference_follows_the_configs(tmp_path, repo_root):
    # Values come from the files, not from the text: a changed demo value changes the page.
    config = tmp_path / "config"
    config.mkdir()
    for name in ("schema.yaml", "config.yaml", "demo.yaml"):
        (config / name).write_text((repo_root / "config" / name).read_text())
    before = configdoc.generate(tmp_path)
    demo = yaml.safe_load((config / "demo.yaml").read_text())
    demo["evaluation"]["repeats"] = 7
    (config / "demo.yaml").write_text(yaml.safe_dump(demo))
    after = configdoc.generate(tmp_path)
    row = next(line for line in after.splitlines() if line.startswith("| `evaluation.repeats`"))
    assert "| `10` | `7` |" in row
    assert before != after


def test_every_documented_value_is_in_the_merged_config(repo_root, schema):
    # The demo column is the config Snakemake validates: config.yaml with demo.yaml over it.
    merged = load_config(repo_root / "config" / "config.yaml", repo_root / "config" / "demo.yaml")
    text = configdoc.generate(repo_root)
    assert "| `jobs.seeds_per_job` | one of `one`, `all` | `one` | `all` |" in text
    assert merged["jobs"]["seeds_per_job"] == "all"
    assert "| `training.finetune.lr` | number > 0 | `5e-05` | `0.001` |" in text


def test_a_shared_key_shows_the_source_of_its_use():
    source = "distill: paper (section 3.4; stated); finetune, pretrain: assumed; operational"
    assert configdoc.source_for(("training", "distill", "lr"), source) == (
        "paper (section 3.4; stated); operational"
    )
    assert configdoc.source_for(("backbones", "vit", "pretrain", "lr"), source) == (
        "assumed; operational"
    )
    # No tag matches the path: the whole source (a value's tags are not path parts).
    assert configdoc.source_for(("distortions", "<name>", "p"), "0.75: paper.") == "0.75: paper"


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"type": "integer", "minimum": 1}, "integer ≥ 1"),
        ({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, "number in (0, 1)"),
        ({"type": ["number", "null"], "exclusiveMinimum": 0}, "number > 0 or null"),
        ({"type": "integer", "minimum": 1, "not": {"multipleOf": 2}}, "odd integer ≥ 1"),
        (
            {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
            "list of number (exactly 2)",
        ),
        ({"enum": ["one", "all"]}, "one of `one`, `all`"),
        ({"type": "object", "additionalProperties": {"type": "number"}}, "mapping: name -> number"),
    ],
)
def test_type_text(schema, text):
    assert configdoc.type_text(schema) == text


def assumed_keys(schema) -> list[configdoc.Key]:
    """The keys whose source, as config/README.md shows it for their path, says "assumed"."""
    found = []
    for key in configdoc.keys(schema):
        _, *source = SOURCE.split(key.description, maxsplit=1)
        if source and ASSUMED.search(configdoc.source_for(key.path, source[0])):
            found.append(key)
    return found


def documented_keys(text: str) -> list[str]:
    """The backticked keys of the "config key" cells (the second) of a page's table rows."""
    found = []
    for line in text.splitlines():
        cells = line.strip().strip("|").split("|")
        if line.startswith("|") and len(cells) >= 3:
            found += re.findall(r"`([^`]+)`", cells[1])
    return found


def _concrete(key: configdoc.Key, config) -> list[str]:
    """``key``'s dotted names in ``config``: each named entry (of its families) for ``<name>``."""
    names = [()]
    for part in key.path:
        if part == ITEM:
            continue
        if part != NAME:
            names = [(*n, part) for n in names]
            continue
        grown = []
        for name in names:
            node = config
            for step in name:
                node = node.get(step, {}) if isinstance(node, dict) else {}
            entries = [
                e
                for e, v in (node.items() if isinstance(node, dict) else [])
                if not key.families or (isinstance(v, dict) and v.get("family") in key.families)
            ]
            grown += [(*name, e) for e in entries] or [(*name, NAME)]
        names = grown
    return [".".join(n) for n in names]


def _pattern(documented: str) -> str:
    """A documented key as a regex: ``*`` and ``<...>`` stand for any text."""
    parts = re.split(r"(\*|<[^>]*>)", documented)
    return "".join(".+?" if p == "*" or p.startswith("<") else re.escape(p) for p in parts)


def undocumented_assumptions(schema, config, page: str) -> list[str]:
    """The assumed keys that no row of ``page`` names: itself, a section above it or a pattern
    matching either (``loss.lambda_*``, ``training.<kind>.amp``); a section also counts as named
    by a row of a key below it."""
    documented = documented_keys(page)
    missing = []
    for key in assumed_keys(schema):
        names = _concrete(key, config)
        above = any(
            re.fullmatch(_pattern(d) + r"(\..+)?", name) for d in documented for name in names
        )
        below = not key.leaf and any(
            re.match(re.escape(name) + r"\.", d) for d in documented for name in names
        )
        if not (above or below):
            missing.append(key.dotted)
    return missing


def test_every_assumed_key_is_in_the_assumptions_page(repo_root, schema):
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    page = (repo_root / "docs" / "assumptions.md").read_text()
    missing = undocumented_assumptions(schema, config, page)
    assert not missing, (
        "keys whose schema source says 'assumed' but that no row of docs/assumptions.md names "
        f"(add a row with the key in backticks in its 'config key' cell): {missing}"
    )


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("| 3 seeds;", ["seeds"]),
        ("| Claims' family-wise", ["claims.alpha", "claims.power", "claims.equivalence_margin"]),
        ("| `mixed` draws", ["distortions.<name>.rates"]),  # a named entry, by its family
        ("| lambda_g = 1,", ["loss.lambda_g", "loss.lambda_l", "loss.lambda_a"]),  # a pattern
    ],
)
def test_a_missing_assumption_row_is_found(repo_root, schema, row, expected):
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    page = (repo_root / "docs" / "assumptions.md").read_text()
    lines = page.splitlines()
    kept = [line for line in lines if not line.startswith(row)]
    assert len(kept) == len(lines) - 1, f"no single row starts with {row!r}"
    assert undocumented_assumptions(schema, config, "\n".join(kept)) == expected
