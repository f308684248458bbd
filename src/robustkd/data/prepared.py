"""The prepared-dataset contract: one folder per dataset, one reader for all of them.

``results/data/{dataset}/`` holds:

- ``classes.txt``: one class name per line; line ``k`` (0-based) is label ``k``;
- ``manifest.csv``: one row per sample with ``split``, ``label``, ``path`` (relative to the
  folder) and ``index`` (row in a packed ``.npy`` array, or -1 when ``path`` is an image file),
  plus ``sha256`` of the image file (empty for array rows: the array file's hash is in the
  provenance);
- the images (``images/<split>/...`` links or files) or packed arrays (``arrays/<split>.npy``,
  uint8 of shape (N, H, W, 3));
- ``provenance.json``, written last.

:class:`PreparedWriter` builds the folder under a temporary name and renames it only when
everything is written, so a failed preparation leaves no folder that looks complete.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image

from robustkd.atomic import disk_full, make_temp_dir, write_failure, write_json_atomic, writing
from robustkd.data.pixels import check_mode, to_rgb8
from robustkd.errors import DataError
from robustkd.provenance import now_iso, sha256_file, write_provenance
from robustkd.readback import load_array

__all__ = ["MANIFEST_COLUMNS", "PreparedDataset", "PreparedWriter", "check_image"]

MANIFEST_COLUMNS = ("split", "label", "path", "index", "sha256")


def check_image(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Decode an image fully (in JPEG draft mode for speed) and return its (width, height).

    Args:
        path: The image file.

    Returns:
        The image's size.

    Raises:
        DataError: The file cannot be opened or decoded, or its pixel mode has no defined
            8-bit RGB reading (:func:`robustkd.data.pixels.check_mode`); the message names it.
    """
    try:
        with Image.open(path) as im:
            check_mode(im.mode, str(path), im.format)
            size = im.size
            im.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            im.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc
    return size


@dataclass
class _Row:
    split: str
    label: int
    path: str
    index: int
    sha256: str


