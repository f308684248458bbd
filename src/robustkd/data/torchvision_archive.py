"""Datasets shipped as one official archive that a torchvision reader reads: CIFAR, STL-10.

:class:`TorchvisionArchive` holds what these formats share. ``prepare`` verifies the archive
(or reuses an already extracted folder), reads it with the torchvision class, turns the
reader's exceptions into a :class:`~robustkd.errors.DataError` that names the offending member
file, checks the labels and writes the prepared dataset (splits ``train`` and ``test``, packed
arrays). ``write_demo_raw`` draws the miniature's splits (:func:`robustkd.data.miniature.
draw_split`) and packs them into the official archive with an ``MD5SUMS``. A subclass per
format (:mod:`robustkd.data.cifar`, :mod:`robustkd.data.stl10`) says how to open a split,
check a member file, read images and labels, and lay the archive's files out.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from robustkd.data.archives import extract_archive, fetch_file
from robustkd.data.miniature import TEST, TRAIN, draw_split, write_md5sums, write_tar_gz
from robustkd.data.prepared import PreparedWriter
from robustkd.errors import ConfigError, DataError

__all__ = ["RawFolder", "Split", "TorchvisionArchive"]

Split = tuple[np.ndarray, np.ndarray]  # uint8 (N, H, W, 3) images, int64 (N,) labels


@dataclass(frozen=True)
class RawFolder:
    """Where the raw files are: ``folder/<base_folder>/...``, extracted from ``source``."""

    folder: Path
    source: Path  # the archive, or the reused extracted folder
    archive_md5: str | None  # the md5 the archive was verified against (None: reused folder)

    def shown(self, base_folder: str, member: str) -> str:
        """How messages name a member file: ``<archive>:<folder>/<member>`` or its path."""
        if self.archive_md5 is None:
            return str(self.folder / base_folder / member)
        return f"{self.source}:{base_folder}/{member}"


@dataclass(frozen=True)
class TorchvisionArchive:
    """One dataset in an official archive read by a ``torchvision.datasets`` class.

    Attributes:
        name: The dataset's name (``cifar10``, ``cifar100``, ``stl10``).
        reader: The ``torchvision.datasets`` class that reads it (``CIFAR10``, ...).
        archive: The archive's file name in ``root``.
        md5: The archive's official md5.
        url: The archive's official URL.
        base_folder: The folder inside the archive (also accepted already extracted).
        classes: The official class names, in label order.
        native_size: The format's only image side in pixels.
        optional_members: Member files that need not exist when the archive md5 was
            overridden (the miniature STL-10 has no ``unlabeled_X.bin``).
    """

    name: str
    reader: str
    archive: str
    md5: str
    url: str
    base_folder: str
    classes: tuple[str, ...]
    native_size: int
    optional_members: ClassVar[frozenset[str]] = frozenset()

    # --- the format: each subclass says these -------------------------------------------------

    def open_split(self, reader: type, folder: str, split: str) -> Any:
        """Open ``split`` (``train`` or ``test``) with the torchvision class ``reader``."""
        raise NotImplementedError

    def check_member(self, path: Path) -> None:
        """Raise (any exception) when a member file is malformed; used to name it in errors."""
        raise NotImplementedError

    def read_classes(self, train: Any, raw: RawFolder) -> list[str]:
        """The class names the opened training split reports.

        Raises:
            DataError: The archive names no classes.
        """
        raise NotImplementedError

    def read_split(self, reader: type, ds: Any, split: str, raw: RawFolder) -> tuple[Split, str]:
        """NHWC images and int64 labels of the opened ``ds``, and the member files holding them."""
        raise NotImplementedError

    def members(self, seed: int, train: Split, test: Split) -> dict[str, bytes]:
        """The official archive's files (name inside ``base_folder`` -> bytes) for a miniature."""
        raise NotImplementedError

    # --- shared by every format ---------------------------------------------------------------

    def write_demo_raw(
        self,
        out_dir: Path,
        *,
        seed: int,
        train_per_class: int,
        test_per_class: int,
        size: int | None = None,
    ) -> list[Path]:
        """Write a miniature of the official archive (format: the subclass) and ``MD5SUMS``.

        Sample ``i`` of split ``s`` (0 train, 1 test) is ``synthetic.draw_image(
        np.random.default_rng((seed, s, i)), label, n_classes, native_size)``; the label order
        is shuffled by ``np.random.default_rng((seed, s))`` (:func:`~robustkd.data.miniature.
        draw_split`).

        Args:
            out_dir: Folder to write into (created if needed).
            seed: Seed of every random choice; the same seed gives byte-identical files.
            train_per_class: Training images per class.
            test_per_class: Test images per class.
            size: Image side; must be the format's only size (default: that size).

        Returns:
            The archive and the ``MD5SUMS`` file.

        Raises:
            ValueError: ``size`` is not the format's.
        """
        native = self.native_size
        if size is not None and size != native:
            raise ValueError(
                f"{self.name}: the official format stores {native}x{native} images, got size={size}"
            )
        n = len(self.classes)
        members = self.members(
            seed,
            draw_split(seed, TRAIN, n, train_per_class, native),
            draw_split(seed, TEST, n, test_per_class, native),
        )
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        archive = write_tar_gz(out_dir / self.archive, self.base_folder, members)
        return [archive, write_md5sums(out_dir, [archive])]

    def prepare(
        self,
        root: Path,
        out_dir: Path,
        *,
        download: bool = False,
        md5_overrides: Mapping[str, str] | None = None,
        provenance: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Path:
        """Prepare from ``root/<archive>`` (or its already extracted ``root/<base_folder>``).

        Reads with the torchvision class; its member checksums are enforced unless the archive
        md5 was overridden (then members are only checked for existence).

        Args:
            root: Folder holding the archive or its extracted folder.
            out_dir: The prepared dataset folder to write (splits ``train`` and ``test``).
            download: Download the archive from the official URL when it is missing.
            md5_overrides: ``{archive name: md5}`` to expect instead of the official md5.
            provenance: Arguments for the provenance record (``rule``, ``inputs``, ``config``,
                ...); ``inputs`` defaults to the archive.
            **options: None are accepted.

        Returns:
            ``out_dir``.

        Raises:
            DataError: The archive or a member file is missing, corrupt or malformed (the
                message names the file); nothing is left at ``out_dir`` then.
            ConfigError: Unknown options.
        """
        from torchvision import datasets

        if options:
            raise ConfigError(f"prepare_{self.name}: unknown options {sorted(options)}")
        root, out_dir = Path(root), Path(out_dir)
        md5 = (md5_overrides or {}).get(self.archive, self.md5)
        reader = getattr(datasets, self.reader)
        if md5 != self.md5:
            reader = _without_member_md5s(reader, self.optional_members)
        with _raw_folder(root, out_dir, self, md5, download) as raw:
            try:
                sets = {s: self.open_split(reader, str(raw.folder), s) for s in ("train", "test")}
            except Exception as exc:  # unpickling junk or reshaping a truncated file: any type
                raise _member_error(reader, raw, self.check_member, exc) from exc
            classes = self.read_classes(sets["train"], raw)
            splits = {}
            for split, ds in sets.items():
                (images, labels), where = self.read_split(reader, ds, split, raw)
                _check_labels(labels, len(images), len(classes), where)
                splits[split] = (images, labels)
        return _write_prepared(self.name, out_dir, classes, splits, raw, provenance)


@contextmanager
def _raw_folder(
    root: Path, out_dir: Path, spec: TorchvisionArchive, md5: str, download: bool
) -> Iterator[RawFolder]:
    """Yield the raw files: ``root/base_folder`` when it exists, else the extracted archive.

    The archive ``root/<archive>`` is fetched, verified and extracted into
    ``.<out_dir name>.raw`` beside ``out_dir``, which is removed on exit.
    """
    if (root / spec.base_folder).is_dir():
        yield RawFolder(root, root / spec.base_folder, None)
        return
    archive = fetch_file(root, spec.archive, md5, spec.url, download)
    tmp = out_dir.parent / f".{out_dir.name}.raw"
    try:
        extract_archive(archive, tmp)
        if not (tmp / spec.base_folder).is_dir():
            raise DataError(f"{archive}: no folder {spec.base_folder!r} inside the archive")
        yield RawFolder(tmp, archive, md5)
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


def _member_error(
    cls: type, raw: RawFolder, check: Callable[[Path], None], exc: Exception
) -> DataError:
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


def _write_prepared(
    name: str,
    out_dir: Path,
    classes: list[str],
    splits: Mapping[str, Split],
    raw: RawFolder,
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
