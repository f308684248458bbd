"""Checkpoints that let a training job stop at any moment and resume exactly.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the step and epoch,
every RNG state (Python, NumPy, torch CPU and accelerator) and the resolved config. It is written
to a temporary file and renamed, and refused if any weight is non-finite.

Everything in it is a tensor, a number, a string or a container of them, so it loads with
``weights_only=True`` (:func:`robustkd.readback.load_torch`): a checkpoint on a shared
filesystem cannot run code in the jobs that resume from it. An unreadable checkpoint (a
truncated file from a killed job) is moved aside and the run trains afresh; one holding other
pickled objects is refused with an error.
"""

from __future__ import annotations

import json
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustkd.errors import RobustKDError
from robustkd.joblog import note_checkpoint
from robustkd.provenance import code_digest
from robustkd.readback import UnreadableFileError, UnsafeFileError, load_torch

__all__ = [
    "NonFiniteError",
    "assert_finite_parameters",
    "capture_rng",
    "load_checkpoint",
    "restore_rng",
    "run_identity",
    "save_checkpoint",
    "save_weights",
    "stale_fields",
]

log = logging.getLogger(__name__)


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
    """Return the state of every random generator of this process.

    Only tuples, numbers, strings and tensors, so a checkpoint holding it loads with
    ``weights_only=True``: NumPy's key array (624 uint32) is stored as an int64 tensor.
    """
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Restore generator states captured by :func:`capture_rng`."""
    random.setstate(state["python"])
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
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
    note_checkpoint(path, state.get("step"))  # what an interrupt's last line names


def load_checkpoint(
    path: str | os.PathLike[str], *, set_aside: bool = True
) -> dict[str, Any] | None:
    """Load a checkpoint written by :func:`save_checkpoint`, or None if there is none.

    A file that cannot be read (truncated by a kill, corrupt, not a checkpoint) is treated like
    a foreign checkpoint: a warning names it, it is renamed to ``<name>.unreadable`` (replacing
    an earlier one) so the evidence stays, and None is returned, so the run trains afresh
    instead of failing on every rerun.

    Args:
        path: The checkpoint file.
        set_aside: Rename an unreadable file (only rank 0 of a torchrun job does).

    Returns:
        The checkpoint dict (tensors on CPU), or None when there is no readable one.

    A checkpoint of an older robustkd, which stored NumPy arrays, is set aside likewise
    without being loaded (it could not be resumed anyway: the code changed).

    Raises:
        UnsafeFileError: The file holds other pickled objects than tensors, numbers and
            strings (names the file and the objects); it is not loaded, and not moved.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = load_torch(path, "checkpoint")
    except UnsafeFileError as exc:
        if not all(g.startswith("numpy.") for g in exc.unsafe_globals):
            raise
        problem = f"{path}: written by an older robustkd (it holds NumPy arrays)"
    except UnreadableFileError as exc:
        problem = exc.reason
    else:
        if isinstance(ckpt, dict) and "model" in ckpt:
            return ckpt
        problem = f"{path}: not a training checkpoint (no 'model' entry)"
    aside = path.with_name(f"{path.name}.unreadable")
    if set_aside:
        try:
            os.replace(path, aside)
        except FileNotFoundError:  # another rank's attempt, or a concurrent rerun, moved it
            pass
    log.warning(
        "%s; %s; training starts afresh", problem, f"moved to {aside}" if set_aside else "ignored"
    )
    return None


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


# Settings that do not change the result: a run may resume with other values of them.
_NOT_IDENTITY = ("workers", "log_every", "checkpoint_every")


def run_identity(
    settings: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    seed: int,
    dataset: Any,
    total: int,
) -> dict[str, str]:
    """What a checkpoint must match to be resumed: code, settings, seed, data (as JSON).

    Args:
        settings: The training settings (:class:`~robustkd.engine.optim.TrainConfig` as a
            dict); ``workers``, ``log_every`` and ``checkpoint_every`` do not count.
        record: The resolved config the run stores in its checkpoints.
        seed: The run's seed.
        dataset: The training set (its ``fingerprint()``, if it has one, names the data).
        total: Steps of the run.

    Returns:
        ``code``, ``training settings``, ``config`` and ``data``, each as a JSON string.

    The record's ``train`` entry (the jobs record the training settings there too) is left out
    of ``config``: the training settings are compared without the result-neutral ones.
    """
    train_cfg = {k: v for k, v in settings.items() if k not in _NOT_IDENTITY}
    fingerprint = getattr(dataset, "fingerprint", None)
    fields = {
        "code": code_digest(),
        "training settings": {**train_cfg, "steps": total, "seed": seed},
        "config": {k: v for k, v in (record or {}).items() if k != "train"},
        "data": fingerprint() if callable(fingerprint) else None,
    }
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in fields.items()}


def stale_fields(saved: Mapping[str, str] | None, current: Mapping[str, str]) -> str | None:
    """Name what differs between a checkpoint's identity and this run's; None if nothing."""
    if saved is None:
        return "or unrecorded code, settings and data"
    differ = [k for k in current if saved.get(k) != current[k]]
    return " and ".join(differ) or None
