"""RESISC45 and CAMELYON17-WILDS: miniature writers, preparation, labels and bad input."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from robustkd.data import camelyon17, resisc45
from robustkd.data.archives import md5sum, read_checksum_file
from robustkd.data.prepared import PreparedDataset
from robustkd.data.registry import get_dataset
from robustkd.errors import DataError

PER_CLASS = 5  # -> 3 / 1 / 1 images per class (60/20/20 with at least one in val and test)
PPC, PPN = 1, 2  # CAMELYON: patients per center, patches per node


@pytest.fixture(scope="module")
def resisc_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("resisc_raw")
    resisc45.write_demo_raw(raw, seed=0, per_class=PER_CLASS, size=32)
    return raw


@pytest.fixture(scope="module")
def camelyon_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("camelyon_raw")
    camelyon17.write_demo_raw(raw, seed=0, patients_per_center=PPC, patches_per_node=PPN, size=32)
    return raw


def _copy(raw: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(raw, tmp_path / "raw"))


def _solid_jpeg(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), colour).save(path, "JPEG", quality=95)


def _expect_error(prepare, root: Path, out: Path, *needles: str, **kwargs) -> None:
    with pytest.raises(DataError) as info:
        prepare(root, out, **kwargs)
    for needle in needles:
        assert needle in str(info.value)
    assert not out.exists()


# --------------------------------------------------------------------------- RESISC45


def test_registered() -> None:
    assert get_dataset("resisc45").prepare is resisc45.prepare
    assert get_dataset("camelyon17").write_demo_raw is camelyon17.write_demo_raw


def test_resisc_prepare_counts_and_classes(resisc_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "resisc45"
    sums = read_checksum_file(resisc_raw / "MD5SUMS")
    assert set(sums) == {"NWPU-RESISC45.zip", *(f"resisc45-{s}.txt" for s in resisc45.SPLITS)}
    assert resisc45.prepare(resisc_raw, out, md5_overrides=sums) == out
    ds = PreparedDataset(out)
    assert ds.classes == sorted(resisc45.CLASSES) == list(resisc45.CLASSES)
    assert len(ds.classes) == 45
    assert ds.splits == ["train", "val", "test"]
    for split, n in {"train": 3, "val": 1, "test": 1}.items():
        assert np.bincount(ds.labels(split), minlength=45).tolist() == [n] * 45
    for row in ds.rows:  # every image sits in the folder of its label's class
        cls, fname = row.path.split("/")[-2:]
        assert ds.classes[row.label] == cls and fname.rsplit("_", 1)[0] == cls
    assert ds.image(0).size == (32, 32)
    prov = json.loads((out / "provenance.json").read_text())
    assert any(k.endswith("NWPU-RESISC45.zip") for k in prov["inputs"])
    # The raw folder stays (the images link into it) and is reused by a second run.
    member = next((tmp_path / "data" / "resisc45.raw" / "NWPU-RESISC45" / "airplane").iterdir())
    inode = member.stat().st_ino
    resisc45.prepare(resisc_raw, out, md5_overrides=sums)
    assert member.stat().st_ino == inode
    assert len(PreparedDataset(out).rows) == 45 * PER_CLASS


def test_resisc_labels_round_trip_handmade(tmp_path: Path) -> None:
    # Hand-made extracted tree (no zip): class k's images have a unique solid colour.
    colours = {"river": (220, 30, 30), "airplane": (30, 220, 30), "beach": (30, 30, 220)}
    root = tmp_path / "root"
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for cls, colour in colours.items():
        for i, split in enumerate(lists, 1):
            _solid_jpeg(root / "NWPU-RESISC45" / cls / f"{cls}_{i:03d}.jpg", colour)
            lists[split].append(f"{cls}_{i:03d}.jpg")
    for split, names in lists.items():
        (root / f"resisc45-{split}.txt").write_text("".join(f"{n}\n" for n in names))
    sums = {f"resisc45-{s}.txt": md5sum(root / f"resisc45-{s}.txt") for s in lists}
    out = tmp_path / "data" / "resisc45"
    resisc45.prepare(root, out, md5_overrides=sums)
    ds = PreparedDataset(out)
    assert ds.classes == ["airplane", "beach", "river"]
    for split in lists:
        seen = []
        for image, label in ds.iter_split(split):
            mean = np.asarray(image, dtype=float).reshape(-1, 3).mean(0)
            assert np.abs(mean - colours[ds.classes[label]]).max() < 8
            seen.append(label)
        assert sorted(seen) == [0, 1, 2]
    assert not (tmp_path / "data" / "resisc45.raw").exists()  # used in place, not extracted


def test_resisc_zip_deterministic(tmp_path: Path) -> None:
    def write(name: str, seed: int) -> Path:
        resisc45.write_demo_raw(tmp_path / name, seed=seed, per_class=3, size=16)
        return tmp_path / name

    a, b, c = write("a", 7), write("b", 7), write("c", 8)
    for name in ("NWPU-RESISC45.zip", "resisc45-train.txt", "resisc45-val.txt", "MD5SUMS"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "NWPU-RESISC45.zip").read_bytes() != (c / "NWPU-RESISC45.zip").read_bytes()
    with zipfile.ZipFile(a / "NWPU-RESISC45.zip") as zf:
        names = zf.namelist()
    assert len(names) == 45 * 3
    assert "NWPU-RESISC45/airplane/airplane_001.jpg" in names
    assert "NWPU-RESISC45/wetland/wetland_003.jpg" in names


def test_resisc_zip_md5_mismatch(resisc_raw: Path, tmp_path: Path) -> None:
    sums = {**read_checksum_file(resisc_raw / "MD5SUMS"), "NWPU-RESISC45.zip": "0" * 32}
    _expect_error(
        resisc45.prepare,
        resisc_raw,
        tmp_path / "out",
        "NWPU-RESISC45.zip",
        "md5",
        md5_overrides=sums,
    )


def test_resisc_official_md5_by_default(resisc_raw: Path, tmp_path: Path) -> None:
    _expect_error(resisc45.prepare, resisc_raw, tmp_path / "out", "resisc45-train.txt", "md5")


def test_resisc_truncated_zip(resisc_raw: Path, tmp_path: Path) -> None:
    raw = _copy(resisc_raw, tmp_path)
    zpath = raw / "NWPU-RESISC45.zip"
    zpath.write_bytes(zpath.read_bytes()[: zpath.stat().st_size // 2])
    sums = {**read_checksum_file(raw / "MD5SUMS"), "NWPU-RESISC45.zip": md5sum(zpath)}
    _expect_error(resisc45.prepare, raw, tmp_path / "out", "NWPU-RESISC45.zip", md5_overrides=sums)


def test_resisc_zip_member_escaping(resisc_raw: Path, tmp_path: Path) -> None:
    raw = _copy(resisc_raw, tmp_path)
    zpath = raw / "NWPU-RESISC45.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("NWPU-RESISC45/airplane/airplane_001.jpg", b"x")
        zf.writestr("../evil.jpg", b"x")
    sums = {**read_checksum_file(raw / "MD5SUMS"), "NWPU-RESISC45.zip": md5sum(zpath)}
    out = tmp_path / "data" / "resisc45"
    _expect_error(
        resisc45.prepare, raw, out, "NWPU-RESISC45.zip", "../evil.jpg", md5_overrides=sums
    )
    assert not (tmp_path / "data" / "evil.jpg").exists()
    assert not (tmp_path / "data" / "resisc45.raw").exists()


def test_resisc_split_list_names_missing_image(resisc_raw: Path, tmp_path: Path) -> None:
    raw = _copy(resisc_raw, tmp_path)
    lst = raw / "resisc45-test.txt"
    lst.write_text(lst.read_text() + "airplane_999.jpg\n")
    sums = {**read_checksum_file(raw / "MD5SUMS"), "resisc45-test.txt": md5sum(lst)}
    _expect_error(
        resisc45.prepare,
        raw,
        tmp_path / "out",
        "resisc45-test.txt",
        "airplane_999.jpg",
        md5_overrides=sums,
    )


def test_resisc_unreadable_image(resisc_raw: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in resisc45.OFFICIAL_MD5:
        if name.endswith(".txt"):
            shutil.copy(resisc_raw / name, root / name)
    with zipfile.ZipFile(resisc_raw / "NWPU-RESISC45.zip") as zf:
        zf.extractall(root)  # the user extracted the zip into root already
    victim = (root / "resisc45-test.txt").read_text().split()[0]
    (root / "NWPU-RESISC45" / victim.rsplit("_", 1)[0] / victim).write_bytes(b"not a jpeg" * 9)
    _expect_error(
        resisc45.prepare,
        root,
        tmp_path / "out",
        victim,
        md5_overrides=read_checksum_file(resisc_raw / "MD5SUMS"),
    )


# --------------------------------------------------------------------------- CAMELYON17

_PATCH_RE = re.compile(r"patch_patient_(\d+)_node_(\d+)_x_(\d+)_y_(\d+)\.png$")


def test_camelyon_prepare_counts_and_centers(camelyon_raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "data" / "camelyon17"
    sums = read_checksum_file(camelyon_raw / "MD5SUMS")
    assert set(sums) == {"camelyon17_v1.0/metadata.csv"}
    camelyon17.prepare(camelyon_raw, out, md5_overrides=sums)
    ds = PreparedDataset(out)
    assert ds.classes == ["normal", "tumor"]
    assert ds.splits == ["train", "id_val", "val", "test"]
    per_center = PPC * 5 * PPN
    n_id_val = max(1, round(0.1 * per_center))
    expected = {
        "train": 3 * (per_center - n_id_val),
        "id_val": 3 * n_id_val,
        "val": per_center,
        "test": per_center,
    }
    assert {s: len(ds.indices(s)) for s in ds.splits} == expected

    meta = pd.read_csv(camelyon_raw / "camelyon17_v1.0" / "metadata.csv", index_col=0)
    assert meta.index.name is None or meta.index.name.startswith("Unnamed")
    by_key = {
        tuple(r[:4]): r
        for r in meta[
            ["patient", "node", "x_coord", "y_coord", "tumor", "center", "split"]
        ].itertuples(index=False)
    }
    assert len(by_key) == len(meta) == len(ds.rows)
    for row in ds.rows:
        rec = by_key[tuple(int(v) for v in _PATCH_RE.search(row.path).groups())]
        assert row.label == rec.tumor
        if row.split == "val":
            assert rec.center == 1
        elif row.split == "test":
            assert rec.center == 2
        else:
            assert rec.center in (0, 3, 4)
            assert rec.split == (0 if row.split == "train" else 1)
    for center in range(5):  # tumour labels balanced within each center
        assert meta.loc[meta["center"] == center, "tumor"].sum() == per_center // 2
    assert (meta[["x_coord", "y_coord"]] % 96 == 0).all().all()
    assert ds.image(0).size == (32, 32)
    prov = json.loads((out / "provenance.json").read_text())
    assert any(k.endswith("metadata.csv") for k in prov["inputs"])


def test_camelyon_demo_deterministic(tmp_path: Path) -> None:
    for name in ("a", "b"):
        camelyon17.write_demo_raw(
            tmp_path / name, seed=5, patients_per_center=1, patches_per_node=1, size=8
        )
    a, b = (sorted((tmp_path / n).rglob("*")) for n in ("a", "b"))
    assert [p.relative_to(tmp_path / "a") for p in a] == [p.relative_to(tmp_path / "b") for p in b]
    assert all(p.read_bytes() == q.read_bytes() for p, q in zip(a, b, strict=True) if p.is_file())


def _handmade_camelyon(folder: Path) -> dict[str, int]:
    """A tiny release where tumour patches are red and normal ones blue."""
    rows = [  # patient, node, x, y, tumor, slide, center, split
        (0, 0, 0, 0, 1, 0, 0, 0),
        (0, 1, 96, 0, 0, 1, 0, 1),
        (10, 2, 0, 96, 0, 2, 1, 0),
        (20, 3, 192, 96, 1, 3, 2, 1),
        (30, 4, 0, 0, 0, 4, 3, 0),
        (40, 0, 96, 96, 1, 5, 4, 1),
        (40, 0, 0, 96, 0, 5, 4, 0),
    ]
    folder.mkdir(parents=True)
    (folder / "RELEASE_v1.0.txt").write_text("v1.0\n")
    pd.DataFrame(rows, columns=list(camelyon17.COLUMNS)).to_csv(folder / "metadata.csv")
    for patient, node, x, y, tumor, *_ in rows:
        path = camelyon17.patch_path(folder, patient, node, x, y)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (96, 96), (230, 20, 20) if tumor else (20, 20, 230)).save(path)
    return {"train": 3, "id_val": 2, "val": 1, "test": 1}


def test_camelyon_labels_round_trip_handmade(tmp_path: Path) -> None:
    folder = tmp_path / "camelyon17_v1.0"
    expected = _handmade_camelyon(folder)
    out = tmp_path / "out"
    camelyon17.prepare(folder, out)  # root may be the release folder itself
    ds = PreparedDataset(out)
    assert {s: len(ds.indices(s)) for s in ds.splits} == expected
    for split in ds.splits:
        for image, label in ds.iter_split(split):
            red, _, blue = np.asarray(image, dtype=int)[0, 0]
            assert label == (1 if red > blue else 0)
    assert ds.labels("train").tolist() == [1, 0, 0] and ds.labels("test").tolist() == [1]


def test_camelyon_missing_patch(camelyon_raw: Path, tmp_path: Path) -> None:
    raw = _copy(camelyon_raw, tmp_path)
    meta = pd.read_csv(raw / "camelyon17_v1.0" / "metadata.csv", index_col=0)
    r = meta[meta["center"] == 2].iloc[-1]
    victim = camelyon17.patch_path(raw / "camelyon17_v1.0", r.patient, r.node, r.x_coord, r.y_coord)
    victim.unlink()
    _expect_error(
        camelyon17.prepare,
        raw,
        tmp_path / "out",
        victim.name,
        md5_overrides=read_checksum_file(raw / "MD5SUMS"),
    )


def test_camelyon_missing_metadata_column(camelyon_raw: Path, tmp_path: Path) -> None:
    raw = _copy(camelyon_raw, tmp_path)
    path = raw / "camelyon17_v1.0" / "metadata.csv"
    pd.read_csv(path, index_col=0).drop(columns="center").to_csv(path)
    _expect_error(camelyon17.prepare, raw, tmp_path / "out", "metadata.csv", "'center'")


def test_camelyon_metadata_md5_mismatch(camelyon_raw: Path, tmp_path: Path) -> None:
    _expect_error(
        camelyon17.prepare,
        camelyon_raw,
        tmp_path / "out",
        "metadata.csv",
        "md5",
        md5_overrides={"camelyon17_v1.0/metadata.csv": "0" * 32},
    )


def test_camelyon_missing_release_file(camelyon_raw: Path, tmp_path: Path) -> None:
    raw = _copy(camelyon_raw, tmp_path)
    (raw / "camelyon17_v1.0" / "RELEASE_v1.0.txt").unlink()
    _expect_error(camelyon17.prepare, raw, tmp_path / "out", "RELEASE_v1.0.txt")


def test_camelyon_missing_root(tmp_path: Path) -> None:
    _expect_error(
        camelyon17.prepare, tmp_path / "nowhere", tmp_path / "out", "nowhere/camelyon17_v1.0"
    )
