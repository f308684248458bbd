"""CAMELYON17-WILDS v1.0: 96x96 H&E patches from five hospitals, tumour vs normal tissue.

Raw layout (the WILDS release, extracted into ``camelyon17_v1.0/``):

- ``RELEASE_v1.0.txt``;
- ``metadata.csv``: a leading unnamed index column, then ``patient, node, x_coord, y_coord,
  tumor, slide, center, split`` (``split`` 0 = train, 1 = in-hospital validation);
- ``patches/patient_{patient:03d}_node_{node}/patch_patient_{patient:03d}_node_{node}_x_{x}_y_{y}
  .png``.

The folder may also be ``root`` itself, nested one level deeper, or still packed as
``camelyon17_v1.0.tar.gz`` / ``.tgz`` / ``.tar`` in ``root`` (extracted there); ``metadata.csv``
may have been re-saved by pandas or a spreadsheet (:mod:`robustkd.data.rawfiles`).

The official WILDS split is used: ``test`` = center 2, ``val`` (out-of-distribution) = center 1,
and centers 0, 3, 4 go to ``train`` (split 0) or ``id_val`` (split 1). Label = ``tumor``.
The archive has no published checksum; only ``metadata.csv`` is hashed into the provenance.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from robustkd.data.archives import extract_archive, verify_md5
from robustkd.data.miniature import write_md5sums
from robustkd.data.prepared import PreparedWriter
from robustkd.data.rawfiles import (
    find_case_insensitive,
    find_release_dir,
    read_csv_table,
    whole_numbers,
)
from robustkd.data.synthetic import draw_histology_patch
from robustkd.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CLASSES", "FOLDER", "SPLITS", "URL", "patch_path", "prepare", "write_demo_raw"]

CLASSES = ("normal", "tumor")
SPLITS = ("train", "id_val", "val", "test")
FOLDER = "camelyon17_v1.0"
ARCHIVE = "camelyon17_v1.0.tar.gz"
# The archive as users may have it in root, not yet extracted.
_ARCHIVES = (ARCHIVE, "camelyon17_v1.0.tgz", "camelyon17_v1.0.tar")
URL = (
    "https://worksheets.codalab.org/rest/bundles/0xe45e15f39fb54e9d9e919556af67aabe/contents/blob/"
)
METADATA_KEY = f"{FOLDER}/metadata.csv"  # name of metadata.csv in MD5SUMS / md5_overrides
COLUMNS = ("patient", "node", "x_coord", "y_coord", "tumor", "slide", "center", "split")
RELEASE_HEADER = "," + ",".join(COLUMNS)  # metadata.csv's first line in the release
N_CENTERS, N_NODES, VAL_CENTER, TEST_CENTER = 5, 5, 1, 2
_PATCH = 96  # coordinates are multiples of the patch side of the real release

log = logging.getLogger(__name__)


def patch_path(data_dir: Path, patient: int, node: int, x: int, y: int) -> Path:
    """Return the path of one patch under a ``camelyon17_v1.0/`` folder.

    Args:
        data_dir: The ``camelyon17_v1.0`` folder.
        patient: Patient id.
        node: Lymph node (0..4).
        x: The patch's x coordinate on the slide.
        y: The patch's y coordinate on the slide.

    Returns:
        ``data_dir/patches/patient_PPP_node_N/patch_patient_PPP_node_N_x_X_y_Y.png``.
    """
    stem = f"patient_{patient:03d}_node_{node}"
    return Path(data_dir) / "patches" / stem / f"patch_{stem}_x_{x}_y_{y}.png"


def write_demo_raw(
    out_dir: Path, *, seed: int, patients_per_center: int, patches_per_node: int, size: int = 96
) -> list[Path]:
    """Write a miniature CAMELYON17-WILDS v1.0 in the official layout.

    Each of the 5 centers has ``patients_per_center`` patients (patient id
    ``center * patients_per_center + j``), each patient 5 nodes (one slide each, slide id
    ``patient * 5 + node``) with ``patches_per_node`` patches at distinct coordinates (multiples
    of 96). Tumour labels are balanced within each center (half, rounded down, are tumour).
    Within each center, a random 10% of the patches (at least one) get ``split`` 1 (id_val),
    the rest 0, as in the release (where centers 1 and 2 are later overridden by WILDS).
    ``MD5SUMS`` lists ``camelyon17_v1.0/metadata.csv`` only (no checksum exists for the real
    archive).

    Args:
        out_dir: The raw folder to fill; the data goes into ``out_dir/camelyon17_v1.0/``.
        seed: Seed of every random choice.
        patients_per_center: Patients per center (at least 1).
        patches_per_node: Patches per (patient, node) slide (at least 1).
        size: Patch side in pixels (96 in the real release).

    Returns:
        ``RELEASE_v1.0.txt``, ``metadata.csv``, every patch and ``MD5SUMS``.

    Raises:
        ValueError: A count is below 1.
    """
    if patients_per_center < 1 or patches_per_node < 1:
        raise ValueError("patients_per_center and patches_per_node must be at least 1")
    data = Path(out_dir) / FOLDER
    data.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_center = patients_per_center * N_NODES * patches_per_node
    grid = max(64, 2 * patches_per_node)  # cells per side of a slide's coordinate grid
    rows: list[list[int]] = []
    for center in range(N_CENTERS):
        tumor = rng.permutation(np.arange(per_center) % 2)
        split = np.zeros(per_center, dtype=int)
        split[rng.choice(per_center, max(1, round(0.1 * per_center)), replace=False)] = 1
        k = 0
        for j in range(patients_per_center):
            patient = center * patients_per_center + j
            for node in range(N_NODES):
                for cell in rng.choice(grid * grid, patches_per_node, replace=False):
                    x, y = int(cell % grid) * _PATCH, int(cell // grid) * _PATCH
                    rows.append(
                        [
                            patient,
                            node,
                            x,
                            y,
                            int(tumor[k]),
                            patient * N_NODES + node,
                            center,
                            int(split[k]),
                        ]
                    )
                    k += 1
    files = [data / "RELEASE_v1.0.txt", data / "metadata.csv"]
    files[0].write_text("CAMELYON17-WILDS v1.0 (robustkd offline miniature)\n")
    with open(files[1], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", *COLUMNS])
        writer.writerows([i, *row] for i, row in enumerate(rows))
    for patient, node, x, y, tumor_k, *_ in rows:
        path = patch_path(data, patient, node, x, y)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(draw_histology_patch(rng, tumor_k, size)).save(path)
        files.append(path)
    return [*files, write_md5sums(out_dir, [files[1]])]


def _read_metadata(path: Path) -> pd.DataFrame:
    """Read and check ``metadata.csv``; returns its columns as integers plus a ``part`` column.

    The index is each row's line number in the file (for error messages).
    """
    df = whole_numbers(read_csv_table(path, COLUMNS, release=RELEASE_HEADER), COLUMNS, path)
    checks = (
        ("tumor", ~df["tumor"].isin([0, 1]), "0 or 1"),
        ("center", ~df["center"].between(0, N_CENTERS - 1), f"0..{N_CENTERS - 1}"),
        (
            "split",
            ~df["center"].isin([VAL_CENTER, TEST_CENTER]) & ~df["split"].isin([0, 1]),
            "0 or 1 (outside centers 1 and 2)",
        ),
    )
    for col, bad, allowed in checks:
        if bad.any():
            line = df.index[bad.to_numpy()][0]
            raise DataError(
                f"{path}, line {line}: column {col!r} is {df.at[line, col]}; the release "
                f"has {allowed}"
            )
    dup = df.duplicated(["patient", "node", "x_coord", "y_coord"])
    if dup.any():
        line = df.index[dup.to_numpy()][0]
        raise DataError(f"{path}, line {line}: repeats the patch of an earlier line")
    df["part"] = np.select(
        [df["center"] == TEST_CENTER, df["center"] == VAL_CENTER, df["split"] == 0],
        ["test", "val", "train"],
        "id_val",
    )
    return df


def _has_metadata(folder: Path) -> bool:
    return (folder / "metadata.csv").is_file()


def _find_data(root: Path, download: bool) -> Path:
    """The release folder under ``root``, extracted from a local or downloaded archive."""
    data = find_release_dir(root, FOLDER, _has_metadata)
    if data is not None:
        return data
    archive = next((root / n for n in _ARCHIVES if (root / n).is_file()), None)
    downloaded = archive is None
    if archive is None:
        if not download:
            raise DataError(
                f"{root / FOLDER}: folder not found (extract the WILDS CAMELYON17 v1.0 "
                "archive there, point 'root' at it, or set data.download: true)"
            )
        from torchvision.datasets.utils import download_url

        download_url(URL, str(root), ARCHIVE, None)
        archive = root / ARCHIVE
    log.info("extracting %s into %s", archive, root / FOLDER)
    extract_archive(archive, root / FOLDER)  # WILDS's archive holds the folder's contents
    if downloaded:
        archive.unlink()
    data = find_release_dir(root, FOLDER, _has_metadata)
    if data is None:
        raise DataError(f"{archive}: holds no metadata.csv; it is not the WILDS v1.0 archive")
    return data


def prepare(
    root: Path,
    out_dir: Path,
    *,
    download: bool = False,
    md5_overrides: Mapping[str, str] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> Path:
    """Prepare CAMELYON17-WILDS with the official split into ``out_dir``.

    Args:
        root: Folder holding ``camelyon17_v1.0/`` (or that folder itself, or its contents, or
            one of the archives ``camelyon17_v1.0.tar.gz`` / ``.tgz`` / ``.tar``).
        out_dir: The prepared dataset folder to write (splits train, id_val, val, test).
        download: Download (about 10 GB) and extract the WILDS archive if the folder is absent.
        md5_overrides: May map ``camelyon17_v1.0/metadata.csv`` to its expected md5 (the
            miniature's ``MD5SUMS``); no checksum is published for the real release.
        provenance: Keyword arguments for the provenance record (default rule
            ``prepare_camelyon17``; ``inputs`` default to ``metadata.csv`` and the release file).

    Returns:
        ``out_dir``.

    Raises:
        DataError: The folder, release file, ``metadata.csv``, one of its columns or a patch
            is missing, the metadata is malformed (the message names the line and column),
            the folder exists twice under ``root``, or a patch is unreadable.
    """
    root, out_dir = Path(root), Path(out_dir)
    data = _find_data(root, download)
    release = data / "RELEASE_v1.0.txt"
    if not release.is_file():
        raise DataError(f"{release}: not found; {data} is not a complete v1.0 release")
    meta_path = data / "metadata.csv"
    verify_md5(meta_path, (md5_overrides or {}).get(METADATA_KEY))
    meta = _read_metadata(meta_path)

    prov = dict(provenance or {"rule": "prepare_camelyon17"})
    prov.setdefault("inputs", [meta_path, release])
    prov["extra"] = {**(prov.get("extra") or {}), "source": str(data)}
    listings: dict[Path, dict[str, list[str]]] = {}  # folder listings for .PNG look-ups
    with PreparedWriter(out_dir, CLASSES, provenance=prov) as writer:
        for split in SPLITS:
            part = meta[meta["part"] == split]
            for patient, node, x, y, tumor in zip(
                part["patient"],
                part["node"],
                part["x_coord"],
                part["y_coord"],
                part["tumor"],
                strict=True,
            ):
                src = patch_path(data, patient, node, x, y)
                src = find_case_insensitive(src, listings) or src
                writer.add_file(split, int(tumor), src, name=f"{src.parent.name}/{src.name}")
    return out_dir
