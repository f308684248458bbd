"""What the CRAFT report reads: every run's ``metrics.json``, and the names it prints.

:func:`load_runs` reads the teacher's and every student's metrics (paths from
:mod:`robustkd.craft.layout`) into :class:`Runs`; :data:`METHOD_LABELS` and
:func:`corruption_label` give the human names of methods and corruptions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from robustkd.craft import layout
from robustkd.readback import read_json

__all__ = [
    "METHOD_LABELS",
    "Runs",
    "corruption_label",
    "corruption_names",
    "frost_notes",
    "load_runs",
    "method_label",
]

METHOD_LABELS = {
    "erm": "ERM",
    "logitkd": "LogitKD",
    "attentionkd": "AttentionKD",
    "crd": "CRD",
    "craft": "CRAFT",
}
_CORRUPTION_LABELS = {
    "gaussian_noise": "Gaussian noise",
    "shot_noise": "Shot noise",
    "impulse_noise": "Impulse noise",
    "speckle_noise": "Speckle noise",
    "defocus_blur": "Defocus blur",
    "glass_blur": "Glass blur",
    "motion_blur": "Motion blur",
    "zoom_blur": "Zoom blur",
    "gaussian_blur": "Gaussian blur",
    "snow": "Snow",
    "frost": "Frost",
    "fog": "Fog",
    "brightness": "Brightness",
    "contrast": "Contrast",
    "elastic_transform": "Elastic",
    "pixelate": "Pixelate",
    "jpeg_compression": "JPEG",
    "saturate": "Saturate",
}


def method_label(method: str) -> str:
    """Human name of a method (its key where it has none)."""
    return METHOD_LABELS.get(method, method)


def corruption_label(name: str) -> str:
    """Human name of a corruption."""
    return _CORRUPTION_LABELS.get(name, name.replace("_", " "))


def corruption_names(corruptions: Sequence[str]) -> str:
    """Human names of corruptions, comma-separated."""
    return ", ".join(corruption_label(c) for c in corruptions)


@dataclass
class Runs:
    """Everything the report reads.

    Attributes:
        methods: Methods in table order.
        metrics: ``(method, seed) -> metrics.json`` content.
        paths: ``(method, seed) -> metrics.json`` path.
        teacher: The teacher's ``metrics.json``.
        teacher_path: Its path.
        heldout: Held-out corruptions; ``train``: CRAFT's training corruptions.
        frost_source: Which frost images the corrupted test set blended (its provenance's
            ``frost_source``; None where not recorded).
    """

    methods: list[str]
    metrics: dict[tuple[str, int], dict[str, Any]]
    paths: dict[tuple[str, int], str]
    teacher: dict[str, Any]
    teacher_path: str
    heldout: list[str]
    train: list[str]
    corruptions: list[str]
    severities: list[int]
    frost_source: str | None = None

    def seeds(self, method: str) -> list[int]:
        """Seeds of a method, sorted."""
        return sorted(s for m, s in self.metrics if m == method)


def load_runs(config: Mapping[str, Any]) -> Runs:
    """Read the teacher's and every student's ``metrics.json`` named by ``config``."""
    methods = list(config["methods"]["craft"])
    metrics, paths = {}, {}
    for m in methods:
        for s in config["seeds"]:
            p = layout.student_files(m, s)["metrics"]
            metrics[(m, int(s))] = read_json(p, "metrics file")
            paths[(m, int(s))] = p
    tpath = layout.teacher_files()["metrics"]
    cor = config["craft"]["corruptions"]
    return Runs(
        methods,
        metrics,
        paths,
        read_json(tpath, "teacher metrics file"),
        tpath,
        layout.heldout_corruptions(config),
        [c for c in cor["craft_train"] if c in cor["evaluate"]],
        list(cor["evaluate"]),
        [int(s) for s in cor["severities"]],
        _frost_source(),
    )


def _frost_source() -> str | None:
    """``frost_source`` of the corrupted test set's provenance (None if not recorded)."""
    try:
        record = json.loads((Path(layout.cifar10c_labels()).parent / "provenance.json").read_text())
    except (OSError, ValueError):
        return None
    return record.get("frost_source") if isinstance(record, dict) else None


def frost_notes(runs: Runs) -> list[str]:
    """A table note where frost did not blend the benchmark's photographs (else none)."""
    if "frost" not in runs.corruptions or str(runs.frost_source).startswith("photographs"):
        return []
    if runs.frost_source is None:
        return [
            "Frost: the corrupted test set's provenance does not record which frost images it "
            "blended (sets made before frost used the benchmark's photographs used procedural "
            "textures); regenerate it to compare frost with published numbers."
        ]
    return [
        "Frost uses procedural textures in place of the benchmark's photographs (the "
        "imagecorruptions package was not installed): not comparable with published frost "
        "numbers."
    ]
