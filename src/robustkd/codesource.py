"""Which source of robustkd this process runs: every module's file and the sha256 of its bytes.

A provenance record names the code that produced an output. A git commit alone cannot do that
truthfully: the process may import another copy of the package than the checkout the commit
belongs to, or files edited since the commit. So the package records, as it imports itself,
the bytes it compiles:

- :func:`install` (called by ``robustkd/__init__.py``) puts a finder in front of
  ``sys.meta_path`` that loads every ``robustkd.*`` submodule from the source bytes it hashes
  (never from a cached ``.pyc``), so the recorded digest is that of the code that runs;
- :func:`imported_source` returns where the package lives, the per-file digests and their
  combined digest, for :func:`robustkd.provenance.write_provenance`;
- :func:`compare_with_commit` checks such a record against the files of a git commit (what
  ``robustkd audit`` does with each record claiming a clean commit).

Only this module and ``__init__.py`` are read before the finder exists; they are hashed from
their files when it is installed.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import os
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "PACKAGE_IN_REPO",
    "USE_INSTALLED_ENV",
    "compare_with_commit",
    "imported_source",
    "install",
    "source_digest",
]

# The package's folder inside a checkout (pyproject.toml: packages found under src/).
PACKAGE_IN_REPO = "src/robustkd"
# Set to 1 to let the workflow's jobs run an installed robustkd instead of the checkout's src/.
USE_INSTALLED_ENV = "ROBUSTKD_USE_INSTALLED"

_PACKAGE = "robustkd"
_ROOT = Path(__file__).resolve().parent
_lock = threading.Lock()
# Package-relative path ("engine/loop.py") -> sha256 of the bytes compiled.
_sources: dict[str, str] = {}


def _record(path: str | os.PathLike[str], data: bytes) -> None:
    rel = Path(path).resolve().relative_to(_ROOT).as_posix()
    with _lock:
        _sources[rel] = hashlib.sha256(data).hexdigest()


class _HashingLoader(importlib.machinery.SourceFileLoader):
    """A source loader that compiles the bytes it read and records their sha256."""

    def get_code(self, fullname: str) -> Any:  # noqa: D102 (importlib's documented API)
        data = self.get_data(self.path)
        _record(self.path, data)
        return self.source_to_code(data, self.path)


class _RecordingFinder(importlib.abc.MetaPathFinder):
    """Finds ``robustkd.*`` submodules as the path finder does, with a hashing loader."""

    def find_spec(  # noqa: D102 (importlib's documented API)
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith(f"{_PACKAGE}."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec  # a sourceless or zipped module: the digest will not list it
        if not Path(spec.origin).resolve().is_relative_to(_ROOT):
            return spec
        spec.loader = _HashingLoader(fullname, spec.origin)
        return spec


def install() -> None:
    """Record the source of every ``robustkd`` module imported from now on (idempotent)."""
    if any(isinstance(f, _RecordingFinder) for f in sys.meta_path):
        return
    for name in ("__init__.py", "codesource.py"):
        path = _ROOT / name
        _record(path, path.read_bytes())
    sys.meta_path.insert(0, _RecordingFinder())


def source_digest(files: Mapping[str, str]) -> str:
    """sha256 over package-relative paths and their sha256s, in path order.

    Args:
        files: Package-relative path -> sha256 of its content.

    Returns:
        The 64-character hex digest.
    """
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def imported_source() -> dict[str, Any]:
    """Where the imported package lives and the digest of the source it compiled so far.

    Returns:
        ``{"package": absolute folder, "files": {relative path: sha256}, "sha256": digest of
        the files, "installed_on_purpose": whether USE_INSTALLED_ENV was set}``.
    """
    with _lock:
        files = dict(_sources)
    return {
        "package": str(_ROOT),
        "files": files,
        "sha256": source_digest(files),
        "installed_on_purpose": os.environ.get(USE_INSTALLED_ENV, "") not in ("", "0"),
    }


def _committed_sha256(repo: Path, commit: str, rels: Sequence[str]) -> dict[str, str | None]:
    """sha256 of ``PACKAGE_IN_REPO/<rel>`` at ``commit`` (None: no such file in the commit)."""
    specs = "".join(f"{commit}:{PACKAGE_IN_REPO}/{rel}\n" for rel in rels)
    out = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "--batch"],
        input=specs.encode(),
        capture_output=True,
        check=True,
    ).stdout
    found: dict[str, str | None] = {}
    pos = 0
    for rel in rels:
        end = out.index(b"\n", pos)
        header = out[pos:end].split()
        pos = end + 1
        if len(header) != 3:  # "<spec> missing"
            found[rel] = None
            continue
        size = int(header[2])
        found[rel] = hashlib.sha256(out[pos : pos + size]).hexdigest()
        pos += size + 1
    return found


def compare_with_commit(code: Mapping[str, Any], repo: str | os.PathLike[str]) -> list[str] | None:
    """Compare a record's imported source with the files of its commit in ``repo``.

    Args:
        code: A provenance record's ``code`` entry (``commit`` and ``source.files``).
        repo: A folder of a git repository that may hold the commit.

    Returns:
        The package-relative files whose recorded sha256 differs from (or is absent in) the
        commit, sorted; an empty list when all match; None when the record lists no files or
        no commit, or ``repo`` does not hold the commit (nothing could be checked).
    """
    files = (code.get("source") or {}).get("files") or {}
    commit = code.get("commit")
    if not files or not commit:
        return None
    try:
        subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"],
            capture_output=True,
            check=True,
        )
        committed = _committed_sha256(Path(repo), commit, sorted(files))
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted(rel for rel, sha in files.items() if committed[rel] != sha)
