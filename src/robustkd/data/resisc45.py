"""NWPU-RESISC45 (45 aerial scene classes, 256x256 JPEGs) with the official 60/20/20 split lists.

Raw layout (as distributed, and as torchgeo mirrors it):

- ``NWPU-RESISC45.zip`` holding ``NWPU-RESISC45/<class>/<class>_NNN.jpg`` (700 per class);
- ``resisc45-{train,val,test}.txt``: one image file name per line (``airplane_001.jpg``),
  18,900 / 6,300 / 6,300 names.

The zip is extracted once into ``<out_dir>.raw/`` beside the prepared folder (the prepared images
are links into it, so it stays); a tree the user already extracted to ``root/NWPU-RESISC45/``
is used in place, also when unpacked one level deeper (``NWPU-RESISC45/NWPU-RESISC45/``, as
Windows does) or straight into ``root``; ``__MACOSX`` and hidden entries are ignored, and an
image whose extension differs only in case (``.JPG``) is found. Split lists that differ from
the official ones only in line endings, a BOM or blank lines pass the md5 check
(:mod:`robustkd.data.rawfiles`). Labels follow the sorted class folder names.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from robustkd.data.archives import extract_archive, fetch_file
from robustkd.data.miniature import write_md5sums
from robustkd.data.prepared import PreparedWriter
from robustkd.data.rawfiles import (
    find_case_insensitive,
    find_release_dir,
    is_junk,
    verify_lines_md5,
)
from robustkd.data.synthetic import draw_image
from robustkd.errors import DataError

__all__ = ["CLASSES", "OFFICIAL_MD5", "SPLITS", "URL", "prepare", "write_demo_raw"]

CLASSES = (
    "airplane",
    "airport",
    "baseball_diamond",
    "basketball_court",
    "beach",
    "bridge",
    "chaparral",
    "church",
    "circular_farmland",
    "cloud",
    "commercial_area",
    "dense_residential",
    "desert",
    "forest",
    "freeway",
    "golf_course",
    "ground_track_field",
    "harbor",
    "industrial_area",
    "intersection",
    "island",
    "lake",
    "meadow",
    "medium_residential",
    "mobile_home_park",
    "mountain",
    "overpass",
    "palace",
    "parking_lot",
    "railway",
    "railway_station",
    "rectangular_farmland",
    "river",
    "roundabout",
    "runway",
    "sea_ice",
    "ship",
    "snowberg",
    "sparse_residential",
    "stadium",
    "storage_tank",
    "tennis_court",
    "terrace",
    "thermal_power_station",
    "wetland",
)
SPLITS = ("train", "val", "test")
ZIP_NAME = "NWPU-RESISC45.zip"
FOLDER = "NWPU-RESISC45"
OFFICIAL_MD5 = {
    ZIP_NAME: "75206b2e16446591afa88e2628744886",
    "resisc45-train.txt": "b5a4c05a37de15e4ca886696a85c403e",
    "resisc45-val.txt": "a0770cee4c5ca20b8c32bbd61e114805",
    "resisc45-test.txt": "3dda9e4988b47eb1de9f07993653eb08",
}
_HF = "https://hf.co/datasets/torchgeo/resisc45/resolve/a826b44d938a883185f11ebe3d512d38b464312f"
URL = {name: f"{_HF}/{name}" for name in OFFICIAL_MD5}
_MARKER = ".extracted_from"  # in the raw folder: md5 of the zip it was extracted from
OFFICIAL_COUNTS = {"train": 18_900, "val": 6_300, "test": 6_300}  # names per split list


def _list_name(split: str) -> str:
    return f"resisc45-{split}.txt"


def write_demo_raw(out_dir: Path, *, seed: int, per_class: int, size: int = 256) -> list[Path]:
    """Write a miniature RESISC45 in the official format (zip plus the three split lists).

    Every one of the 45 classes gets ``per_class`` images drawn with the aerial palette; each
    class is split 60/20/20 at random (val and test get at least one image each), as the
    official lists split 700 images per class into 420/140/140. The zip's bytes depend only on
    ``seed`` and the sizes. ``MD5SUMS`` lists the zip and the three lists.

    Args:
        out_dir: The raw folder to fill.
        seed: Seed of every random choice.
        per_class: Images per class (at least 3).
        size: Image side in pixels (256 in the real dataset).

    Returns:
        The zip, the three split lists and ``MD5SUMS``.

    Raises:
        ValueError: ``per_class`` is below 3.
    """
    if per_class < 3:
        raise ValueError(f"per_class={per_class}: need at least 3 (one image per split)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_val = n_test = max(1, round(0.2 * per_class))
    lists: dict[str, list[str]] = {s: [] for s in SPLITS}
    zip_path = out_dir / ZIP_NAME
    tmp = zip_path.with_name(zip_path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for label, cls in enumerate(CLASSES):
            names = [f"{cls}_{i:03d}.jpg" for i in range(1, per_class + 1)]
            for name in names:
                buf = io.BytesIO()
                image = draw_image(rng, label, len(CLASSES), size, palette="aerial")
                Image.fromarray(image).save(buf, "JPEG", quality=90)
                info = zipfile.ZipInfo(f"{FOLDER}/{cls}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, buf.getvalue())
            order = rng.permutation(per_class)
            lists["val"] += [names[i] for i in order[:n_val]]
            lists["test"] += [names[i] for i in order[n_val : n_val + n_test]]
            lists["train"] += [names[i] for i in order[n_val + n_test :]]
    os.replace(tmp, zip_path)
    files = [zip_path]
    for split in SPLITS:
        path = out_dir / _list_name(split)
        path.write_text("".join(f"{n}\n" for n in sorted(lists[split])))
        files.append(path)
    return [*files, write_md5sums(out_dir, files)]


def _has_classes(folder: Path) -> bool:
    """Whether a folder holds RESISC45 class folders (an extracted ``NWPU-RESISC45/``)."""
    return any((folder / c).is_dir() for c in CLASSES)


def _image_root(root: Path, raw_dir: Path, zip_path: Path | None, zip_md5: str) -> Path:
    """Return the extracted ``NWPU-RESISC45/`` folder, extracting the zip if needed."""
    if zip_path is None:
        tree = find_release_dir(root, FOLDER, _has_classes)
        assert tree is not None  # prepare() looked it up
        return tree
    marker = raw_dir / _MARKER
    if (raw_dir / FOLDER).is_dir() and marker.is_file() and marker.read_text().strip() == zip_md5:
        return raw_dir / FOLDER
    extract_archive(zip_path, raw_dir)
    marker.write_text(f"{zip_md5}\n")
    if not (raw_dir / FOLDER).is_dir():
        raise DataError(f"{zip_path}: holds no {FOLDER}/ folder")
    return raw_dir / FOLDER


def prepare(
    root: Path,
    out_dir: Path,
    *,
    download: bool = False,
    md5_overrides: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Prepare RESISC45 from the official zip and split lists into ``out_dir``.

    The zip is skipped when ``root/NWPU-RESISC45/`` already holds the extracted tree; otherwise
    it is verified and extracted into ``<out_dir>.raw/`` (reused while it comes from a zip with
    the same md5).

    Args:
        root: Folder holding ``NWPU-RESISC45.zip`` (or the tree extracted from it) and
            ``resisc45-{train,val,test}.txt``.
        out_dir: The prepared dataset folder to write (splits train, val, test).
        download: Download missing raw files (torchgeo's Hugging Face mirror).
        md5_overrides: Raw file name -> md5 to expect instead of the official one.
        provenance: Keyword arguments for the provenance record (default rule
            ``prepare_resisc45``; ``inputs`` default to the verified raw files).

    Returns:
        ``out_dir``.

    Raises:
        DataError: A raw file is missing or corrupt (a list's names differ from the official
            list's), a split list names an image that does not exist, repeats a name or names
            an unknown class, the tree exists twice under ``root``, or an image is unreadable.
    """
    root, out_dir = Path(root), Path(out_dir)
    overrides = dict(md5_overrides or {})

    def md5_of(name: str) -> str:
        return overrides.get(name, OFFICIAL_MD5[name])

    # The lists' md5 is checked on their lines: a re-saved copy (CRLF, BOM) of the official
    # list passes, any other change does not.
    lists = {
        split: fetch_file(root, _list_name(split), None, URL[_list_name(split)], download)
        for split in SPLITS
    }
    names = {
        split: verify_lines_md5(
            path, md5_of(path.name), None if path.name in overrides else OFFICIAL_COUNTS[split]
        )
        for split, path in lists.items()
    }
    tree = find_release_dir(root, FOLDER, _has_classes)
    zip_path = (
        None
        if tree is not None
        else fetch_file(root, ZIP_NAME, md5_of(ZIP_NAME), URL[ZIP_NAME], download)
    )
    raw_dir = out_dir.parent / f"{out_dir.name}.raw"
    images = _image_root(root, raw_dir, zip_path, md5_of(ZIP_NAME))
    classes = sorted(p.name for p in images.iterdir() if p.is_dir() and not is_junk(p.name))

    entries: dict[str, list[tuple[int, Path, str]]] = {}
    seen: dict[str, str] = {}
    listings: dict[Path, dict[str, list[str]]] = {}  # folder listings for .JPG look-ups
    for split, list_path in lists.items():
        entries[split] = []
        for fname in names[split]:
            cls = fname.rsplit("_", 1)[0]
            if Path(fname).name != fname or cls not in classes:
                raise DataError(
                    f"{list_path}: {fname!r} is not <class>_NNN.jpg of a class folder in {images}"
                )
            if fname in seen:
                raise DataError(f"{list_path}: {fname} is also listed in {seen[fname]}")
            seen[fname] = list_path.name
            src = find_case_insensitive(images / cls / fname, listings)
            if src is None:
                raise DataError(
                    f"{list_path}: lists {fname}, but {images / cls / fname} does not exist"
                )
            entries[split].append((classes.index(cls), src, f"{cls}/{fname}"))

    prov = dict(provenance or {"rule": "prepare_resisc45"})
    prov.setdefault("inputs", [p for p in (zip_path, *lists.values()) if p is not None])
    prov["extra"] = {**(prov.get("extra") or {}), "source": str(images), "root": str(root)}
    with PreparedWriter(out_dir, classes, provenance=prov) as writer:
        for split in SPLITS:
            for label, src, name in entries[split]:
                writer.add_file(split, label, src, name=name)
    return out_dir
