"""Distillation loss curves: per-epoch means and the plateau measure, on hand-made logs."""

import json

import pytest

from robustkd.report.curves import epoch_losses, plateau_summary, plot_distill_losses


def _log(path, losses_per_epoch):
    lines = [json.dumps({"step": 0, "epoch": 0, "note": "no loss"})]
    step = 0
    for epoch, losses in enumerate(losses_per_epoch):
        for loss in losses:
            step += 1
            lines.append(json.dumps({"step": step, "epoch": epoch, "lr": 1e-3, "loss": loss}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_epoch_means_relative_and_plateau(tmp_path):
    falling = _log(tmp_path / "a.jsonl", [[10, 8], [6, 6], [5, 5], [5, 5]])
    still = _log(tmp_path / "b.jsonl", [[10, 10], [8, 8], [6, 6], [4, 4]])
    df = epoch_losses([("ours", "mask", 0, falling), ("ci", "mask", 0, still)])
    ours = df[df["method"] == "ours"]
    assert list(ours["epoch"]) == [1, 2, 3, 4]
    assert list(ours["loss"]) == [9, 6, 5, 5]
    assert list(ours["relative"]) == pytest.approx([1, 6 / 9, 5 / 9, 5 / 9])
    summary = plateau_summary(df, window=2).set_index("method")
    assert summary.loc["ours", "last_change"] == pytest.approx((5 - 6) / 6)
    assert summary.loc["ci", "last_change"] == pytest.approx((4 - 8) / 8)
    assert summary.loc["ci", "total_change"] == pytest.approx(-0.6)
    plot_distill_losses(df, tmp_path / "fig")
    for ext in ("png", "pdf", "csv"):
        assert (tmp_path / f"fig.{ext}").stat().st_size > 0


def test_a_log_without_loss_is_an_error(tmp_path):
    empty = tmp_path / "log.jsonl"
    empty.write_text(json.dumps({"step": 0}) + "\n")
    with pytest.raises(ValueError, match="no logged loss"):
        epoch_losses([("ours", "mask", 0, empty)])
