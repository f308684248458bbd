"""CIFAR-10/100 and STL-10: miniature writers in the official format, prepare via torchvision."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from robustkd.data import cifar, stl10, synthetic
from robustkd.data.archives import md5sum, read_checksum_file
from robustkd.data.prepared import PreparedDataset
from robustkd.data.registry import get_dataset
from robustkd.errors import ConfigError, DataError

# name: (archive, folder inside it, official class names, image side, train/test per class)
SPECS = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py", cifar.CIFAR10_CLASSES, 32, 3, 2),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", cifar.CIFAR100_CLASSES, 32, 2, 1),
    "stl10": ("stl10_binary.tar.gz", "stl10_binary", stl10.STL10_CLASSES, 96, 2, 1),
}
NAMES = list(SPECS)
SEED = 7


def write_raw(name: str, raw: Path, seed: int = SEED) -> Path:
    """Write the miniature of ``name`` into ``raw`` and return its archive."""
    _, _, _, _, n_train, n_test = SPECS[name]
    files = get_dataset(name).write_demo_raw(
        raw, seed=seed, train_per_class=n_train, test_per_class=n_test
    )
    archive = raw / SPECS[name][0]
    assert files == [archive, raw / "MD5SUMS"]
    return archive


def prepare(name: str, raw: Path, out: Path, md5: str | None = None, **kw) -> Path:
    """Prepare with the archive's md5 overridden (by default: the one MD5SUMS lists)."""
    archive = SPECS[name][0]
    if md5 is None:
        md5 = read_checksum_file(raw / "MD5SUMS")[archive]
    return get_dataset(name).prepare(raw, out, md5_overrides={archive: md5}, **kw)


def assert_nothing_left(out: Path) -> None:
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir()), list(out.parent.iterdir())


def remake(archive: Path, member: str, data: bytes | None) -> str:
    """Rewrite ``archive`` with ``member`` replaced by ``data`` (None: dropped); return its md5."""
    with tarfile.open(archive) as tf:
        entries = [(m, tf.extractfile(m).read() if m.isfile() else None) for m in tf.getmembers()]
    with tarfile.open(archive, "w:gz") as tf:
        for info, content in entries:
            if info.name.endswith("/" + member):
                if data is None:
                    continue
                content, info.size = data, len(data)
            tf.addfile(info, None if content is None else io.BytesIO(content))
    return md5sum(archive)


@pytest.mark.parametrize("name", NAMES)
def test_prepare_miniature(name: str, tmp_path: Path) -> None:
    archive_name, _, classes, size, n_train, n_test = SPECS[name]
    archive = write_raw(name, tmp_path / "raw")
    out = prepare(name, tmp_path / "raw", tmp_path / "prepared" / name)

    ds = PreparedDataset(out)
    assert ds.classes == list(classes)
    assert (out / "classes.txt").read_text().splitlines() == list(classes)
    assert ds.splits == ["train", "test"]
    for split, per_class in (("train", n_train), ("test", n_test)):
        labels = ds.labels(split)
        assert len(labels) == len(classes) * per_class
        assert np.array_equal(
            np.bincount(labels, minlength=len(classes)), np.full(len(classes), per_class)
        )
    assert np.asarray(ds.image(0)).shape == (size, size, 3)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["rule"] == f"prepare_{name}"
    assert list(prov["inputs"]) == [str(archive)]
    assert prov["source"] == str(archive)
    assert prov["archive_md5"] == md5sum(archive)
    # The temporary extraction folder is gone: only the prepared dataset remains.
    assert [p.name for p in out.parent.iterdir()] == [name]


@pytest.mark.parametrize("name", NAMES)
def test_images_round_trip_with_their_labels(name: str, tmp_path: Path) -> None:
    """Each prepared image is exactly what the writer drew for its label and position."""
    _, _, classes, size, _, _ = SPECS[name]
    write_raw(name, tmp_path / "raw")
    ds = PreparedDataset(prepare(name, tmp_path / "raw", tmp_path / "prepared" / name))
    for split_id, split in enumerate(("train", "test")):
        images, labels = ds.load_split(split)
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            rng = np.random.default_rng((SEED, split_id, i))
            expected = synthetic.draw_image(rng, int(label), len(classes), size)
            assert np.array_equal(image, expected), (split, i, label)


def _pattern(rng: np.random.Generator, label: int, n_classes: int, size: int) -> np.ndarray:
    """An asymmetric image: bright top row, red value encoding the label, green the column."""
    image = np.zeros((size, size, 3), np.uint8)
    image[0] = 255
    image[1:, :, 0] = 10 + 2 * label
    image[1:, :, 1] = np.arange(size)[None, :] % 200
    return image


