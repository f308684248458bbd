"""CIFAR-10 and CIFAR-100: the official python archives, read with torchvision's readers.

``prepare_*`` verifies ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` (or reuses an
already extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder), reads it with
``torchvision.datasets.CIFAR10`` / ``CIFAR100`` and writes the prepared dataset (splits
``train`` and ``test``, packed arrays). ``write_demo_raw_*`` writes a miniature archive in the
exact official format: Python-2-style pickles of uint8 (N, 3072) row-major CHW rows.

The archive and prepare helpers here are shared with :mod:`robustkd.data.stl10`.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import struct
import tarfile
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustkd.data import synthetic
from robustkd.data.archives import extract_archive, fetch_file
from robustkd.data.demo_raw import write_md5sums
from robustkd.data.prepared import PreparedWriter
from robustkd.data.registry import register_dataset
from robustkd.errors import ConfigError, DataError

__all__ = [
    "CIFAR100_CLASSES",
    "CIFAR100_COARSE_CLASSES",
    "CIFAR100_MD5",
    "CIFAR100_URL",
    "CIFAR10_CLASSES",
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "prepare_cifar10",
    "prepare_cifar100",
    "write_demo_raw_cifar10",
    "write_demo_raw_cifar100",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
# The 20 superclasses in coarse-label order, each with its 5 fine classes.
_CIFAR100_SUPERCLASSES: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE_CLASSES = tuple(_CIFAR100_SUPERCLASSES)
# Fine labels are numbered in alphabetical order of the names, as in the official meta.
CIFAR100_CLASSES = tuple(sorted(f for fs in _CIFAR100_SUPERCLASSES.values() for f in fs))
_FINE_TO_COARSE = {f: c for c, fs in enumerate(_CIFAR100_SUPERCLASSES.values()) for f in fs}

_TRAIN, _TEST = 0, 1  # split ids in the per-sample seeds of the miniature


# --- shared by the CIFAR and STL-10 modules ----------------------------------------------------


def _draw_split(
    seed: int, split_id: int, n_classes: int, per_class: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one split of a miniature: uint8 (N, size, size, 3) images and int64 labels.

    The labels (``per_class`` of each class) are shuffled by ``default_rng((seed, split_id))``;
    sample ``i`` is ``synthetic.draw_image(np.random.default_rng((seed, split_id, i)), label,
    n_classes, size)``, so a test can recompute any sample from its label.
    """
    labels = np.random.default_rng((seed, split_id)).permutation(
        np.repeat(np.arange(n_classes, dtype=np.int64), per_class)
    )
    images = np.empty((len(labels), size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        images[i] = synthetic.draw_image(
            np.random.default_rng((seed, split_id, i)), int(label), n_classes, size
        )
    return images, labels


def _check_native_size(size: int, native: int, dataset: str) -> None:
    if size != native:
        raise ValueError(
            f"{dataset}: the official format stores {native}x{native} images, got size={size}"
        )


def _write_tar_gz(path: Path, folder: str, members: Mapping[str, bytes]) -> Path:
    """Write ``path`` (.tar.gz) holding ``folder/`` and ``folder/<name>`` for each member.

    Timestamps, owners and the gzip header are fixed, so equal members give equal bytes.
    """

    def info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.mtime = kind, mode, size, 0
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with (
            open(tmp, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tf,
        ):
            tf.addfile(info(folder, tarfile.DIRTYPE, 0o755))
            for name, data in members.items():
                tf.addfile(
                    info(f"{folder}/{name}", tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data)
                )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass(frozen=True)
class _Raw:
    """Where the raw files are: ``folder/<base_folder>/...``, extracted from ``source``."""

    folder: Path
    source: Path  # the archive, or the reused extracted folder
    archive_md5: str | None  # the md5 the archive was verified against (None: reused folder)

    def shown(self, base_folder: str, member: str) -> str:
        """How messages name a member file: ``<archive>:<folder>/<member>`` or its path."""
        if self.archive_md5 is None:
            return str(self.folder / base_folder / member)
        return f"{self.source}:{base_folder}/{member}"


@contextmanager
def _raw_folder(
    root: Path, out_dir: Path, filename: str, base_folder: str, md5: str, url: str, download: bool
) -> Iterator[_Raw]:
    """Yield the raw files: ``root/base_folder`` when it exists, else the extracted archive.

    The archive ``root/filename`` is fetched, verified and extracted into
    ``.<out_dir name>.raw`` beside ``out_dir``, which is removed on exit.
    """
    if (root / base_folder).is_dir():
        yield _Raw(root, root / base_folder, None)
        return
    archive = fetch_file(root, filename, md5, url, download)
    tmp = out_dir.parent / f".{out_dir.name}.raw"
    try:
        extract_archive(archive, tmp)
        if not (tmp / base_folder).is_dir():
            raise DataError(f"{archive}: no folder {base_folder!r} inside the archive")
        yield _Raw(tmp, archive, md5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _without_member_md5s(cls: type, drop: Collection[str] = ()) -> type:
    """Subclass a torchvision dataset so that member files are only checked for existence.

    Used when the archive was verified against an md5 override (the miniature), whose members
    cannot match torchvision's official member checksums. ``drop`` removes members from the
    check (the miniature STL-10 has no ``unlabeled_X.bin``).
    """
    attrs: dict[str, Any] = {
        "train_list": [[f, None] for f, _ in cls.train_list if f not in drop],
        "test_list": [[f, None] for f, _ in cls.test_list if f not in drop],
    }
    if isinstance(getattr(cls, "meta", None), dict):
        attrs["meta"] = {**cls.meta, "md5": None}
    return type(f"{cls.__name__}AnyMembers", (cls,), attrs)


def _member_error(cls: type, raw: _Raw, check: Callable[[Path], None], exc: Exception) -> DataError:
    """Turn a torchvision reader's exception into a DataError naming the offending member.

    The member is the first of ``cls``'s files that is missing, has a wrong md5 or fails
    ``check``; torchvision's own message does not say which file it was reading.
    """
    from torchvision.datasets.utils import check_integrity

    members = [*cls.train_list, *cls.test_list]
    if isinstance(getattr(cls, "meta", None), dict):
        members.append([cls.meta["filename"], cls.meta["md5"]])
    why = f"{raw.folder / cls.base_folder}: unreadable"
    for name, md5 in members:
        path, shown = raw.folder / cls.base_folder / name, raw.shown(cls.base_folder, name)
        if not check_integrity(str(path), md5):
            why = f"{shown}: missing" if not path.is_file() else f"{shown}: md5 differs from {md5}"
            break
        try:
            check(path)
        except Exception as err:  # whatever the failure, it names this file
            why = f"{shown}: malformed ({type(err).__name__}: {err})"
            break
    return DataError(f"{why} [torchvision: {type(exc).__name__}: {exc}]")


def _check_labels(labels: np.ndarray, n_images: int, n_classes: int, where: str) -> None:
    if len(labels) != n_images:
        raise DataError(f"{where}: {n_images} images but {len(labels)} labels")
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        raise DataError(f"{where}: label {int(bad[0])} outside [0, {n_classes})")


def _prepare_arrays(
    name: str,
    out_dir: Path,
    classes: list[str],
    splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
    raw: _Raw,
    provenance: Mapping[str, Any] | None,
) -> Path:
    """Write the prepared dataset from NHWC uint8 arrays; the provenance names the source."""
    prov = dict(provenance or {})
    prov.setdefault("rule", f"prepare_{name}")
    if not prov.get("inputs"):
        prov["inputs"] = [raw.source]
    prov["extra"] = {
        **(prov.get("extra") or {}),
        "source": str(raw.source),
        "archive_md5": raw.archive_md5,
    }
    with PreparedWriter(out_dir, classes, provenance=prov) as writer:
        for split, (images, labels) in splits.items():
            writer.add_array(split, images, labels.tolist())
    return out_dir


def _reject_options(name: str, options: Mapping[str, Any]) -> None:
    if options:
        raise ConfigError(f"prepare_{name}: unknown options {sorted(options)}")


# --- CIFAR ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cifar:
    name: str
    torchvision_class: str
    archive: str
    md5: str
    url: str
    base_folder: str
    classes: tuple[str, ...]


_CIFAR10 = _Cifar(
    "cifar10",
    "CIFAR10",
    "cifar-10-python.tar.gz",
    CIFAR10_MD5,
    CIFAR10_URL,
    "cifar-10-batches-py",
    CIFAR10_CLASSES,
)
_CIFAR100 = _Cifar(
    "cifar100",
    "CIFAR100",
    "cifar-100-python.tar.gz",
    CIFAR100_MD5,
    CIFAR100_URL,
    "cifar-100-python",
    CIFAR100_CLASSES,
)


def _py2_pickle(obj: Any) -> bytes:
    """Pickle with protocol 2 writing ``bytes`` as Python 2 ``str``, like the official files.

    Loaded with ``encoding="latin1"`` (torchvision) they become ``str`` keys and names; with
    ``encoding="bytes"`` (the dataset page's recipe) they stay ``bytes`` (``b"data"``).
    """

    class Pickler(pickle._Pickler):  # the pure-Python pickler lets us replace the bytes saver
        dispatch = pickle._Pickler.dispatch.copy()

        def save_py2_str(self, s: bytes) -> None:
            head = (
                pickle.SHORT_BINSTRING + bytes([len(s)])
                if len(s) < 256
                else pickle.BINSTRING + struct.pack("<i", len(s))
            )
            self.write(head + s)
            self.memoize(s)

        dispatch[bytes] = save_py2_str

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _cifar_batch(
    batch_label: str, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]
) -> bytes:
    """One official batch: uint8 (N, 3072) rows of the CHW images, labels as an int list.

    CIFAR-10 names the labels ``labels``; CIFAR-100 ``fine_labels`` plus ``coarse_labels``.
    """
    if len(classes) == 10:
        label_lists = {b"labels": labels.tolist()}
    else:
        coarse = np.array([_FINE_TO_COARSE[c] for c in classes])
        label_lists = {b"fine_labels": labels.tolist(), b"coarse_labels": coarse[labels].tolist()}
    return _py2_pickle(
        {
            b"batch_label": batch_label.encode(),
            **label_lists,
            b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1),
            b"filenames": [f"{classes[k]}_s_{i:06d}.png".encode() for i, k in enumerate(labels)],
        }
    )


def _cifar_members(
    spec: _Cifar, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]
) -> dict[str, bytes]:
    """The files of the official archive's folder."""
    names = [c.encode() for c in spec.classes]
    if spec is _CIFAR10:
        chunks = np.array_split(np.arange(len(train[1])), 5)
        members = {
            f"data_batch_{b}": _cifar_batch(
                f"training batch {b} of 5", train[0][idx], train[1][idx], spec.classes
            )
            for b, idx in enumerate(chunks, 1)
        }
        members["test_batch"] = _cifar_batch("testing batch 1 of 1", *test, spec.classes)
        members["batches.meta"] = _py2_pickle(
            {b"num_cases_per_batch": len(chunks[0]), b"label_names": names, b"num_vis": 3072}
        )
        return members
    members = {
        "train": _cifar_batch("training batch 1 of 1", *train, spec.classes),
        "test": _cifar_batch("testing batch 1 of 1", *test, spec.classes),
    }
    members["meta"] = _py2_pickle(
        {
            b"fine_label_names": names,
            b"coarse_label_names": [c.encode() for c in CIFAR100_COARSE_CLASSES],
        }
    )
    return members


def _write_demo_raw(
    spec: _Cifar,
    out_dir: Path,
    *,
    seed: int,
    train_per_class: int,
    test_per_class: int,
    size: int = 32,
) -> list[Path]:
    _check_native_size(size, 32, spec.name)
    n = len(spec.classes)
    members = _cifar_members(
        spec,
        _draw_split(seed, _TRAIN, n, train_per_class, 32),
        _draw_split(seed, _TEST, n, test_per_class, 32),
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = _write_tar_gz(out_dir / spec.archive, spec.base_folder, members)
    return [archive, write_md5sums(out_dir, [archive])]


def _check_pickle(path: Path) -> None:
    """Raise unless ``path`` unpickles (as torchvision does) to a batch or meta dict."""
    with open(path, "rb") as fh:
        entry = pickle.load(fh, encoding="latin1")
    if not isinstance(entry, dict):
        raise ValueError(f"the pickle holds a {type(entry).__name__}, not a dict")
    if "data" in entry:
        np.asarray(entry["data"]).reshape(-1, 3072)
    elif not {"label_names", "fine_label_names"} & entry.keys():
        raise ValueError("the pickle holds neither images nor label names")


def _prepare(
    spec: _Cifar,
    root: Path,
    out_dir: Path,
    *,
    download: bool,
    md5_overrides: Mapping[str, str] | None,
    provenance: Mapping[str, Any] | None,
) -> Path:
    from torchvision import datasets

    root, out_dir = Path(root), Path(out_dir)
    md5 = (md5_overrides or {}).get(spec.archive, spec.md5)
    cls = getattr(datasets, spec.torchvision_class)
    if md5 != spec.md5:
        cls = _without_member_md5s(cls)
    with _raw_folder(root, out_dir, spec.archive, spec.base_folder, md5, spec.url, download) as raw:
        try:
            sets = {
                split: cls(str(raw.folder), train=split == "train") for split in ("train", "test")
            }
        except Exception as exc:  # unpickling junk can raise almost any exception type
            raise _member_error(cls, raw, _check_pickle, exc) from exc
        classes = [str(c) for c in sets["train"].classes]
        splits = {}
        for split, ds in sets.items():
            labels = np.asarray(ds.targets, dtype=np.int64)
            files = [f for f, _ in (cls.train_list if split == "train" else cls.test_list)]
            where = ", ".join(raw.shown(spec.base_folder, f) for f in files)
            _check_labels(labels, len(ds.data), len(classes), where)
            splits[split] = (ds.data, labels)
    return _prepare_arrays(spec.name, out_dir, classes, splits, raw, provenance)


def write_demo_raw_cifar10(
    out_dir: Path, *, seed: int, train_per_class: int, test_per_class: int, size: int = 32
) -> list[Path]:
    """Write a miniature ``cifar-10-python.tar.gz`` (official format) and ``MD5SUMS``.

    Train images are split over ``data_batch_1..5`` in order. Sample ``i`` of split ``s``
    (0 train, 1 test) is ``synthetic.draw_image(np.random.default_rng((seed, s, i)), label,
    10, 32)``; the label order is shuffled by ``np.random.default_rng((seed, s))``.

    Args:
        out_dir: Folder to write into (created if needed).
        seed: Seed of every random choice; the same seed gives byte-identical files.
        train_per_class: Training images per class.
        test_per_class: Test images per class.
        size: Image side; must be 32, the format's only size.

    Returns:
        The archive and the ``MD5SUMS`` file.

    Raises:
        ValueError: ``size`` is not 32.
    """
    return _write_demo_raw(
        _CIFAR10,
        out_dir,
        seed=seed,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        size=size,
    )


def write_demo_raw_cifar100(
    out_dir: Path, *, seed: int, train_per_class: int, test_per_class: int, size: int = 32
) -> list[Path]:
    """Write a miniature ``cifar-100-python.tar.gz`` (official format) and ``MD5SUMS``.

    Files ``train``, ``test`` (fine and coarse labels) and ``meta``; samples are drawn as in
    :func:`write_demo_raw_cifar10` with 100 classes.

    Args:
        out_dir: Folder to write into (created if needed).
        seed: Seed of every random choice; the same seed gives byte-identical files.
        train_per_class: Training images per class.
        test_per_class: Test images per class.
        size: Image side; must be 32, the format's only size.

    Returns:
        The archive and the ``MD5SUMS`` file.

    Raises:
        ValueError: ``size`` is not 32.
    """
    return _write_demo_raw(
        _CIFAR100,
        out_dir,
        seed=seed,
        train_per_class=train_per_class,
        test_per_class=test_per_class,
        size=size,
    )


def prepare_cifar10(
    root: Path,
    out_dir: Path,
    *,
    download: bool = False,
    md5_overrides: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    **options: Any,
) -> Path:
    """Prepare CIFAR-10 from ``root/cifar-10-python.tar.gz`` (or ``root/cifar-10-batches-py``).

    Reads with ``torchvision.datasets.CIFAR10``; its member checksums are enforced unless the
    archive md5 was overridden (then members are only checked for existence).

    Args:
        root: Folder holding the archive or its extracted folder.
        out_dir: The prepared dataset folder to write (splits ``train`` and ``test``).
        download: Download the archive from the official URL when it is missing.
        md5_overrides: ``{"cifar-10-python.tar.gz": md5}`` to expect instead of the official md5.
        provenance: Arguments for the provenance record (``rule``, ``inputs``, ``config``, ...);
            ``inputs`` defaults to the archive.
        **options: None are accepted.

    Returns:
        ``out_dir``.

    Raises:
        DataError: The archive or a member file is missing, corrupt or malformed (the message
            names the file); nothing is left at ``out_dir`` then.
        ConfigError: Unknown options.
    """
    _reject_options("cifar10", options)
    return _prepare(
        _CIFAR10,
        root,
        out_dir,
        download=download,
        md5_overrides=md5_overrides,
        provenance=provenance,
    )


def prepare_cifar100(
    root: Path,
    out_dir: Path,
    *,
    download: bool = False,
    md5_overrides: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
    **options: Any,
) -> Path:
    """Prepare CIFAR-100 (fine labels) from ``root/cifar-100-python.tar.gz``.

    Reads with ``torchvision.datasets.CIFAR100``; see :func:`prepare_cifar10`.

    Args:
        root: Folder holding the archive or its extracted ``cifar-100-python`` folder.
        out_dir: The prepared dataset folder to write (splits ``train`` and ``test``).
        download: Download the archive from the official URL when it is missing.
        md5_overrides: ``{"cifar-100-python.tar.gz": md5}`` to expect instead of the official.
        provenance: Arguments for the provenance record; ``inputs`` defaults to the archive.
        **options: None are accepted.

    Returns:
        ``out_dir``.

    Raises:
        DataError: The archive or a member file is missing, corrupt or malformed (the message
            names the file); nothing is left at ``out_dir`` then.
        ConfigError: Unknown options.
    """
    _reject_options("cifar100", options)
    return _prepare(
        _CIFAR100,
        root,
        out_dir,
        download=download,
        md5_overrides=md5_overrides,
        provenance=provenance,
    )


register_dataset("cifar10", prepare=prepare_cifar10, write_demo_raw=write_demo_raw_cifar10)
register_dataset("cifar100", prepare=prepare_cifar100, write_demo_raw=write_demo_raw_cifar100)
