"""The data stage's jobs as the workflow runs them: config in, prepared folders out."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustkd.data.archives import read_checksum_file
from robustkd.data.demo_raw import write_demo_raw
from robustkd.data.registry import get_dataset
from robustkd.provenance import now_iso, write_provenance

__all__ = ["demo_raw_job", "prepare_job"]

log = logging.getLogger(__name__)

# Keys of a dataset's config section that describe where the data is, not how to read it.
_SOURCE_KEYS = ("root", "md5sums")


def prepare_job(
    dataset: str,
    dataset_cfg: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    *,
    download: bool,
    rule: str | None = None,
    config_key: str | None = None,
) -> Path:
    """Prepare ``dataset`` from its config section (``data.datasets.<dataset>``).

    Args:
        dataset: A registered dataset name.
        dataset_cfg: Its config: ``root``, optional ``md5sums`` (a checksum file whose sums
            replace the official ones) and dataset-specific options.
        out_dir: The prepared dataset folder to write.
        download: Whether missing archives may be downloaded.
        rule: The rule name recorded in the provenance.
        config_key: The config section recorded in the provenance (default
            ``data.datasets.<dataset>``); the pretraining corpus, read by ImageNet's reader,
            records ``data.pretrain_corpus``.

    Returns:
        The prepared folder.
    """
    wildcards = {} if config_key else {"dataset": dataset}
    config_key = config_key or f"data.datasets.{dataset}"
    handler = get_dataset(dataset)
    overrides = read_checksum_file(dataset_cfg["md5sums"]) if "md5sums" in dataset_cfg else None
    options = {k: v for k, v in dataset_cfg.items() if k not in _SOURCE_KEYS}
    provenance = {
        "rule": rule or f"prepare_{dataset}",
        "wildcards": wildcards,
        "config": {"data.download": download, config_key: dict(dataset_cfg)},
        # The checksum file decides which archives pass: hash it like the raw data.
        "also_inputs": [dataset_cfg["md5sums"]] if "md5sums" in dataset_cfg else [],
    }
    log.info("preparing %s from %s into %s", dataset, dataset_cfg["root"], out_dir)
    out = handler.prepare(
        Path(dataset_cfg["root"]),
        Path(out_dir),
        download=download,
        md5_overrides=overrides,
        provenance=provenance,
        **options,
    )
    log.info("prepared %s", out)
    return out


def demo_raw_job(
    dataset: str,
    out_dir: str | os.PathLike[str],
    *,
    seed: int,
    spec: Mapping[str, Any],
    rule: str = "demo_raw",
) -> list[Path]:
    """Write the miniature raw data of ``dataset`` and its provenance record.

    Args:
        dataset: A registered dataset name.
        out_dir: The raw folder to write.
        seed: The miniature's seed.
        spec: Sizes for the dataset's writer (from ``demo_raw.<dataset>``).
        rule: The rule name recorded in the provenance.

    Returns:
        The files written.
    """
    started = now_iso()
    files = write_demo_raw(dataset, out_dir, seed=seed, **spec)
    write_provenance(
        Path(out_dir) / "provenance.json",
        rule=rule,
        outputs=files,
        wildcards={"dataset": dataset},
        seed=seed,
        started=started,
        config={f"demo_raw.{dataset}": dict(spec), "demo_raw.seed": seed},
    )
    log.info("wrote %d miniature raw files for %s into %s", len(files), dataset, out_dir)
    return files