@pytest.mark.parametrize("name", NAMES)
def test_orientation_and_labels_survive(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A top row (not a left column) comes back on top; STL-10 stores images transposed."""
    _, _, classes, size, _, _ = SPECS[name]
    monkeypatch.setattr(synthetic, "draw_image", _pattern)
    write_raw(name, tmp_path / "raw")
    ds = PreparedDataset(prepare(name, tmp_path / "raw", tmp_path / "prepared" / name))
    for row, r in enumerate(ds.rows):
        image = ds.image(row)
        assert image.getpixel((size - 1, 0)) == (255, 255, 255)  # (x, y): top-right is bright
        assert image.getpixel((0, size - 1)) == (10 + 2 * r.label, 0, 0)  # bottom-left is not
        assert np.array_equal(np.asarray(image), _pattern(None, r.label, len(classes), size))


def test_cifar_pickles_match_the_official_layout(tmp_path: Path) -> None:
    """Read as the dataset page says (encoding='bytes'): bytes keys, (N, 3072) uint8 rows."""
    archive = write_raw("cifar10", tmp_path)
    with tarfile.open(archive) as tf:
        names = sorted(m.name for m in tf.getmembers())
        batch = pickle.load(tf.extractfile("cifar-10-batches-py/data_batch_1"), encoding="bytes")
        meta = pickle.load(tf.extractfile("cifar-10-batches-py/batches.meta"), encoding="bytes")
    assert names == [
        "cifar-10-batches-py",
        *(
            f"cifar-10-batches-py/{f}"
            for f in (
                "batches.meta",
                "data_batch_1",
                "data_batch_2",
                "data_batch_3",
                "data_batch_4",
                "data_batch_5",
                "test_batch",
            )
        ),
    ]
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (6, 3072)
    assert meta[b"label_names"] == [c.encode() for c in cifar.CIFAR10_CLASSES]

    archive = write_raw("cifar100", tmp_path)
    with tarfile.open(archive) as tf:
        train = pickle.load(tf.extractfile("cifar-100-python/train"), encoding="bytes")
        meta = pickle.load(tf.extractfile("cifar-100-python/meta"), encoding="bytes")
    assert meta[b"fine_label_names"] == sorted(meta[b"fine_label_names"])
    assert len(meta[b"coarse_label_names"]) == 20
    fine = [meta[b"fine_label_names"][k] for k in train[b"fine_labels"]]
    coarse = [meta[b"coarse_label_names"][k] for k in train[b"coarse_labels"]]
    pairs = set(zip(fine, coarse, strict=True))
    assert len(pairs) == 100  # every fine class present, each in exactly one superclass
    assert {
        (b"oak_tree", b"trees"),
        (b"apple", b"fruit_and_vegetables"),
        (b"lawn_mower", b"vehicles_2"),
    } <= pairs
    assert all(sum(c == sc for _, c in pairs) == 5 for sc in meta[b"coarse_label_names"])


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_bytes(name: str, tmp_path: Path) -> None:
    a = write_raw(name, tmp_path / "a", seed=3).read_bytes()
    b = write_raw(name, tmp_path / "b", seed=3).read_bytes()
    c = write_raw(name, tmp_path / "c", seed=4).read_bytes()
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", NAMES)
def test_md5_mismatch(name: str, tmp_path: Path) -> None:
    write_raw(name, tmp_path / "raw")
    out = tmp_path / "prepared" / name
    with pytest.raises(DataError, match="md5 mismatch") as err:
        prepare(name, tmp_path / "raw", out, md5="0" * 32)
    assert SPECS[name][0] in str(err.value)
    assert_nothing_left(out)


@pytest.mark.parametrize("name", NAMES)
def test_official_md5_rejects_the_miniature(name: str, tmp_path: Path) -> None:
    write_raw(name, tmp_path / "raw")
    out = tmp_path / "prepared" / name
    with pytest.raises(DataError, match="md5 mismatch") as err:
        get_dataset(name).prepare(tmp_path / "raw", out)
    assert SPECS[name][0] in str(err.value)
    assert_nothing_left(out)


@pytest.mark.parametrize("name", NAMES)
def test_truncated_archive(name: str, tmp_path: Path) -> None:
    archive = write_raw(name, tmp_path / "raw")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    out = tmp_path / "prepared" / name
    with pytest.raises(DataError, match="truncated or corrupt") as err:
        prepare(name, tmp_path / "raw", out, md5=md5sum(archive))
    assert archive.name in str(err.value)
    assert_nothing_left(out)


@pytest.mark.parametrize("name", NAMES)
def test_missing_archive(name: str, tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    out = tmp_path / "prepared" / name
    with pytest.raises(DataError, match="not found") as err:
        get_dataset(name).prepare(tmp_path / "raw", out, download=False)
    assert SPECS[name][0] in str(err.value)
    assert_nothing_left(out)


@pytest.mark.parametrize(
    ("name", "member", "data"),
    [
        ("cifar10", "data_batch_1", b"junk" * 100),  # not a pickle
        ("cifar10", "test_batch", pickle.dumps([1, 2, 3])),  # a pickle, but not a batch
        ("cifar10", "data_batch_3", None),  # missing
        ("cifar10", "batches.meta", b"\x80\x02}q\x00(U"),  # cut short
        ("cifar100", "train", b"junk"),
        ("cifar100", "meta", pickle.dumps({"other": 1})),
        ("stl10", "train_X.bin", bytes(3 * 96 * 96 + 5)),  # not a whole number of images
        ("stl10", "test_y.bin", bytes(3)),  # 3 labels for 10 images, and label 0 (-> -1)
        ("stl10", "class_names.txt", None),
    ],
    ids=lambda v: "junk" if isinstance(v, bytes) else "dropped" if v is None else v,
)
def test_corrupt_member(name: str, member: str, data: bytes | None, tmp_path: Path) -> None:
    archive = write_raw(name, tmp_path / "raw")
    md5 = remake(archive, member, data)
    out = tmp_path / "prepared" / name
    with pytest.raises(DataError) as err:
        prepare(name, tmp_path / "raw", out, md5=md5)
    assert f"{SPECS[name][1]}/{member}" in str(err.value)
    assert_nothing_left(out)


def test_stl10_label_outside_classes(tmp_path: Path) -> None:
    archive = write_raw("stl10", tmp_path / "raw")
    md5 = remake(archive, "test_y.bin", bytes([1] * 9 + [11]))  # 1-based: 11 is no class
    with pytest.raises(DataError, match="label 10 outside") as err:
        prepare("stl10", tmp_path / "raw", tmp_path / "prepared" / "stl10", md5=md5)
    assert "test_y.bin" in str(err.value)


@pytest.mark.parametrize("name", ["cifar10", "stl10"])
def test_reuses_an_extracted_folder(name: str, tmp_path: Path) -> None:
    """``root/<folder>`` is read in place; without an override member md5s are official."""
    archive = write_raw(name, tmp_path / "raw")
    md5 = read_checksum_file(tmp_path / "raw" / "MD5SUMS")[archive.name]
    with tarfile.open(archive) as tf:
        tf.extractall(tmp_path / "raw", filter="data")
    archive.unlink()
    folder = tmp_path / "raw" / SPECS[name][1]

    out = tmp_path / "prepared" / name
    with pytest.raises(DataError, match="md5 differs") as err:
        get_dataset(name).prepare(tmp_path / "raw", out)  # torchvision's official member md5s
    assert str(folder) in str(err.value)
    assert_nothing_left(out)

    prepare(name, tmp_path / "raw", out, md5=md5)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["source"] == str(folder) and prov["archive_md5"] is None
    assert PreparedDataset(out).labels("train").size == 10 * SPECS[name][4]


def test_options_and_size_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        cifar.prepare_cifar10(tmp_path, tmp_path / "out", bogus=1)
    with pytest.raises(ValueError, match="32x32"):
        cifar.write_demo_raw_cifar10(tmp_path, seed=0, train_per_class=1, test_per_class=1, size=16)
    with pytest.raises(ValueError, match="96x96"):
        stl10.write_demo_raw_stl10(tmp_path, seed=0, train_per_class=1, test_per_class=1, size=32)


def test_prepare_job_hashes_the_checksum_file_beside_the_raw_archive(tmp_path):
    from robustkd.data.jobs import prepare_job
    from robustkd.provenance import sha256_file

    archive = write_raw("cifar10", tmp_path / "raw")
    sums = tmp_path / "raw" / "MD5SUMS"
    cfg = {"root": str(tmp_path / "raw"), "md5sums": str(sums)}
    out = prepare_job("cifar10", cfg, tmp_path / "out", download=False)
    inputs = json.loads((out / "provenance.json").read_text())["inputs"]
    assert inputs == {str(archive): sha256_file(archive), str(sums): sha256_file(sums)}