class PreparedWriter:
    """Build a prepared dataset folder atomically.

    Use as a context manager; on a clean exit the folder is completed and renamed into place,
    on an exception the temporary folder is removed and nothing is left at ``out_dir``.

    Example:
        >>> with PreparedWriter(out, classes=["cat", "dog"]) as w:  # doctest: +SKIP
        ...     w.add_file("train", 0, "/raw/cat1.jpg")
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        classes: Sequence[str],
        *,
        provenance: Mapping[str, Any] | None = None,
        link: bool = True,
        verify_images: bool = True,
    ) -> None:
        """Create a writer.

        Args:
            out_dir: The prepared dataset folder to create.
            classes: Class names in label order (may be reassigned before the block ends).
            provenance: Keyword arguments for :func:`robustkd.provenance.write_provenance`
                (``rule``, ``inputs``, ``config``, ``wildcards``, ``extra``); outputs are added,
                and files under ``also_inputs`` are hashed as inputs beside ``inputs`` (the
                dataset readers fill ``inputs`` with the raw files; the job adds its own).
            link: Symlink image files instead of copying them.
            verify_images: Decode every added image file to catch unreadable ones.
        """
        self.out_dir = Path(out_dir)
        self.classes = list(classes)
        self.provenance = dict(provenance or {"rule": "prepare"})
        self.link = link
        self.verify_images = verify_images
        self.rows: list[_Row] = []
        self.array_files: list[Path] = []
        self.started = now_iso()
        self.tmp: Path | None = None

    def __enter__(self) -> PreparedWriter:
        self.tmp = make_temp_dir(self.out_dir)
        return self

    def _require_open(self) -> Path:
        if self.tmp is None:
            raise RuntimeError("PreparedWriter used outside its 'with' block")
        return self.tmp

    def _check_label(self, label: int, what: str) -> None:
        if not 0 <= label < len(self.classes):
            raise DataError(f"{what}: label {label} outside [0, {len(self.classes)})")

    def add_file(self, split: str, label: int, src: str | os.PathLike[str], name: str) -> None:
        """Add one image file, linked (or copied) to ``images/<split>/<name>``.

        Args:
            split: The split (``train``, ``val``, ``test``, ...).
            label: The class index.
            src: The raw image file.
            name: File name (may contain sub-folders) inside ``images/<split>/``.

        Raises:
            DataError: The file is missing or unreadable, or the label is out of range.
        """
        tmp = self._require_open()
        src = Path(src)
        self._check_label(label, str(src))
        if not src.is_file():
            raise DataError(f"{src}: image file not found")
        if self.verify_images:
            check_image(src)
        rel = Path("images") / split / name
        dst = tmp / rel
        if dst.exists() or dst.is_symlink():
            raise DataError(f"{src}: a second image named {rel} in the prepared dataset")
        with writing(self.out_dir):
            dst.parent.mkdir(parents=True, exist_ok=True)
            if self.link:
                dst.symlink_to(self._link_target(src, rel))
            else:
                shutil.copyfile(src, dst)
        self.rows.append(_Row(split, label, rel.as_posix(), -1, sha256_file(src)))

    def _link_target(self, src: Path, rel: Path) -> Path:
        """What the link ``rel`` (inside the final folder) points to.

        Relative when the raw file and the prepared folder both lie under the working directory
        (the demo's ``results/raw_demo`` and ``results/data``), so the project can be moved or
        copied whole; absolute otherwise (raw data on a shared disk). The temporary folder sits
        beside the final one, at the same depth, so the relative path holds after the rename.
        """
        target = src.resolve()
        link_dir = self.out_dir.parent.resolve() / self.out_dir.name / rel.parent
        base = Path.cwd().resolve()
        if target.is_relative_to(base) and link_dir.is_relative_to(base):
            return Path(os.path.relpath(target, link_dir))
        return target

    def add_array(self, split: str, images: np.ndarray, labels: Sequence[int]) -> None:
        """Add a split as a packed uint8 array ``arrays/<split>.npy`` of shape (N, H, W, 3).

        Args:
            split: The split name.
            images: uint8 array (N, H, W, 3).
            labels: N class indices.

        Raises:
            DataError: Shapes, dtype or labels are inconsistent.
        """
        tmp = self._require_open()
        images = np.ascontiguousarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(
                f"{split}: expected uint8 (N, H, W, 3), got {images.dtype} {images.shape}"
            )
        if len(labels) != len(images):
            raise DataError(f"{split}: {len(images)} images but {len(labels)} labels")
        rel = Path("arrays") / f"{split}.npy"
        if (tmp / rel).exists():
            raise DataError(f"{split}: split {split!r} added twice as an array")
        with writing(self.out_dir):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            np.save(tmp / rel, images)
        self.array_files.append(tmp / rel)
        for i, lab in enumerate(labels):
            self._check_label(int(lab), f"{split} array row {i}")
            self.rows.append(_Row(split, int(lab), rel.as_posix(), i, ""))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tmp = self._require_open()
        self.tmp = None
        if exc is not None:
            # A full disk while linking, copying or packing is named (with the free space
            # before the temporary folder goes); other errors pass unchanged.
            err = write_failure(self.out_dir, exc) if disk_full(exc) else None
            shutil.rmtree(tmp, ignore_errors=True)
            if err is not None and err is not exc:
                raise err from exc
            return
        try:
            self._complete(tmp)
            if self.out_dir.exists():
                shutil.rmtree(self.out_dir)
            tmp.rename(self.out_dir)
        except BaseException as failed:
            err = write_failure(self.out_dir, failed)
            shutil.rmtree(tmp, ignore_errors=True)
            if err is not None and err is not failed:
                raise err from failed
            raise

    def _complete(self, tmp: Path) -> None:
        """Write classes, manifest and (last) provenance into the temporary folder."""
        if not self.rows:
            raise DataError(f"{self.out_dir}: no samples were added")
        (tmp / "classes.txt").write_text("".join(f"{c}\n" for c in self.classes))
        with open(tmp / "manifest.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(MANIFEST_COLUMNS)
            for r in self.rows:
                writer.writerow([r.split, r.label, r.path, r.index, r.sha256])
        counts: dict[str, int] = {}
        for r in self.rows:
            counts[r.split] = counts.get(r.split, 0) + 1
        prov = dict(self.provenance)
        prov["inputs"] = [*(prov.get("inputs") or []), *prov.pop("also_inputs", [])]
        extra = dict(prov.pop("extra", None) or {})
        extra.update({"n_classes": len(self.classes), "split_counts": counts})
        outputs = [tmp / "manifest.csv", tmp / "classes.txt", *self.array_files]
        record = write_provenance(
            tmp / "provenance.json", outputs=outputs, extra=extra, started=self.started, **prov
        )
        # Name outputs by their final place, not the temporary folder.
        record["outputs"] = {
            k.replace(str(tmp), str(self.out_dir)): v for k, v in record["outputs"].items()
        }
        write_json_atomic(tmp / "provenance.json", record)


class PreparedDataset:
    """Read any prepared dataset folder, whatever raw format it came from."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Open a prepared dataset.

        Args:
            root: The prepared dataset folder.

        Raises:
            DataError: The folder is incomplete or its manifest malformed.
        """
        self.root = Path(root)
        for name in ("classes.txt", "manifest.csv", "provenance.json"):
            if not (self.root / name).is_file():
                raise DataError(f"{self.root / name}: missing; the dataset is not prepared")
        self.classes = (self.root / "classes.txt").read_text().splitlines()
        with open(self.root / "manifest.csv", newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
                raise DataError(
                    f"{self.root / 'manifest.csv'}: columns {reader.fieldnames}, "
                    f"expected {list(MANIFEST_COLUMNS)}"
                )
            self.rows = []
            for r in reader:
                try:
                    row = _Row(r["split"], int(r["label"]), r["path"], int(r["index"]), r["sha256"])
                except (TypeError, ValueError) as exc:  # a short or garbled line
                    raise DataError(
                        f"{self.root / 'manifest.csv'}, line {reader.line_num}: malformed row "
                        f"({exc}); delete {self.root} and rerun its prepare job"
                    ) from None
                self.rows.append(row)
        self._arrays: dict[str, np.ndarray] = {}

    @property
    def splits(self) -> list[str]:
        """The split names in manifest order."""
        return list(dict.fromkeys(r.split for r in self.rows))

    def indices(self, split: str) -> list[int]:
        """Return the manifest row numbers of ``split``.

        Raises:
            DataError: The split does not exist.
        """
        idx = [i for i, r in enumerate(self.rows) if r.split == split]
        if not idx:
            raise DataError(f"{self.root}: no split {split!r} (have {self.splits})")
        return idx

    def labels(self, split: str) -> np.ndarray:
        """Return the labels of ``split`` as an int64 array."""
        return np.array([self.rows[i].label for i in self.indices(split)], dtype=np.int64)

    def _array(self, rel: str) -> np.ndarray:
        if rel not in self._arrays:
            self._arrays[rel] = load_array(self.root / rel, "prepared array", mmap_mode="r")
        return self._arrays[rel]

    def image(self, row: int) -> Image.Image:
        """Return manifest row ``row`` as an 8-bit RGB PIL image (:func:`to_rgb8`).

        Raises:
            DataError: The file cannot be decoded or its pixel mode has no 8-bit reading.
        """
        r = self.rows[row]
        if r.index >= 0:
            return Image.fromarray(np.asarray(self._array(r.path)[r.index]))
        path = self.root / r.path
        try:
            with Image.open(path) as im:
                return to_rgb8(im, str(path))
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{path}: unreadable image ({exc})") from exc

    def iter_split(self, split: str) -> Iterator[tuple[Image.Image, int]]:
        """Yield ``(image, label)`` pairs of a split in manifest order."""
        for i in self.indices(split):
            yield self.image(i), self.rows[i].label

    def load_split(self, split: str, size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode a whole split into memory, optionally resized to ``size`` x ``size``.

        Meant for the miniature and for small datasets; paper-scale training streams images.

        Args:
            split: The split name.
            size: Target side length (bilinear resize of the full image), or None to keep the
                native size (all images must then share it).

        Returns:
            ``(images, labels)``: uint8 (N, H, W, 3) and int64 (N,).
        """
        idx = self.indices(split)
        rows = [self.rows[i] for i in idx]
        if all(r.index >= 0 and r.path == rows[0].path for r in rows) and size in (
            None,
            self._array(rows[0].path).shape[1],
        ):
            # A packed split at its native size: slice the array, no per-image decode.
            arr = self._array(rows[0].path)
            return np.ascontiguousarray(arr[[r.index for r in rows]]), self.labels(split)
        images = []
        for im, _ in self.iter_split(split):
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            images.append(np.asarray(im, dtype=np.uint8))
        return np.stack(images), self.labels(split)
