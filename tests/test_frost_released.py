"""Frost from the benchmark's photographs, as the released generators blend them (issue 26, C)."""

import hashlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robustkd.corruptions import create_corruption, to_uint8, weather
from robustkd.craft.jobs import corrupt_testset_job
from robustkd.data.prepared import PreparedWriter
from robustkd.data.synthetic import draw_image
from robustkd.distortions import seeded_generator

RELEASED = Path(__file__).parent / "data" / "frost_released.npz"


def _clear_caches():
    weather.frost_photographs.cache_clear()
    weather.frost_bank.cache_clear()


@pytest.fixture
def no_photographs(monkeypatch):
    """The photographs' package absent (its folder not found)."""
    monkeypatch.setattr(weather, "frost_photo_dir", lambda: None)
    _clear_caches()
    yield
    _clear_caches()


def _tensor(arr):
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("protocol", ["cifar10c", "imagenetc"])
def test_frost_bytes_equal_the_released_generator(protocol):
    """Our frost bytes equal those of the released code, at every severity, both protocols.

    ``frost_released.npz`` was written by ``benchmarks/frost_released.py``: it runs ``frost`` of
    ``make_cifar_c.py`` (6 images, 32 px) and of ``make_imagenet_c.py`` (1 image, 224 px) of
    hendrycks/robustness, copied verbatim, with OpenCV 5.1.0 (``cv2.imread``, and
    ``cv2.resize(fx=0.2, fy=0.2)`` for CIFAR) on the photographs of ``imagecorruptions`` 1.1.2
    (the released files, sha256-checked), ``np.random.randint`` replaced by a replay of the draws
    our corruption takes from ``seeded_generator("cpu", 5, severity)`` (the stored
    ``<protocol>_draws_<severity>``: photograph, top, left per image), and stores the result as
    ``np.uint8`` does. The seed's draws use each of the five photographs in both protocols.
    """
    data = np.load(RELEASED)
    x = _tensor(data[f"{protocol}_images"])
    for severity in range(1, 6):
        op = create_corruption("frost", severity, protocol)
        out = op(x, seeded_generator("cpu", 5, severity))
        ours, released = to_uint8(out).astype(int), data[f"{protocol}_{severity}"].astype(int)
        differ = int((ours != released).sum())
        assert differ == 0, (
            f"frost {protocol} {severity}: {differ} of {ours.size} values differ from the "
            f"released generator (max {np.abs(ours - released).max()})"
        )


def test_draws_match_the_released_ranges():
    # The stored draws are the ones the released code was fed; ours are the same.
    data = np.load(RELEASED)
    for protocol, side in (("cifar10c", 32), ("imagenetc", 224)):
        n = len(data[f"{protocol}_images"])
        for severity in range(1, 6):
            op = create_corruption("frost", severity, protocol)
            got = op.crop_draws(n, side, side, seeded_generator("cpu", 5, severity), "cpu")
            assert np.array_equal(np.array(got), data[f"{protocol}_draws_{severity}"])


def test_photographs_are_the_released_files_cropped_by_each_protocol():
    folder = weather.frost_photo_dir()
    assert folder is not None, "imagecorruptions (a dependency) ships the frost photographs"
    for name, sha in weather.FROST_PHOTOGRAPHS.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == sha, name
    assert weather.frost_source().startswith("photographs (imagecorruptions 1.")
    full = [p.shape for p in weather.frost_photographs("imagenetc")]
    small = [p.shape for p in weather.frost_photographs("cifar10c")]
    # (rows, columns) of frost1-5 at full size and after cv2.resize(fx=0.2, fy=0.2).
    assert [s[:2] for s in full] == [(600, 900), (315, 560), (315, 560), (350, 527), (495, 660)]
    assert [s[:2] for s in small] == [(120, 180), (63, 112), (63, 112), (70, 105), (99, 132)]
    big, little = (
        weather.frost_photographs("imagenetc")[3],
        weather.frost_photographs("cifar10c")[3],
    )
    assert np.array_equal(little, big[2::5, 2::5][:70, :105])


