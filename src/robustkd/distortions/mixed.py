"""The ``mixed`` distortion: one of several settings per image and step, for one student of all.

The main paper trains one encoder per distortion and leaves a single model for mixed or unknown
distortions to future work (issue 17). ``mixed`` draws, for each image of a batch, one of a
configured set of settings (by default the six Table 1 settings, uniformly; optionally clean
images as well) and applies it::

    mixed = create_distortion({
        "family": "mixed",
        "settings": {"mask-0.90": {"family": "mask", "p": 0.9},
                     "noise-0.5": {"family": "noise", "sigma": 0.5}},
        "include_clean": True,
        "rates": {"mask-0.90": 2, "noise-0.5": 1, "clean": 1},  # optional weights
    })
    xd = mixed(x, generator=g)      # x: (B, C, H, W) in [0, 1]
    mixed.last_counts()             # {"mask-0.90": tensor(k1), ...}, on x's device

The draw is made on the device from the generator given, first the settings (one categorical
draw per image), then each setting's own randomness in the order configured, so a resumed step
(same generator seed) redraws exactly the same images (as for ``mask`` and ``noise``). Every
setting is applied to the whole batch and the drawn one is selected per image with
``torch.where``: K settings cost K times one distortion (small beside a ViT's forward pass),
and the device never waits for the host (boolean indexing would synchronise it per setting).

Config entries name the settings (``settings: [mask-0.75, ...]``);
:func:`robustkd.config.distortion_entry` replaces the names by their entries, which is what
the jobs receive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from robustkd.distortions.base import (
    Distortion,
    create_distortion,
    register_distortion,
    strip_distortion_meta,
)

__all__ = ["CLEAN", "COUNT_PREFIX", "MixedDistortion", "draw_counts"]

#: Name of the "no distortion" setting of a mixed distortion (its rates key, its log key).
CLEAN = "clean"
#: Prefix of the per-setting draw counts in a training log line (``n_draw/mask-0.90``).
COUNT_PREFIX = "n_draw/"


@register_distortion("mixed")
class MixedDistortion(Distortion):
    """Per image, one of several distortion settings (or clean), drawn at configured rates.

    Args:
        settings: Setting name -> its config entry (``{"family": ..., **parameters}``; a
            ``stands_for`` key is ignored). At least one; none may itself be ``mixed``.
        include_clean: Draw clean (undistorted) images as one more setting, named ``clean``.
        rates: Setting name -> non-negative weight (normalised to sum 1); ``None`` draws every
            setting (and clean) uniformly. When given, it must name every setting (and
            ``clean`` when included) and nothing else; a weight of 0 never draws the setting.
            Default uniform rates are **assumed** (issue 17), not from the paper.

    Raises:
        ValueError: No setting, a nested ``mixed``, an invalid entry, or rates that do not
            match the settings or are negative / all zero (the message names the key).
    """

    def __init__(
        self,
        settings: Mapping[str, Mapping[str, Any]],
        include_clean: bool = False,
        rates: Mapping[str, float] | None = None,
    ) -> None:
        if not isinstance(settings, Mapping) or not settings:
            raise ValueError(
                "distortion 'mixed': parameter 'settings' must map at least one setting name "
                f"to its config entry, got {settings!r}"
            )
        if not isinstance(include_clean, bool):
            raise ValueError(
                f"distortion 'mixed': parameter 'include_clean' must be true or false, "
                f"got {include_clean!r}"
            )
        if CLEAN in settings:
            raise ValueError(
                f"distortion 'mixed': {CLEAN!r} is not a setting name; use include_clean"
            )
        self.parts: dict[str, Distortion] = {}
        for name, spec in settings.items():
            if not isinstance(spec, Mapping) or spec.get("family") == "mixed":
                raise ValueError(
                    f"distortion 'mixed': setting {name!r} must be a non-mixed distortion "
                    f"entry, got {spec!r}"
                )
            self.parts[str(name)] = create_distortion(strip_distortion_meta(spec))
        self.include_clean = include_clean
        self.names: tuple[str, ...] = (*self.parts, *((CLEAN,) if include_clean else ()))
        self.rates = self._check_rates(rates)
        self.last_draw: Tensor | None = None  # (B,) setting index of each image, last call
        self._probs_on: dict[torch.device, Tensor] = {}  # probabilities() per device

    def _check_rates(self, rates: Mapping[str, float] | None) -> dict[str, float] | None:
        if rates is None:
            return None
        if not isinstance(rates, Mapping):
            raise ValueError(
                f"distortion 'mixed': parameter 'rates' must be a mapping, got {rates!r}"
            )
        if set(rates) != set(self.names):
            raise ValueError(
                f"distortion 'mixed': parameter 'rates' must name exactly the settings "
                f"{list(self.names)}, got {sorted(rates)}"
            )
        out = {}
        for name in self.names:
            value = rates[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(
                    f"distortion 'mixed': rates.{name} must be a number >= 0, got {value!r}"
                )
            out[name] = float(value)
        if sum(out.values()) <= 0:
            raise ValueError("distortion 'mixed': parameter 'rates' are all 0")
        return out

    def params(self) -> dict[str, Any]:
        """Return ``{"settings": {name: entry}, "include_clean": ..., "rates": ...}``."""
        return {
            "settings": {n: d.describe() for n, d in self.parts.items()},
            "include_clean": self.include_clean,
            "rates": None if self.rates is None else dict(self.rates),
        }

    def __hash__(self) -> int:
        return hash(json.dumps(self.describe(), sort_keys=True))

    def probabilities(self) -> Tensor:
        """Return the (K,) float64 probability of each setting of :attr:`names` (sum 1)."""
        if self.rates is None:
            w = torch.ones(len(self.names), dtype=torch.float64)
        else:
            w = torch.tensor([self.rates[n] for n in self.names], dtype=torch.float64)
        return w / w.sum()

    def _device_probabilities(self, device: torch.device) -> Tensor:
        """:meth:`probabilities` as float32 on ``device``, copied there once (not every step)."""
        if device not in self._probs_on:
            self._probs_on[device] = self.probabilities().to(device=device, dtype=torch.float32)
        return self._probs_on[device]

    def _apply(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        b = x.shape[0]
        probs = self._device_probabilities(x.device)  # (K,)
        draw = torch.multinomial(probs, b, replacement=True, generator=generator)  # (B,)
        self.last_draw = draw
        out = x
        for k, part in enumerate(self.parts.values()):
            chosen = (draw == k).view(b, 1, 1, 1)  # (B, 1, 1, 1)
            out = torch.where(chosen, part._apply(x, generator), out)  # (B, C, H, W)
        return out  # images drawn clean (index K - 1 with include_clean) keep x

    def last_counts(self) -> dict[str, Tensor]:
        """Images per setting of the last call (global batch), as 0-d device tensors.

        Raises:
            RuntimeError: Nothing was drawn yet.
        """
        if self.last_draw is None:
            raise RuntimeError("distortion 'mixed': no batch distorted yet")
        # A comparison with every index, not bincount: on a GPU bincount reads the largest
        # value to the host to size its output (a synchronisation per step).
        index = torch.arange(len(self.names), device=self.last_draw.device)  # (K,)
        counts = (self.last_draw[:, None] == index).sum(dim=0)  # (K,) int64
        return {n: counts[k] for k, n in enumerate(self.names)}


def draw_counts(distortion: object) -> dict[str, Tensor]:
    """Per-setting image counts of a mixed distortion's last draw, as log components.

    Args:
        distortion: Any object (a task's ``distortion``); only a :class:`MixedDistortion`
            that has drawn gives counts.

    Returns:
        ``{"n_draw/<setting>": 0-d tensor}`` (device tensors: no host synchronisation), or
        ``{}`` for anything else.
    """
    if not isinstance(distortion, MixedDistortion) or distortion.last_draw is None:
        return {}
    return {COUNT_PREFIX + n: c for n, c in distortion.last_counts().items()}
