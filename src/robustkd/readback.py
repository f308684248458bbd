"""Reading back the pipeline's own files: every failure names the file and what to do.

A job reads files an earlier job (or an earlier attempt of itself) wrote: checkpoints, weights,
metrics, arrays. A killed job, a full disk or a hand edit can leave one truncated or corrupt;
the error must then name the file instead of surfacing as a bare library traceback (torch's
"failed reading zip archive", ``json.JSONDecodeError``, NumPy's "cannot reshape").

Torch files are always loaded with ``weights_only=True``: a file holding pickled objects other
than tensors, numbers, strings and containers of them (e.g. a callable planted in a
``checkpoint.pt`` on a shared filesystem) is refused with :class:`UnsafeFileError` instead of
run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robustkd.errors import RobustKDError

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "UnreadableFileError",
    "UnsafeFileError",
    "load_array",
    "load_torch",
    "load_weights",
    "read_json",
]

_REDO = "delete it and rerun the job that writes it (Snakemake reruns a job whose output is gone)"


class UnreadableFileError(RobustKDError):
    """A file the pipeline wrote is missing, truncated or corrupt; the message names it.

    The message is ``"<reason>; <what to do>"``.

    Attributes:
        path: The file.
        reason: What is wrong, starting with the file's path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str, todo: str = "") -> None:
        super().__init__(f"{reason}; {todo or _REDO}")
        self.path = Path(path)
        self.reason = reason


class UnsafeFileError(UnreadableFileError):
    """A torch file holds pickled objects that ``weights_only`` loading refuses to create.

    Attributes:
        unsafe_globals: The refused objects (``"module.name"``), as torch lists them.
    """

    def __init__(self, path: str | os.PathLike[str], what: str, unsafe: list[str]) -> None:
        super().__init__(
            path,
            f"{path}: refused to load {what}: it holds pickled objects that are not tensors, "
            f"numbers or strings ({', '.join(unsafe)}), which loading would run as code",
            f"robustkd never writes such a file: check who wrote it, then {_REDO}",
        )
        self.unsafe_globals = list(unsafe)


def _what_failed(path: Path, what: str, exc: BaseException) -> str:
    return f"{path}: unreadable {what} ({type(exc).__name__}: {str(exc).splitlines()[0]})"


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse a JSON file.

    Args:
        path: The file.
        what: What it is, for the message (``"metrics file"``).

    Returns:
        The parsed value.

    Raises:
        UnreadableFileError: Missing, unreadable or not JSON (names the file).
    """
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(path, _what_failed(path, what, exc)) from exc


def load_torch(path: str | os.PathLike[str], what: str = "torch file") -> Any:
    """Load a file written by ``torch.save``, with ``weights_only=True``, onto the CPU.

    Args:
        path: The file.
        what: What it is, for the message (``"checkpoint"``, ``"weights file"``).

    Returns:
        The loaded object (tensors, numbers, strings, and lists, tuples and dicts of them).

    Raises:
        UnsafeFileError: The file holds other pickled objects (names the file and the objects);
            it is not loaded.
        UnreadableFileError: Missing, truncated or corrupt (names the file).
    """
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, OSError...
        error = exc
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a readable zip archive either: corrupt, not unsafe
        unsafe = []
    if unsafe:
        raise UnsafeFileError(path, what, unsafe) from error
    raise UnreadableFileError(path, _what_failed(path, what, error)) from error


def load_weights(
    model: nn.Module, path: str | os.PathLike[str], what: str = "weights file"
) -> None:
    """Load a state dict file into ``model``, strictly (every key, every shape).

    Args:
        model: The model, built as the one that was saved.
        path: The ``.pth`` file written by :func:`robustkd.engine.checkpoint.save_weights`.
        what: What it is, for the message.

    Raises:
        UnsafeFileError: See :func:`load_torch`.
        UnreadableFileError: Unreadable, or keys or shapes that do not fit ``model`` (names
            the file).
    """
    state = load_torch(path, what)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:  # mismatch, or not a state dict
        raise UnreadableFileError(
            path,
            f"{path}: {what} does not fit the model ({str(exc).splitlines()[0]}); it was "
            "written for another configuration",
        ) from exc


def load_array(
    path: str | os.PathLike[str], what: str = "array file", *, mmap_mode: str | None = None
) -> np.ndarray:
    """Load a ``.npy`` file (never unpickling objects).

    Args:
        path: The file.
        what: What it is, for the message.
        mmap_mode: As for :func:`numpy.load` (``"r"`` maps the file instead of reading it).

    Returns:
        The array.

    Raises:
        UnreadableFileError: Missing, truncated or not a ``.npy`` array (names the file).
    """
    path = Path(path)
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise UnreadableFileError(path, _what_failed(path, what, exc)) from exc
    if not isinstance(array, np.ndarray):  # an .npz archive
        raise UnreadableFileError(path, f"{path}: {what} is not a .npy array")
    return array
