"""Write the offline miniature: raw data in each dataset's official format, from a seed.

The miniature exercises the real readers (torchvision's CIFAR and STL-10 readers, the
ILSVRC-2012 tree walker, the RESISC45 and CAMELYON17 parsers) without any download. Images are
drawn by :mod:`robustkd.data.synthetic` and carry a learnable class signal. Each writer (the
dataset module's ``write_demo_raw``, found through :mod:`robustkd.data.registry`) also writes
``MD5SUMS`` (md5sum format) for the archives it made, which the demo config hands to the
prepare step in place of the official checksums; the pieces the writers share are in
:mod:`robustkd.data.miniature`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from robustkd.data.registry import get_dataset

__all__ = ["write_demo_raw"]


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