def test_a_photograph_of_other_bytes_is_refused(tmp_path, monkeypatch):
    folder = weather.frost_photo_dir()
    for name in weather.FROST_PHOTOGRAPHS:
        shutil.copy(folder / name, tmp_path / name)
    with open(tmp_path / "frost4.jpg", "ab") as f:
        f.write(b"\0")
    monkeypatch.setattr(weather, "frost_photo_dir", lambda: tmp_path)
    _clear_caches()
    try:
        with pytest.raises(ValueError, match=r"frost4\.jpg: not the released frost photograph"):
            create_corruption("frost", 1)(torch.rand(1, 3, 32, 32))
    finally:
        _clear_caches()


def test_images_larger_than_a_photograph_get_it_enlarged():
    # At 64 px the CIFAR-10-C photographs 2 and 3 (63 rows) are too small: they are enlarged.
    shapes = [b.shape[:2] for b in weather.frost_bank("cifar10c", 64, 64)]
    assert all(r > 64 and c > 64 for r, c in shapes) and shapes[0] == (120, 180)
    out = create_corruption("frost", 3)(torch.rand(4, 3, 64, 64), seeded_generator("cpu", 1))
    assert out.shape == (4, 3, 64, 64) and 0 <= float(out.min()) <= float(out.max()) <= 1


def test_without_the_package_a_procedural_fallback_says_so(no_photographs, caplog):
    with caplog.at_level(logging.WARNING, logger="robustkd.corruptions.weather"):
        out = create_corruption("frost", 2)(torch.rand(2, 3, 32, 32), seeded_generator("cpu", 0))
    assert "imagecorruptions" in caplog.text and "procedural" in caplog.text
    assert out.shape == (2, 3, 32, 32)
    assert weather.frost_source() == "procedural (imagecorruptions not installed)"
    bank = weather.frost_bank("cifar10c", 32, 32)
    assert len(bank) == 5 and bank[0].shape == (160, 160, 3) and bank[0].dtype == np.uint8


def _corrupted_set_provenance(tmp_path, name):
    root = tmp_path / name / "data"
    rng = np.random.default_rng(0)
    with PreparedWriter(root, ["a", "b"], provenance={"rule": "test"}) as w:
        w.add_array("train", np.stack([draw_image(rng, i % 2, 2, 32) for i in range(2)]), [0, 1])
        w.add_array("test", np.stack([draw_image(rng, i % 2, 2, 32) for i in range(2)]), [0, 1])
    out = tmp_path / name / "c"
    corrupt_testset_job(
        data_dir=root,
        corruptions=["frost"],
        severities=[1],
        seed=0,
        outputs={"frost": out / "frost.npy"},
        labels_out=out / "labels.npy",
    )
    return json.loads((out / "provenance.json").read_text())


def test_the_corrupted_set_records_its_frost_source(tmp_path, monkeypatch):
    rec = _corrupted_set_provenance(tmp_path, "photographs")
    assert rec["frost_source"].startswith("photographs (imagecorruptions 1.")
    monkeypatch.setattr(weather, "frost_photo_dir", lambda: None)
    _clear_caches()
    try:
        rec = _corrupted_set_provenance(tmp_path, "fallback")
    finally:
        _clear_caches()
    assert rec["frost_source"] == "procedural (imagecorruptions not installed)"


def test_report_notes_frost_only_when_it_was_not_the_photographs():
    from robustkd.craft.report.runs import Runs, corruption_label, frost_notes

    def runs(source, corruptions=("frost", "fog")):
        return Runs([], {}, {}, {}, "", [], [], list(corruptions), [1], source)

    assert corruption_label("frost") == "Frost"
    assert frost_notes(runs("photographs (imagecorruptions 1.1.2)")) == []
    assert frost_notes(runs(None, ["fog"])) == []
    (note,) = frost_notes(runs("procedural (imagecorruptions not installed)"))
    assert "procedural textures" in note and "not comparable" in note
    (note,) = frost_notes(runs(None))
    assert "does not record" in note
