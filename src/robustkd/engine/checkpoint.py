"""Checkpoints that let a training job stop at any moment and resume exactly.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the step and epoch,
every RNG state (Python, NumPy, torch CPU and accelerator) and the resolved config. It is written
to a temporary file and renamed, and refused if any weight is non-finite.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustkd.errors import RobustKDError

__all__ = [
    "NonFiniteError",
    "assert_finite_parameters",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "save_checkpoint",
    "save_weights",
]


class NonFiniteError(RobustKDError):
    """A loss or a weight became NaN or infinite."""


def assert_finite_parameters(model: nn.Module, what: str) -> None:
    """Raise if any parameter or buffer of ``model`` is non-finite.

    Args:
        model: The model to check.
        what: What is being saved, for the message.

    Raises:
        NonFiniteError: Naming the first non-finite tensor.
    """
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise NonFiniteError(f"{what}: non-finite values in {name}; not saved")


def capture_rng() -> dict[str, Any]:
    """Return the state of every random generator of this process."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore generator states captured by :func:`capture_rng`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(
    path: str | os.PathLike[str], *, model: nn.Module, state: dict[str, Any]
) -> None:
    """Atomically write a training checkpoint.

    Args:
        path: The checkpoint file.
        model: The trained model (its weights are checked for finiteness first).
        state: Everything else: optimizer, scheduler, scaler, step, epoch, config, ...

    Raises:
        NonFiniteError: A weight is non-finite; nothing is written.
    """
    assert_finite_parameters(model, str(path))
    _atomic_torch_save({"model": model.state_dict(), "rng": capture_rng(), **state}, Path(path))


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Load a checkpoint written by :func:`save_checkpoint`, or None if there is none.

    Args:
        path: The checkpoint file.

    Returns:
        The checkpoint dict (tensors on CPU), or None when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def save_weights(path: str | os.PathLike[str], model: nn.Module) -> None:
    """Atomically write a model's state dict (the format timm loads from a local file).

    Args:
        path: The weights file (``.pth``).
        model: The model.

    Raises:
        NonFiniteError: A weight is non-finite; nothing is written.
    """
    assert_finite_parameters(model, str(path))
    _atomic_torch_save(model.state_dict(), Path(path))
