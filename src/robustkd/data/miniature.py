"""What the miniature's writers share: drawn splits, a deterministic ``.tar.gz``, ``MD5SUMS``.

Each dataset module's ``write_demo_raw`` writes raw data in that dataset's official format
(:mod:`robustkd.data.demo_raw` picks the writer by name). The pieces here are format-free:
:func:`draw_split` draws a labelled split from per-sample seeds, :func:`write_tar_gz` packs
members into an archive whose bytes depend only on its contents, and :func:`write_md5sums`
lists the archives made, which the demo config hands to the prepare step in place of the
official checksums.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from robustkd.atomic import atomic_write_text, raise_write_failure
from robustkd.data import synthetic
from robustkd.data.archives import md5sum

__all__ = ["TEST", "TRAIN", "draw_split", "write_md5sums", "write_tar_gz"]

TRAIN, TEST = 0, 1  # split ids in the per-sample seeds of the miniature


def draw_split(
    seed: int, split_id: int, n_classes: int, per_class: int, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one split of a miniature: uint8 (N, size, size, 3) images and int64 (N,) labels.

    The labels (``per_class`` of each class) are shuffled by ``default_rng((seed, split_id))``;
    sample ``i`` is ``synthetic.draw_image(np.random.default_rng((seed, split_id, i)), label,
    n_classes, size)``, so a test can recompute any sample from its label.

    Args:
        seed: The miniature's seed.
        split_id: :data:`TRAIN` or :data:`TEST`.
        n_classes: Number of classes.
        per_class: Images per class.
        size: Image side in pixels.

    Returns:
        The images and their labels, ``N = n_classes * per_class``.
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


def write_tar_gz(path: Path, folder: str, members: Mapping[str, bytes]) -> Path:
    """Write ``path`` (.tar.gz) holding ``folder/`` and ``folder/<name>`` for each member.

    Timestamps, owners and the gzip header are fixed, so equal members give equal bytes. The
    archive is written beside ``path`` and renamed into place when complete.

    Args:
        path: The archive to write.
        folder: The one folder inside the archive.
        members: File name inside ``folder`` -> its bytes, in archive order.

    Returns:
        ``path``.
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
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        raise_write_failure(path, exc)
        raise
    return path


def write_md5sums(out_dir: str | os.PathLike[str], files: Iterable[str | os.PathLike[str]]) -> Path:
    """Write ``out_dir/MD5SUMS`` for ``files`` (names relative to ``out_dir``).

    Args:
        out_dir: The raw data folder.
        files: Files inside ``out_dir`` to list.

    Returns:
        The checksum file's path.
    """
    out_dir = Path(out_dir)
    lines = [f"{md5sum(f)}  {Path(f).relative_to(out_dir).as_posix()}\n" for f in files]
    atomic_write_text(out_dir / "MD5SUMS", "".join(lines))
    return out_dir / "MD5SUMS"
