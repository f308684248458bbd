import os

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from robustkd.report.figures import (
    AttentionPanel,
    accuracy,
    attention,
    plot_attention_maps,
    plot_label_fractions,
    plot_severity_curves,
    severity_label,
    severity_of,
    style,
)

DPI = 150

# ---------------------------------------------------------------------------------------------
# Synthetic inputs
# ---------------------------------------------------------------------------------------------

SPECS = {
    "mask": [{"family": "mask", "p": 0.9}, {"family": "mask", "p": 0.95}],
    "noise": [{"family": "noise", "sigma": 0.5}, {"family": "noise", "sigma": 1.0}],
    "blur": [
        {"family": "blur", "kernel": 37, "sigma": 9.0},
        {"family": "blur", "kernel": 53, "sigma": 13.0},
    ],
}
METHODS = (("supervised", "Supervised"), ("ours", "Ours"))


def severity_frame(seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = []
    for family, specs in SPECS.items():
        for i, spec in enumerate(specs):
            for method, label in METHODS:
                for seed in seeds:
                    rows.append(
                        {
                            "family": family,
                            "method": method,
                            "method_label": label,
                            "severity": severity_of(spec),
                            "severity_label": severity_label(spec),
                            "trained": i == 0,
                            "seed": seed,
                            "top1": 60.0 - 10 * i + rng.normal(0, 2),
                        }
                    )
    return pd.DataFrame(rows)


def fraction_frame():
    rng = np.random.default_rng(1)
    rows = [
        {
            "family": family,
            "method": method,
            "method_label": label,
            "fraction": fraction,
            "seed": seed,
            "top1": 30 + 30 * fraction + rng.normal(0, 2),
        }
        for family in ("blur", "mask")  # not in figure order: the figure sorts them
        for method, label in METHODS
        for fraction in (0.005, 0.01, 0.1, 1.0)
        for seed in (0, 1, 2)
    ]
    return pd.DataFrame(rows)


def attention_panels(n=2, size=32, grid=(4, 4), uint8=False):
    rng = np.random.default_rng(2)
    panels = []
    for i in range(n):
        clean = rng.random((size, size, 3))
        distorted = np.clip(clean + rng.normal(0, 0.3, clean.shape), 0, 1)
        if uint8:
            clean, distorted = (clean * 255).astype(np.uint8), (distorted * 255).astype(np.uint8)
        maps = {
            "Teacher (clean)": rng.random(grid),
            "Ours (distorted)": rng.random(grid),
            "Supervised (distorted)": rng.random(grid),
        }
        panels.append(AttentionPanel(f"Family {i}", clean, distorted, maps))
    return panels


def outputs(prefix):
    return [prefix.parent / f"{prefix.name}.{ext}" for ext in ("png", "pdf", "csv")]


def assert_written(prefix):
    png, pdf, csv = outputs(prefix)
    for path in (png, pdf, csv):
        assert path.stat().st_size > 0, path
    assert pdf.read_bytes().startswith(b"%PDF")
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        return im.size


def assert_only_outputs(folder, prefix):
    """Only the three outputs: no temporary files left beside them."""
    assert sorted(os.listdir(folder)) == sorted(p.name for p in outputs(prefix))


# ---------------------------------------------------------------------------------------------
# severity_of / severity_label
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "value", "label"),
    [
        ({"family": "mask", "p": 0.9}, 0.9, "0.9"),
        ({"family": "mask", "p": 0.90}, 0.9, "0.9"),
        ({"family": "mask", "p": 0.75}, 0.75, "0.75"),
        ({"family": "noise", "sigma": 0.5}, 0.5, "0.5"),
        ({"family": "noise", "sigma": 1.0}, 1.0, "1"),
        ({"family": "blur", "kernel": 37, "sigma": 9.0}, 9.0, "(37, 9)"),
        ({"family": "blur", "kernel": 5, "sigma": 0.7, "stands_for": "blur-21-5"}, 0.7, "(5, 0.7)"),
    ],
)
def test_severity_of_and_label(spec, value, label):
    assert severity_of(spec) == pytest.approx(value)
    assert severity_label(spec) == label


@pytest.mark.parametrize(
    "spec",
    [
        {"family": "jpeg", "quality": 10},
        {"p": 0.9},
        {"family": "mask"},
        {"family": "noise", "p": 0.5},
        {"family": "blur", "sigma": 9.0},  # label needs the kernel
    ],
)
def test_severity_rejects_bad_specs(spec):
    with pytest.raises(ValueError):
        severity_label(spec)


def test_severity_of_config_entries_is_monotone_in_their_names(repo_root):
    """Every configured single distortion has a severity, and labels tell the settings apart.

    ``mixed`` (issue 17) has no severity of its own: it draws among the other settings, which
    are checked here.
    """
    config = yaml.safe_load((repo_root / "config" / "config.yaml").read_text())
    by_family = {}
    for spec in config["distortions"].values():
        if spec["family"] != "mixed":
            by_family.setdefault(spec["family"], []).append(spec)
    assert set(by_family) == {"mask", "noise", "blur"}
    for specs in by_family.values():
        labels = [severity_label(s) for s in specs]
        assert len(set(labels)) == len(labels)
        assert all(severity_of(s) >= 0 for s in specs)


