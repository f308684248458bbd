"""Raw files as people actually have them, read the same way by every dataset reader.

Common tools change layout details when users re-save or unpack a dataset. What is unambiguous
is accepted here, once for every reader:

- text files (CSV tables, name lists) with a UTF-8 byte-order mark, CRLF line endings, blank
  lines or stray spaces; CSV tables with quoted fields, columns in another order, extra columns,
  an index column added by pandas (or one taken away), or ``;`` / tab separators (Excel);
  whole numbers written as ``1.0``;
- release folders unpacked one level too deep (``x/x/``), straight into the root, or inside
  one extra folder; ``__MACOSX``, ``.DS_Store`` and other hidden entries (``._*`` files that
  macOS writes beside every file) are ignored;
- file names whose extension differs only in case (``.JPG`` for ``.jpg``).

Anything else is an error naming the file, and the line or column, and saying what differs
from the official release.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from robustkd.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "find_case_insensitive",
    "find_release_dir",
    "is_junk",
    "read_csv_table",
    "read_lines",
    "verify_lines_md5",
    "whole_numbers",
]

_JUNK = {"__MACOSX", "Thumbs.db", "desktop.ini"}
_SEPARATORS = (",", ";", "\t")


def is_junk(name: str) -> bool:
    """Whether a directory entry is operating-system clutter (``__MACOSX``, hidden, ``._*``)."""
    return name in _JUNK or name.startswith(".")


def _decode(path: Path) -> str:
    """A text file's content without BOM; UTF-8, else Latin-1 (an Excel export's code page)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    """The non-blank lines of a text file, stripped (BOM, CRLF and spaces do not matter).

    Raises:
        DataError: The file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    return [s for line in _decode(path).splitlines() if (s := line.strip())]


def verify_lines_md5(
    path: str | os.PathLike[str], expected: str | None, official_count: int | None = None
) -> list[str]:
    """Read a list file and check it against the md5 of the official file.

    The file passes when its bytes have the md5, or when its lines do once normalised (LF line
    endings, no BOM, no blank lines or stray spaces, a final newline): the names are then
    exactly the official ones.

    Args:
        path: The list file.
        expected: The official md5 (None: no check).
        official_count: Lines of the official file, quoted when the check fails.

    Returns:
        The names, in file order.

    Raises:
        DataError: Missing file, or its names differ from the official list (the message gives
            its md5 and line count against the official ones).
    """
    lines = read_lines(path)
    if expected is None:
        return lines
    expected = expected.lower()
    raw = hashlib.md5(Path(path).read_bytes()).hexdigest()
    normalised = hashlib.md5("".join(f"{s}\n" for s in lines).encode()).hexdigest()
    if expected not in (raw, normalised):
        count = f" (the official list has {official_count:,})" if official_count else ""
        raise DataError(
            f"{path}: md5 mismatch (expected {expected}, got {raw}): its {len(lines):,} names "
            f"are not the official list{count}, even ignoring line endings, BOM and blank "
            "lines; download the official file again"
        )
    return lines


def _header(text: str, required: Sequence[str]) -> tuple[str, list[str]]:
    """The separator and the column names of a CSV text's first line."""
    first = text.splitlines()[0] if text.strip() else ""
    best, names, hits = ",", [], -1
    for sep in _SEPARATORS:
        cand = [c.strip() for c in next(csv.reader([first], delimiter=sep), [])]
        n = len(set(cand) & set(required))
        if n > hits:
            best, names, hits = sep, cand, n
    return best, names


