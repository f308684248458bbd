"""The CRAFT study's corrupted test set job: a CIFAR-10-C style copy of the test set.

:func:`corrupt_testset_job` writes one uint8 ``.npy`` per corruption, severities 1-5 stacked,
as the released benchmark; :func:`corruption_key` keys each corruption's random streams. The
study's training jobs live beside it: :func:`robustkd.craft.teacher_job.teacher_job` (train
the teacher on clean images, evaluate it, freeze it on disk) and
:func:`robustkd.craft.student_job.student_job` (train and evaluate one method's students), with
the pieces they share in :mod:`robustkd.craft.training`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from robustkd.atomic import save_npy_atomic
from robustkd.corruptions import corruption_key, create_corruption, frost_source, to_uint8
from robustkd.craft.training import keep_freed_memory
from robustkd.data.prepared import PreparedDataset
from robustkd.distortions import seeded_generator
from robustkd.provenance import now_iso, write_provenance

__all__ = ["corrupt_testset_job", "corruption_key"]

log = logging.getLogger(__name__)


def corrupt_testset_job(
    *,
    data_dir: str | os.PathLike[str],
    corruptions: Sequence[str],
    severities: Sequence[int],
    seed: int,
    outputs: Mapping[str, str | os.PathLike[str]],
    labels_out: str | os.PathLike[str],
    chunk: int = 1000,
    threads: int = 1,
    rule: str = "craft_corrupt_testset",
) -> None:
    """Write the corrupted copy of the prepared test split, one uint8 file per corruption.

    File ``outputs[c]`` holds the N test images corrupted at severity 1, then 2, ... (shape
    (N * S, H, W, 3)), truncated to bytes as the benchmark does; ``labels_out`` the labels
    repeated per severity. Chunk ``k`` of severity ``s`` of corruption ``c`` draws from
    ``seeded_generator(seed, key(c), s, k)``: the set is a function of the seed.
    """
    keep_freed_memory()
    torch.set_num_threads(max(1, threads))
    started = now_iso()
    prepared = PreparedDataset(data_dir)
    images, labels = prepared.load_split("test")  # (N, H, W, 3) uint8, (N,)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0  # (N, 3, H, W)
    for name in corruptions:
        t0 = time.perf_counter()
        parts = []
        for s in severities:
            op = create_corruption(name, int(s))
            for k, start in enumerate(range(0, len(x), chunk)):
                g = seeded_generator("cpu", seed, corruption_key(name), int(s), k)
                parts.append(to_uint8(op(x[start : start + chunk], g)))
        save_npy_atomic(Path(outputs[name]), np.concatenate(parts))
        log.info(
            "%s: %d images in %.2f s", name, len(x) * len(severities), time.perf_counter() - t0
        )
    save_npy_atomic(Path(labels_out), np.tile(labels, len(severities)).astype(np.uint8))
    out_dir = Path(labels_out).parent
    write_provenance(
        out_dir / "provenance.json",
        rule=rule,
        inputs=[Path(data_dir) / "manifest.csv", *Path(data_dir).glob("arrays/test*")],
        outputs=[*map(Path, outputs.values()), Path(labels_out)],
        config={"corruptions": list(corruptions), "severities": list(severities), "seed": seed},
        seed=seed,
        started=started,
        # Which frost images were blended: the photographs, or the procedural fallback.
        extra={"frost_source": frost_source()} if "frost" in corruptions else None,
    )
