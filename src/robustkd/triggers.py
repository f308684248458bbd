"""What reruns a job: params free of checkout paths and of settings that change no result.

Snakemake reruns a job whose params changed since its outputs were made (the default rerun
trigger ``params``): it stores ``repr()`` of each param value in ``.snakemake/metadata`` and
compares it with the current one. Two kinds of value are kept out of that comparison:

- **The checkout's location.** A file shipped with the workflow (the class lists) is opened at
  ``<checkout>/config/...``, an absolute path that a re-clone, a moved checkout or a second
  clone changes. :class:`WorkflowFile` is that path for the job, but its ``repr()`` is the
  path as the config wrote it and the file's sha256: the same commit anywhere compares equal,
  and a changed file (its content) reruns the jobs that read it.
- **Operational settings** (:data:`OPERATIONAL_KEYS`): how often a job checkpoints or prints
  progress changes no output. The rules pass :func:`scientific` values as params; a job takes
  the operational ones from its ``snakemake.config`` (:func:`with_operational`), so they still
  reach its training settings and its provenance record. Everything else in the config is
  scientific and stays a trigger, ``amp``, ``amp_dtype`` and ``compile`` included (they
  change the arithmetic). Threads, GPUs, memory and time limits are resources, never params.

Snakemake's own ``code`` trigger sees a rule's script file, not the library under ``src/`` that
the script imports. The rules that only read results and write tables, figures, claims and
pages take :func:`library_digest` as a param, so a change to the library (the claims' decision
rule, a table's layout) reruns them, at a few seconds each. Training and evaluation jobs do not:
a library change would rerun hours of them for a docstring; ``--forcerun <rule>`` reruns them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustkd.codesource import source_digest

__all__ = [
    "OPERATIONAL_KEYS",
    "WorkflowFile",
    "config_section",
    "library_digest",
    "scientific",
    "with_operational",
]

# Keys of a training section (training.*, backbones.*.pretrain, craft.*.train) that change no
# output: a run resumes across other values of them (robustkd.engine.checkpoint.run_identity).
OPERATIONAL_KEYS = frozenset({"checkpoint_every", "checkpoint_async", "log_every"})


class WorkflowFile(str):
    """A file path of the config as jobs open it, compared by Snakemake by content.

    The string itself is the path to open (absolute for a file of the checkout). ``repr()``,
    which Snakemake's params trigger stores and compares, names the path as the config gave
    it and the file's sha256 instead: ``WorkflowFile('config/imagenet100.txt',
    sha256='79f3...')``. Pickling (a script job's ``snakemake`` object, torchrun's job spec)
    gives the plain path, so a job never needs this class to read its params.

    Attributes:
        written: The path as the config gave it.
        sha256: The file's sha256 when the workflow was loaded.
    """

    written: str
    sha256: str

    def __new__(
        cls,
        path: str | os.PathLike[str],
        written: str | None = None,
        *,
        at: str | os.PathLike[str] | None = None,
    ) -> WorkflowFile:
        """The file ``path``, hashed now.

        Args:
            path: The path jobs open.
            written: Its config value (default: ``path``).
            at: Where to read it from here, if not at ``path`` (a path relative to another
                working directory).

        Raises:
            OSError: The file cannot be read.
        """
        obj = super().__new__(cls, os.fspath(path))
        obj.written = os.fspath(path) if written is None else written
        with open(path if at is None else at, "rb") as fh:
            obj.sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
        return obj

    def __repr__(self) -> str:
        return f"WorkflowFile({self.written!r}, sha256={self.sha256!r})"

    def __reduce__(self) -> tuple[type[str], tuple[str]]:
        return (str, (str(self),))

    def __copy__(self) -> WorkflowFile:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> WorkflowFile:
        return self


def library_digest(package: str | os.PathLike[str]) -> str:
    """sha256 of a package's Python source: every ``*.py`` below ``package``, by content.

    The same as :func:`robustkd.codesource.source_digest` over the package-relative paths and
    the sha256 of each file's bytes, so two copies of the same source (a re-clone, another
    folder) give the same digest and caches (``__pycache__``) count for nothing.

    Args:
        package: The package's folder (e.g. the checkout's ``src/robustkd``).

    Returns:
        The 64-character hex digest.

    Raises:
        FileNotFoundError: ``package`` is not a folder holding Python files.
    """
    root = Path(package)
    files = {
        f.relative_to(root).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in root.rglob("*.py")
        if "__pycache__" not in f.parts
    }
    if not files:
        raise FileNotFoundError(f"{root}: no Python source to digest")
    return source_digest(files)


def scientific(value: Any) -> Any:
    """``value`` without its operational settings: the form rules give as params.

    Args:
        value: A config value (mappings and lists are walked; other values kept as they are).

    Returns:
        A new value in which no mapping, at any depth, has a key of :data:`OPERATIONAL_KEYS`.
    """
    if isinstance(value, Mapping):
        return {k: scientific(v) for k, v in value.items() if k not in OPERATIONAL_KEYS}
    if isinstance(value, list | tuple):
        return type(value)(scientific(v) for v in value)
    return value


def config_section(config: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key of a config (``training.distill``), or None if absent."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def with_operational(settings: Mapping[str, Any], config: Mapping[str, Any], key: str) -> Any:
    """The settings a job runs with: its params plus the operational values of its config.

    Args:
        settings: The job's params value (:func:`scientific` of the config section).
        config: The job's config (``snakemake.config``).
        key: The dotted key of the section in the config (``training.distill``,
            ``backbones.vit``, ``craft``).

    Returns:
        A new mapping: ``settings`` with each operational key of the section put back at its
        place (only where ``settings`` has the mapping that holds it).
    """
    return _merge(settings, config_section(config, key))


def _merge(settings: Any, section: Any) -> Any:
    if not isinstance(settings, Mapping):
        return settings
    out = dict(settings)
    if not isinstance(section, Mapping):
        return out
    for k, v in section.items():
        if k in OPERATIONAL_KEYS:
            out[k] = v
        elif k in out:
            out[k] = _merge(out[k], v)
    return out
