"""The configuration reference: every schema property described, config/README.md up to date.

config/README.md is generated (``python -m robustkd.configdoc > config/README.md``) from
config/schema.yaml, config/config.yaml and config/demo.yaml; these tests fail when a property
of the schema has no description, when a value has no source, or when the file is stale.
"""

import copy

import pytest
import yaml

from robustkd import configdoc
from robustkd.config import load_config

REGENERATE = "run `python -m robustkd.configdoc > config/README.md` and commit the result"


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
