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

import copy
import json
import logging
import os
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from robustkd.atomic import write_with
from robustkd.errors import RobustKDError
from robustkd.joblog import note_checkpoint
from robustkd.provenance import code_digest
from robustkd.readback import UnreadableFileError, UnsafeFileError, load_torch

__all__ = [
    "CheckpointWriter",
    "InexactResumeError",
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


class InexactResumeError(RobustKDError):
    """A checkpoint cannot be resumed exactly here (the message says why)."""


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


def restore_rng(state: Mapping[str, Any], device: torch.device | None = None) -> None:
    """Restore generator states captured by :func:`capture_rng`.

    The CUDA states are those of every GPU the saving process saw. With fewer visible now,
    those of the GPUs present are restored and the others dropped (a warning names them):
    the run stays exact as long as it computes on a GPU whose state was saved.

    Args:
        state: The checkpoint's ``rng`` entry.
        device: Where the resumed run computes (None: not checked).

    Raises:
        InexactResumeError: The run computes on a GPU whose state the checkpoint lacks.
    """
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
    if state.get("cuda") and torch.cuda.is_available():
        _restore_cuda_rng(list(state["cuda"]), device)


def _restore_cuda_rng(saved: list[torch.Tensor], device: torch.device | None) -> None:
    """Restore the saved CUDA states of the GPUs present; refuse if ``device``'s is missing."""
    present = torch.cuda.device_count()
    if device is not None and device.type == "cuda":
        used = torch.cuda.current_device() if device.index is None else device.index
        if used >= len(saved):
            raise InexactResumeError(
                f"cannot resume exactly on cuda:{used}: the checkpoint holds the CUDA random "
                f"states of {len(saved)} GPU(s) (cuda:0..{len(saved) - 1}); run the job as it "
                "was run, or delete the checkpoint to train afresh"
            )
    if present < len(saved):
        dropped = ", ".join(f"cuda:{i}" for i in range(present, len(saved)))
        log.warning(
            "the checkpoint holds the CUDA random states of %d GPUs, %d are visible now: "
            "restored those of cuda:0..%d, dropped %s (unused by this run)",
            len(saved),
            present,
            present - 1,
            dropped,
        )
    torch.cuda.set_rng_state_all(saved[:present])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    # Through a Python file object: torch's own writer, given a path, hides the cause of a
    # failed write ("[enforce fail at inline_container.cc] unexpected pos"); given a file, the
    # OSError (a full disk) stays in the chain and robustkd.atomic names it.
    write_with(path, lambda fh: torch.save(obj, fh))


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
        OutputError: The write failed (a full disk: the message names the file, the free
            space and its mount point); no file is left half-written.
    """
    assert_finite_parameters(model, str(path))
    _atomic_torch_save({"model": model.state_dict(), "rng": capture_rng(), **state}, Path(path))
    note_checkpoint(path, state.get("step"))  # what an interrupt's last line names


def _host_copy(obj: Any) -> Any:
    """``obj`` with every tensor copied to new CPU memory (containers rebuilt, rest shared).

    A dict keeps its class and attributes (a state dict's ``OrderedDict`` and ``_metadata``),
    so the file pickled from the copy is byte for byte the one pickled from ``obj``.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = copy.copy(obj)
        for k, v in obj.items():
            out[k] = _host_copy(v)
        return out
    if isinstance(obj, list | tuple):
        return type(obj)(_host_copy(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes the checkpoints of a run, in the loop's thread or on a background thread.

    Asynchronous, :meth:`save` checks the weights, copies the whole state to host memory (the
    loop may then change the weights) and writes that copy on a thread, to the same atomic file
    as :func:`save_checkpoint` (temporary file, then rename): a crash mid-write leaves the
    previous checkpoint whole. Exactly one write is in flight: the next :meth:`save` (and
    :meth:`wait`, and leaving the ``with`` block) first waits for it and raises its error.

    Args:
        asynchronous: Write on a background thread (``checkpoint_async``).
    """

    def __init__(self, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        model: nn.Module,
        state: dict[str, Any],
        wait: bool = False,
    ) -> None:
        """Write a checkpoint as :func:`save_checkpoint` does, in the background unless ``wait``.

        Args:
            path: The checkpoint file.
            model: The trained model (its weights are checked for finiteness first).
            state: Everything else.
            wait: Write before returning (a preemption's checkpoint), even when asynchronous.

        Raises:
            NonFiniteError: A weight is non-finite; nothing is written.
            OutputError: This write, or the one in flight before it, failed.
        """
        self.wait()
        if not self.asynchronous or wait:
            save_checkpoint(path, model=model, state=state)
            return
        assert_finite_parameters(model, str(path))
        snapshot = _host_copy({"model": model.state_dict(), "rng": capture_rng(), **state})
        self._thread = threading.Thread(
            target=self._write, args=(snapshot, Path(path)), name="checkpoint-writer"
        )
        self._thread.start()

    def _write(self, obj: dict[str, Any], path: Path) -> None:
        try:
            _atomic_torch_save(obj, path)
        except BaseException as exc:  # raised in the loop's thread by wait()
            self._error = exc

    def wait(self) -> None:
        """Wait for the write in flight, if any.

        Raises:
            OutputError: That write failed (its file is not written; the previous one stays).
        """
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.wait()
        elif self._thread is not None:  # already failing: the write completes, its error is lost
            self._thread.join()
            self._thread = None


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
        OutputError: The write failed (a full disk: the message names the file, the free
            space and its mount point); no file is left half-written.
    """
    assert_finite_parameters(model, str(path))
    _atomic_torch_save(model.state_dict(), Path(path))


# Settings that do not change the result: a run may resume with other values of them.
_NOT_IDENTITY = ("workers", "log_every", "checkpoint_every", "checkpoint_async")


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
            dict); ``workers``, ``log_every``, ``checkpoint_every`` and ``checkpoint_async`` do
            not count.
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