# ---------------------------------------------------------------------------------------------
# Fig. 2
# ---------------------------------------------------------------------------------------------


def assert_per_seed_figure(tmp_path, plot, df, name, x, panels, check_dtype=True):
    """Draw a Fig. 2 or 3: its size, its files, and its CSV: the per-seed rows and their points.

    Returns:
        The figure's CSV.
    """
    prefix = tmp_path / name
    plot(df, prefix)
    width, height = assert_written(prefix)
    assert width == pytest.approx((2.6 * panels + 0.4) * DPI, abs=2)
    assert height == pytest.approx(3.1 * DPI, abs=2)
    assert_only_outputs(tmp_path, prefix)

    data = pd.read_csv(tmp_path / f"{name}.csv")
    keys = ["family", "method", x, "seed"]
    # The per-seed rows, unchanged.
    got = data[list(df.columns)].sort_values(keys).reset_index(drop=True)
    want = df.sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=check_dtype)
    # The plotted mean and sample std recomputed from them.
    g = data.groupby(["family", "method", x])["top1"]
    np.testing.assert_allclose(data["mean"], g.transform("mean"))
    np.testing.assert_allclose(data["std"], g.transform("std"))
    return data


def test_severity_curves_writes_figure_and_per_seed_data(tmp_path):
    df = severity_frame()
    data = assert_per_seed_figure(
        tmp_path, plot_severity_curves, df, "fig2", "severity", 3, check_dtype=False
    )
    assert (data["n"] == 3).all()
    # Rows in figure order: mask, noise, blur.
    assert list(dict.fromkeys(data["family"])) == ["mask", "noise", "blur"]


def test_severity_curves_single_seed_has_no_band(tmp_path):
    plot_severity_curves(severity_frame(seeds=(0,)), tmp_path / "fig2")
    data = pd.read_csv(tmp_path / "fig2.csv")
    assert data["std"].isna().all() and (data["n"] == 1).all()


def test_severity_curves_one_family_and_extra_method(tmp_path):
    df = severity_frame()
    df = df[df["family"] == "blur"]
    ci = df[df["method"] == "ours"].assign(
        method="ci", method_label="CI", top1=lambda d: d.top1 - 5
    )
    plot_severity_curves(pd.concat([df, ci]), tmp_path / "fig2")
    width, _ = assert_written(tmp_path / "fig2")
    assert width == pytest.approx((2.6 + 0.4) * DPI, abs=2)
    assert set(pd.read_csv(tmp_path / "fig2.csv")["method"]) == {"ci", "ours", "supervised"}


@pytest.mark.parametrize("column", accuracy._SEVERITY_COLUMNS)
def test_severity_curves_missing_column(tmp_path, column):
    with pytest.raises(ValueError, match=repr(column)):
        plot_severity_curves(severity_frame().drop(columns=column), tmp_path / "fig2")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: pd.concat([d, d.iloc[:1]]), "several rows"),
        (
            lambda d: d.assign(severity_label=d["severity_label"].where(d.index != 0, "x")),
            "differs",
        ),
        (lambda d: d.assign(top1=d["top1"].where(d.index != 0, np.nan)), "NaN"),
        (lambda d: d.iloc[:0], "no rows"),
        (lambda d: d.assign(trained="yes"), "booleans"),
    ],
)
def test_severity_curves_rejects_bad_frames(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        plot_severity_curves(change(severity_frame()), tmp_path / "fig2")


def test_severity_curves_are_reproducible_byte_for_byte(tmp_path):
    df = severity_frame()
    plot_severity_curves(df, tmp_path / "a")
    plot_severity_curves(df.sample(frac=1.0, random_state=0), tmp_path / "b")  # row order
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes(), ext


# ---------------------------------------------------------------------------------------------
# Fig. 3
# ---------------------------------------------------------------------------------------------


def test_label_fractions_writes_figure_and_per_seed_data(tmp_path):
    df = fraction_frame()
    data = assert_per_seed_figure(tmp_path, plot_label_fractions, df, "fig3", "fraction", 2)
    assert list(dict.fromkeys(data["family"])) == ["mask", "blur"]


@pytest.mark.parametrize(
    ("fraction", "label"),
    [(0.005, "0.5%"), (0.01, "1%"), (0.1, "10%"), (1.0, "100%"), (0.07, "7%")],
)
def test_percent_tick_labels(fraction, label):
    assert accuracy._percent(fraction) == label


@pytest.mark.parametrize("column", accuracy._FRACTION_COLUMNS)
def test_label_fractions_missing_column(tmp_path, column):
    with pytest.raises(ValueError, match=repr(column)):
        plot_label_fractions(fraction_frame().drop(columns=column), tmp_path / "fig3")


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_label_fractions_rejects_fraction_outside_unit_interval(tmp_path, bad):
    df = fraction_frame()
    df.loc[0, "fraction"] = bad
    with pytest.raises(ValueError, match="fraction"):
        plot_label_fractions(df, tmp_path / "fig3")


# ---------------------------------------------------------------------------------------------
# Fig. 4
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("uint8", [False, True])
def test_attention_maps_writes_figure_and_grid_data(tmp_path, uint8):
    panels = attention_panels(n=2, grid=(4, 3), uint8=uint8)
    prefix = tmp_path / "fig4"
    plot_attention_maps(panels, prefix)
    width, height = assert_written(prefix)
    assert width == pytest.approx((1.55 * 5 + 0.9) * DPI, abs=2)
    assert height == pytest.approx((1.55 * 2 + 0.35) * DPI, abs=2)
    assert_only_outputs(tmp_path, prefix)

    data = pd.read_csv(tmp_path / "fig4.csv")
    assert list(data.columns) == ["panel", "family", "map", "row", "col", "value"]
    assert len(data) == 2 * 3 * 4 * 3
    for i, panel in enumerate(panels):
        for title, grid in panel.maps.items():
            cells = data[(data["panel"] == i) & (data["map"] == title)]
            assert (cells["family"] == panel.family_label).all()
            rebuilt = np.zeros(grid.shape)
            rebuilt[cells["row"], cells["col"]] = cells["value"]
            np.testing.assert_allclose(rebuilt, grid)


def test_attention_upsampling_is_bilinear_and_normalised():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])
    up = attention._upsample(grid, (8, 8))
    assert up.shape == (8, 8)
    assert up.min() >= 0 and up.max() <= 3  # bilinear: no overshoot
    assert len(np.unique(up.round(6))) > 4  # smooth, not a nearest-neighbour repeat
    norm = attention._normalise(up)
    assert norm.min() == 0 and norm.max() == 1
    assert (attention._normalise(np.ones((3, 3))) == 0).all()  # a flat map, no division by 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ps: [], "no panels"),
        (
            lambda ps: [
                ps[0],
                AttentionPanel(
                    "x", ps[1].clean, ps[1].distorted, {"a": ps[1].maps["Ours (distorted)"]}
                ),
            ],
            "maps",
        ),
        (
            lambda ps: [AttentionPanel("x", ps[0].clean[..., 0], ps[0].distorted, ps[0].maps)],
            r"\(H, W, 3\)",
        ),
        (
            lambda ps: [AttentionPanel("x", ps[0].clean * 2, ps[0].distorted, ps[0].maps)],
            r"\[0, 1\]",
        ),
        (lambda ps: [AttentionPanel("x", ps[0].clean, ps[0].distorted[:8], ps[0].maps)], "differ"),
        (lambda ps: [AttentionPanel("x", ps[0].clean, ps[0].distorted, {"a": np.ones(5)})], "2-D"),
        (
            lambda ps: [
                AttentionPanel("x", ps[0].clean, ps[0].distorted, {"a": np.full((2, 2), np.nan)})
            ],
            "finite",
        ),
    ],
)
def test_attention_maps_rejects_bad_panels(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        plot_attention_maps(change(attention_panels()), tmp_path / "fig4")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Style and side effects
# ---------------------------------------------------------------------------------------------


def test_methods_keep_their_colour_across_figures():
    a = style.method_styles(["supervised", "ours"])
    b = style.method_styles(["ours", "ci", "supervised", "zeta", "alpha"])
    assert a["ours"] == b["ours"] and a["supervised"] == b["supervised"]
    colours = [s["color"] for s in b.values()]
    assert len(set(colours)) == len(colours)
    assert list(b) == ["ours", "supervised", "ci", "alpha", "zeta"]  # legend order


def test_figures_leave_no_global_state(tmp_path):
    plt.close("all")
    before_figs, before_rc = plt.get_fignums(), dict(mpl.rcParams)
    backend = mpl.get_backend()
    plot_severity_curves(severity_frame(), tmp_path / "fig2")
    plot_label_fractions(fraction_frame(), tmp_path / "fig3")
    plot_attention_maps(attention_panels(), tmp_path / "fig4")
    assert plt.get_fignums() == before_figs
    assert dict(mpl.rcParams) == before_rc
    assert mpl.get_backend() == backend


def test_failed_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    real_replace = os.replace

    def failing_replace(src, dst):
        if str(dst).endswith(".pdf"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(style.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        plot_severity_curves(severity_frame(), tmp_path / "fig2")
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".")]
    assert not (tmp_path / "fig2.pdf").exists()


def test_prefix_with_dots_keeps_its_name(tmp_path):
    plot_label_fractions(fraction_frame(), tmp_path / "fig3.v1")
    assert sorted(os.listdir(tmp_path)) == ["fig3.v1.csv", "fig3.v1.pdf", "fig3.v1.png"]


def test_extra_columns_are_kept_for_provenance(tmp_path):
    """Columns beyond the required ones (the metrics file of each number) reach the CSV."""
    df = severity_frame().assign(source=lambda d: [f"metrics/{i}.json" for i in range(len(d))])
    plot_severity_curves(df, tmp_path / "fig2")
    data = pd.read_csv(tmp_path / "fig2.csv")
    assert list(data.columns) == [*accuracy._SEVERITY_COLUMNS, "source", "mean", "std", "n"]
    assert sorted(data["source"]) == sorted(df["source"])