def read_csv_table(
    path: str | os.PathLike[str], required: Sequence[str], *, release: str
) -> pd.DataFrame:
    """Read the ``required`` columns of a CSV table, as strings, whatever tool saved it.

    Accepts a BOM, CRLF, quoted fields, any column order, extra columns, an unnamed index
    column (added by pandas or Excel, or missing), ``;`` or tab separators. Values are
    stripped strings; the frame's index is each row's line number in the file.

    Args:
        path: The CSV file.
        required: Columns that must be present.
        release: The official header line, quoted when a column is missing.

    Returns:
        A frame with exactly the ``required`` columns, index = line numbers (header = line 1).

    Raises:
        DataError: Missing or unparsable file, a required column missing or repeated.
    """
    import pandas as pd  # here: the readers of no CSV table (most jobs) skip its import

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    text = _decode(path)
    sep, names = _header(text, required)
    missing = [c for c in required if c not in names]
    if missing:
        found = ",".join(names) if any(names) else "(empty first line)"
        raise DataError(
            f"{path}: no column {', '.join(repr(c) for c in missing)} in the header "
            f"(found: {found}); the official file's header is {release!r}"
        )
    twice = sorted({c for c in required if names.count(c) > 1})
    if twice:
        raise DataError(f"{path}: column {', '.join(repr(c) for c in twice)} appears twice")
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from exc
    # A header one field short (an index saved without a name): pandas made that an index.
    df.columns = [str(c).strip() for c in df.columns]
    df = df[list(required)].apply(lambda col: col.str.strip())
    df.index = pd.RangeIndex(2, 2 + len(df))
    return df


def whole_numbers(df: pd.DataFrame, columns: Sequence[str], path: Path) -> pd.DataFrame:
    """Convert string columns to int64; ``1.0`` is 1 (a spreadsheet's re-save).

    Raises:
        DataError: A value is empty or not a whole number (names the line, column and value).
    """
    import pandas as pd

    out = pd.DataFrame(index=df.index)
    for col in columns:
        num = pd.to_numeric(df[col], errors="coerce")
        bad = num.isna() | ~np.isfinite(num) | (num != np.floor(num))
        if bad.any():
            line = df.index[bad.to_numpy()][0]
            raise DataError(
                f"{path}, line {line}: column {col!r} holds {df.at[line, col]!r}, "
                "not a whole number"
            )
        out[col] = num.astype(np.int64)
    return out


def find_release_dir(root: Path, name: str | None, holds: Callable[[Path], bool]) -> Path | None:
    """Find an unpacked release folder ``name`` for which ``holds(folder)`` is true.

    Looks at ``root/name``, ``root`` itself (unpacked straight into it), ``root/name/name``
    (unpacked into a folder of the same name, as Windows' "Extract all" does) and
    ``root/<any folder>/name``, skipping clutter such as ``__MACOSX``. With ``name=None``:
    ``root`` and each folder in it.

    Args:
        root: Where the user said the data is.
        name: The release's folder name, or None.
        holds: Whether a folder is the release (e.g. holds its ``metadata.csv``).

    Returns:
        The folder, or None when there is none.

    Raises:
        DataError: Several different folders qualify (the message lists them).
    """
    root = Path(root)
    subdirs = (
        [d for d in sorted(root.iterdir()) if d.is_dir() and not is_junk(d.name)]
        if root.is_dir()
        else []
    )
    if name is None:
        cands = [root, *subdirs]
    else:
        cands = [root / name, root, root / name / name, *(d / name for d in subdirs)]
    found: list[Path] = []
    for c in cands:
        if c.is_dir() and holds(c) and c.resolve() not in {f.resolve() for f in found}:
            found.append(c)
    if len(found) > 1:
        raise DataError(
            f"{root}: {len(found)} copies of the data ({', '.join(map(str, found))}); "
            "keep one, or point 'root' at the one to use"
        )
    return found[0] if found else None


def find_case_insensitive(
    path: Path, listings: MutableMapping[Path, dict[str, list[str]]] | None = None
) -> Path | None:
    """``path`` if it is a file, else the one file whose name differs from it only in case.

    Args:
        path: The expected file.
        listings: A cache of folder listings, shared by the calls of one preparation.

    Returns:
        The file found, or None (no such file, or several that differ only in case).
    """
    if path.is_file():
        return path
    listings = {} if listings is None else listings
    folder = path.parent
    if folder not in listings:
        names: dict[str, list[str]] = {}
        if folder.is_dir():
            for entry in os.listdir(folder):
                names.setdefault(entry.lower(), []).append(entry)
        listings[folder] = names
    hits = listings[folder].get(path.name.lower(), [])
    return folder / hits[0] if len(hits) == 1 else None
