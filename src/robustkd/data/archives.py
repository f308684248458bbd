"""Fetching and unpacking raw archives: md5 verification, safe extraction, optional download.

Downloads go through torchvision's ``datasets.utils`` (which also verifies the md5); local files
are verified here. Extraction refuses members that would land outside the target folder and
writes into a temporary sibling folder that is renamed only when every member is out, so an
interrupted or failed extraction never leaves a folder that looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

from robustkd.atomic import disk_full, make_temp_dir, write_failure
from robustkd.errors import DataError

__all__ = ["extract_archive", "fetch_file", "md5sum", "read_checksum_file", "verify_md5"]


def md5sum(path: str | os.PathLike[str]) -> str:
    """Return the md5 of the file at ``path`` as 32 lowercase hex digits."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "md5").hexdigest()


def verify_md5(path: str | os.PathLike[str], expected: str | None) -> None:
    """Check a file's md5; ``expected=None`` only checks that the file exists.

    Args:
        path: The file to check.
        expected: The expected hex digest, or None to skip the hash.

    Raises:
        DataError: The file is missing or its md5 differs (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if expected is None:
        return
    actual = md5sum(path)
    if actual != expected.lower():
        raise DataError(
            f"{path}: md5 mismatch (expected {expected}, got {actual}; {path.stat().st_size:,} "
            "bytes): not the expected file, or a truncated copy of it (an interrupted download "
            "or copy); download or copy it again"
        )


def read_checksum_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read an ``md5sum``-style file (``<hex>  <name>`` per line) into ``{name: hex}``.

    Args:
        path: The checksum file.

    Returns:
        Mapping from file name (as written) to md5 hex digest.

    Raises:
        DataError: The file is missing or a line is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checksum file not found")
    sums: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 32:
            raise DataError(f"{path}:{lineno}: malformed checksum line {line!r}")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def fetch_file(
    root: str | os.PathLike[str],
    filename: str,
    md5: str | None,
    url: str | None = None,
    download: bool = False,
) -> Path:
    """Return the verified path of ``root/filename``, downloading it first if allowed.

    Args:
        root: Folder holding (or to hold) the file.
        filename: Name of the file inside ``root``.
        md5: Expected md5 hex digest (None: existence only, for sources without a checksum).
        url: Where to download from when the file is absent.
        download: Whether downloading is allowed.

    Returns:
        The path of the verified file.

    Raises:
        DataError: The file is absent and cannot be downloaded, or its md5 is wrong.
    """
    path = Path(root) / filename
    if not path.exists():
        if not download or url is None:
            raise DataError(
                f"{path}: file not found (place it there, point the dataset's 'root' at its "
                "folder, or set data.download: true)"
            )
        from torchvision.datasets.utils import download_url

        try:
            download_url(url, str(root), filename, md5)
        except (OSError, RuntimeError) as exc:  # URLError/HTTPError are OSErrors
            path.unlink(missing_ok=True)
            raise DataError(f"{path}: download from {url} failed ({exc})") from exc
    verify_md5(path, md5)
    return path


def _check_member(dest: Path, name: str, archive: Path) -> None:
    target = (dest / name).resolve()
    if target != dest.resolve() and dest.resolve() not in target.parents:
        raise DataError(f"{archive}: member {name!r} escapes the extraction folder")


# First bytes of the archive formats read here (a tar has "ustar" at offset 257).
_MAGIC = {b"PK\x03\x04": "zip", b"PK\x05\x06": "zip", b"\x1f\x8b": "tar", b"BZh": "tar"}
_MAGIC[b"\xfd7zXZ\x00"] = "tar"
_TAR_NAMES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _archive_kind(archive: Path) -> str | None:
    """``zip`` or ``tar`` (compressed or not) by content, else by name (any case); or None."""
    with open(archive, "rb") as fh:
        head = fh.read(262)
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            return kind
    if head[257:262] == b"ustar":
        return "tar"
    name = archive.name.lower()
    return "zip" if name.endswith(".zip") else "tar" if name.endswith(_TAR_NAMES) else None


def extract_archive(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Extract a .tar(.gz, .tgz, ...) or .zip archive into ``dest`` atomically and safely.

    The kind is read from the file's first bytes (so ``.tgz``, ``.TAR.GZ`` or a missing
    extension do not matter). A zip whose end is missing (an interrupted download or copy) is
    reported as truncated, not as an unknown format.

    Args:
        archive: The archive file.
        dest: The folder to create; must not exist yet (an existing one is replaced).

    Returns:
        ``dest`` as a Path.

    Raises:
        DataError: The archive is truncated, corrupt, of unknown type, or has a member whose
            path (or link target) escapes ``dest``. Nothing is left at ``dest`` then.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise DataError(f"{archive}: file not found")
    size = archive.stat().st_size
    kind = _archive_kind(archive)
    again = "download or copy it again"
    if size == 0:
        raise DataError(f"{archive}: empty file (0 bytes): truncated; {again}")
    if kind == "zip" and not zipfile.is_zipfile(archive):
        raise DataError(
            f"{archive}: truncated or corrupt zip archive ({size:,} bytes; its end, which lists "
            f"the members, is missing or unreadable, as an interrupted download leaves it); {again}"
        )
    tmp = make_temp_dir(dest)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member(tmp, info.filename, archive)
                bad = zf.testzip()
                if bad is not None:
                    raise DataError(f"{archive}: corrupt member {bad!r} (CRC mismatch)")
                zf.extractall(tmp)
        elif kind == "tar":
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member(tmp, m.name, archive)
                    if m.issym():
                        _check_member(
                            tmp, os.path.join(os.path.dirname(m.name), m.linkname), archive
                        )
                    elif m.islnk():
                        _check_member(tmp, m.linkname, archive)
                tf.extractall(tmp, members=members, filter="data")
        else:
            raise DataError(
                f"{archive}: not a zip or tar archive (its first bytes are neither; a truncated "
                f"archive keeps them, so this file is something else); {again}"
            )
    except DataError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except (
        tarfile.TarError,
        zipfile.BadZipFile,
        gzip.BadGzipFile,
        EOFError,
        ValueError,
        zlib.error,
    ) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"{archive}: truncated or corrupt archive ({exc}); download or copy it again"
        ) from exc
    except OSError as exc:
        # gzip reports a truncated stream as an OSError too; a full disk is named as such,
        # with the free space of the disk extracted to (counted before the folder goes).
        full = write_failure(dest, exc) if disk_full(exc) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if full is not None:
            raise DataError(f"{archive}: cannot extract it: {full}") from exc
        raise DataError(f"{archive}: cannot extract into {dest.parent} ({exc})") from exc
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest
