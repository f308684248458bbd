"""Which runs each job trains and which files each table and figure reads."""

import pytest

from robustkd.config import load_config
from robustkd.layout import finetune_runs, table_cells, table_spec


@pytest.fixture(scope="module")
def demo(repo_root):
    return load_config(repo_root / "config" / "config.yaml", repo_root / "config" / "demo.yaml")


def test_finetune_runs(demo):
    seeds = demo["seeds"]
    assert finetune_runs(demo, "table") == [("imagenet100", "1", s) for s in seeds]
    fractions = {f for _, f, _ in finetune_runs(demo, "fractions")}
    assert fractions == {"0.1", "0.25"}  # 100 % is the table run
    transfer = {d for d, _, _ in finetune_runs(demo, "transfer")}
    assert transfer == {"cifar10", "cifar100", "stl10", "resisc45", "camelyon17"}
    with pytest.raises(KeyError, match="unknown fine-tuning kind"):
        finetune_runs(demo, "nope")


def test_table2_layout(demo):
    spec = table_spec(demo, "table2")
    assert [c for c, _ in spec.columns] == [
        "cifar10",
        "cifar100",
        "stl10",
        "resisc45",
        "camelyon17",
    ]
    labels = [label for _, label in spec.rows]
    assert labels[:3] == ["CI (RM)", "Baseline (RM)", "Ours (RM)"]
    assert labels[-1] == "Ours (GB)"
    cells = table_cells(demo, "table2")
    assert len(cells) == 3 * 3 * 5
    assert all(len(c.metrics) == len(demo["seeds"]) for c in cells)
    assert "results/finetune/camelyon17/ci/blur-9-1.3/frac1/seed0/metrics.json" in {
        m for c in cells for m in c.metrics
    }


def test_table1_has_a_ci_column(demo):
    assert {c.column for c in table_cells(demo, "table1")} == {"ci", "supervised", "ours"}
