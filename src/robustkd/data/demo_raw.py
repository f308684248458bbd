"""Write the offline miniature: raw data in each dataset's official format, from a seed.

The miniature exercises the real readers (torchvision's CIFAR and STL-10 readers, the
ILSVRC-2012 tree walker, the RESISC45 and CAMELYON17 parsers) without any download. Images are
drawn by :mod:`robustkd.data.synthetic` and carry a learnable class signal. Each writer also
writes ``MD5SUMS`` (md5sum format) for the archives it made, which the demo config hands to the
prepare step in place of the official checksums.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from robustkd.atomic import atomic_write_text
from robustkd.data.archives import md5sum
from robustkd.data.registry import get_dataset

__all__ = ["write_demo_raw", "write_md5sums"]


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


def write_demo_raw(
    dataset: str, out_dir: str | os.PathLike[str], *, seed: int, **spec: Any
) -> list[Path]:
    """Write the miniature raw data of ``dataset`` into ``out_dir``.

    Args:
        dataset: A registered dataset name.
        out_dir: The folder to fill (created if needed).
        seed: Seed of every random choice; the same seed writes the same images.
        **spec: Dataset-specific sizes (images per class, image size, ...).

    Returns:
        The files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return get_dataset(dataset).write_demo_raw(out, seed=seed, **spec)
