"""What a job builds from its config before it runs, and reads back from earlier jobs.

The input view and pixel normalisation of a backbone, a distortion from its config entry, the
split a model is scored on, a fine-tuned classifier rebuilt from its weights, a run's metrics,
and the common setup of a job that evaluates fine-tuned classifiers (:class:`EvalSetup`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from robustkd.data.prepared import PreparedDataset
from robustkd.distortions import Distortion, create_distortion, strip_distortion_meta
from robustkd.engine.data import ViewConfig
from robustkd.engine.distill import Normalize
from robustkd.engine.finetune import Classifier
from robustkd.engine.jobsetup import set_threads
from robustkd.engine.loop import resolve_device
from robustkd.models.backbones import backbone_input_config, create_backbone
from robustkd.readback import load_weights, read_json

__all__ = [
    "EvalSetup",
    "eval_setup",
    "eval_split",
    "input_view",
    "load_classifier",
    "read_metrics",
    "resolve_distortion",
]


def resolve_distortion(spec: Mapping[str, Any] | None) -> Distortion | None:
    """Build a distortion from its config entry (metadata keys dropped); None for clean."""
    if spec is None:
        return None
    return create_distortion(strip_distortion_meta(spec))


def input_view(
    views: Mapping[str, Any], backbone: Mapping[str, Any]
) -> tuple[ViewConfig, Normalize]:
    """The input view (size, crop scale, JPEG decode) and pixel normalisation of a backbone."""
    inp = backbone_input_config(backbone)
    size = int(inp["input_size"][-1])
    scale = tuple(views.get("crop_scale", (0.08, 1.0)))
    view = ViewConfig(size=size, crop_scale=scale, decode=views.get("decode", "cpu"))
    return view, Normalize(tuple(inp["mean"]), tuple(inp["std"]))


def eval_split(prepared: PreparedDataset) -> str:
    """The split a fine-tuned model is scored on: the official test split, else val.

    ImageNet-100 has no public test labels (val is its test set); RESISC45 and CAMELYON17 score
    on their official test splits (CAMELYON17: hospital 2).
    """
    for name in ("test", "val"):
        if name in prepared.splits:
            return name
    raise ValueError(f"{prepared.root}: no test or val split (have {prepared.splits})")


def read_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``metrics.json`` (:class:`~robustkd.readback.UnreadableFileError` names it)."""
    return read_json(path, "metrics file")


def load_classifier(
    backbone: Mapping[str, Any], weights: str | os.PathLike[str], num_classes: int
) -> Classifier:
    """Rebuild a fine-tuned classifier from its ``model.pth`` (strictly).

    Args:
        backbone: The backbone spec it was built from (its weights are not loaded).
        weights: The classifier's state dict file.
        num_classes: Its number of classes.

    Returns:
        The classifier in eval mode.
    """
    clf = Classifier(create_backbone({**backbone, "weights": None}), num_classes)
    load_weights(clf, weights, "classifier weights")
    return clf.eval()


@dataclass(frozen=True)
class EvalSetup:
    """The common setup of a job that evaluates fine-tuned classifiers.

    Attributes:
        device: Where to compute.
        workers: Data-loader worker processes (:func:`~robustkd.engine.jobsetup.set_threads`).
        prepared: The prepared dataset the classifiers were fine-tuned on.
        view: The backbone's input view (its ``size`` is the input side in pixels).
        normalize: The backbone's pixel normalisation, on ``device``.
    """

    device: torch.device
    workers: int
    prepared: PreparedDataset
    view: ViewConfig
    normalize: Normalize

    def classifier(
        self, backbone: Mapping[str, Any], weights: str | os.PathLike[str]
    ) -> Classifier:
        """Rebuild one fine-tuned classifier of the dataset (:func:`load_classifier`)."""
        return load_classifier(backbone, weights, len(self.prepared.classes))


def eval_setup(
    *,
    backbone: Mapping[str, Any],
    views: Mapping[str, Any],
    data_dir: str | os.PathLike[str],
    threads: int,
    device: str,
) -> EvalSetup:
    """Resolve the device, set the CPU threads, open the dataset, and build the backbone's view.

    Args:
        backbone: The classifiers' backbone spec.
        views: The views config (``crop_scale``).
        data_dir: The prepared dataset.
        threads: CPU threads.
        device: Device name or ``auto``.
    """
    dev = resolve_device(device)
    workers = set_threads(threads)
    prepared = PreparedDataset(data_dir)
    view, normalize = input_view(views, backbone)
    return EvalSetup(dev, workers, prepared, view, normalize.to(dev))
