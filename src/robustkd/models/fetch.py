"""Pretrained weights fetched once, where Snakemake runs, for every job that needs them.

With ``weights: hub`` a backbone's pretrained weights come from the Hugging Face hub. Rule
fetch_weights (a local rule: on a cluster it runs on the login node, which has internet) builds
the backbone through timm's own download (:func:`~robustkd.models.backbones.create_backbone`,
as a job did before), writes its weights to ``results/weights/<backbone>/model.safetensors``
(:func:`robustkd.layout.fetched_weights`) and records that file's sha256 and the URL the weights
came from in ``provenance.json`` beside it. Every job that needs the weights reads that file,
a rule input, so compute nodes without internet never download anything.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from robustkd.atomic import atomic_write_bytes
from robustkd.errors import ConfigError
from robustkd.models.backbones import HUB, create_backbone, hub_url
from robustkd.provenance import now_iso, sha256_file, write_provenance

__all__ = ["fetch_weights_job"]

log = logging.getLogger(__name__)


def _same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def fetch_weights_job(
    *,
    backbone: str,
    spec: Mapping[str, Any],
    out: str | os.PathLike[str],
    record: str | os.PathLike[str],
    rule: str = "fetch_weights",
) -> dict[str, Any]:
    """Download a hub backbone's pretrained weights once and write them as a local file.

    The backbone is built exactly as a job built it from ``weights: hub`` (timm downloads the
    tag's weights, or takes them from its cache, and loads them strictly); its state dict is
    written as safetensors, then loaded back the way the jobs will load it (``weights: <file>``,
    strict key checking) and compared tensor by tensor.

    Args:
        backbone: The backbone's config key (``vit``, ``clip``).
        spec: Its config entry, with ``weights: hub`` (``timm_name``, ``kwargs``, ...).
        out: The weights file to write (``.safetensors``).
        record: The provenance record to write: the file's ``sha256``, ``hub`` (the URL and
            timm name the weights came from) and the spec.
        rule: Rule name for the provenance.

    Returns:
        The provenance record as written.

    Raises:
        ConfigError: ``spec`` does not ask for hub weights, or the download is missing or
            unreadable (the message names the backbone and the URL).
    """
    started = now_iso()
    spec = dict(spec)
    if spec.get("weights") != HUB:
        raise ConfigError(
            f"config key 'backbones.{backbone}.weights': {spec.get('weights')!r} is not "
            f"{HUB!r}; rule {rule} fetches hub weights only"
        )
    name = str(spec.get("timm_name"))
    try:
        url = hub_url(name)
        log.info("backbone %r: fetching the pretrained weights of %s from %s", backbone, name, url)
        model = create_backbone(spec)
    except ConfigError as err:
        raise ConfigError(f"backbone {backbone!r} (weights: hub): {err}") from err
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    out = Path(out)
    meta = {"backbone": backbone, "timm_name": name, "source": url}
    atomic_write_bytes(out, safetensors.torch.save(state, metadata=meta))
    # The jobs load this file with strict key checking: they must get the very same tensors.
    again = create_backbone({**spec, "weights": str(out)}).state_dict()
    if not _same_tensors(state, again):
        raise ConfigError(
            f"backbone {backbone!r}: {out} does not load back to the weights downloaded from {url}"
        )
    sha = sha256_file(out)
    log.info("backbone %r: wrote %s (sha256 %s)", backbone, out, sha)
    return write_provenance(
        record,
        rule=rule,
        outputs=[out],
        wildcards={"backbone": backbone},
        config={"backbone": spec},
        started=started,
        extra={
            "weights": str(out),
            "sha256": sha,
            "hub": {"timm_name": name, "url": url},
        },
    )
