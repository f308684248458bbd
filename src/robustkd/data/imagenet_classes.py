"""The ImageNet-100 class list: CMC's 100 WordNet ids, and reading and comparing wnid lists.

ImageNet-100 is the class subset of CMC (Tian et al., Contrastive Multiview Coding), which the
Contrastive Inversion code uses; other papers use other 100-class lists. A wnid list is one
WordNet id (``nXXXXXXXX``) per line (``config/imagenet100.txt``). Preparation compares the
list it is given with CMC's and warns when they differ, since numbers from another list are not
comparable with the papers'.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from robustkd.errors import DataError

__all__ = ["CMC_WNIDS", "WNID", "compare_with_cmc", "read_class_list", "warn_if_not_cmc"]

log = logging.getLogger(__name__)

WNID = re.compile(r"^n\d{8}$")  # a WordNet id

# The CMC ImageNet-100 (Tian et al., Contrastive Multiview Coding; the list the Contrastive
# Inversion code uses), in its file's order: config/imagenet100.txt, sha256 79f3f155...1397
# (docs/data.md). Other papers use other 100-class lists; preparation warns about them.
CMC_WNIDS: tuple[str, ...] = tuple(
    """
    n02869837 n01749939 n02488291 n02107142 n13037406 n02091831 n04517823 n04589890
    n03062245 n01773797 n01735189 n07831146 n07753275 n03085013 n04485082 n02105505
    n01983481 n02788148 n03530642 n04435653 n02086910 n02859443 n13040303 n03594734
    n02085620 n02099849 n01558993 n04493381 n02109047 n04111531 n02877765 n04429376
    n02009229 n01978455 n02106550 n01820546 n01692333 n07714571 n02974003 n02114855
    n03785016 n03764736 n03775546 n02087046 n07836838 n04099969 n04592741 n03891251
    n02701002 n03379051 n02259212 n07715103 n03947888 n04026417 n02326432 n03637318
    n01980166 n02113799 n02086240 n03903868 n02483362 n04127249 n02089973 n03017168
    n02093428 n02804414 n02396427 n04418357 n02172182 n01729322 n02113978 n03787032
    n02089867 n02119022 n03777754 n04238763 n02231487 n03032252 n02138441 n02104029
    n03837869 n03494278 n04136333 n03794056 n03492542 n02018207 n04067472 n03930630
    n03584829 n02123045 n04229816 n02100583 n03642806 n04336792 n03259280 n02116738
    n02108089 n03424325 n01855672 n02090622
    """.split()
)


def read_class_list(path: str | os.PathLike[str], n_classes: int | None = None) -> list[str]:
    """Read a wnid list (one per line), optionally keeping its first ``n_classes`` entries.

    Args:
        path: The class list file (``config/imagenet100.txt``).
        n_classes: Keep only the first ``n_classes`` wnids of the file (the miniature's subset).

    Returns:
        The wnids in file order.

    Raises:
        DataError: The file is missing, a line is not a wnid, a wnid repeats, or the list is
            shorter than ``n_classes``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list not found")
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for i, w in enumerate(wnids, 1):
        if not WNID.match(w):
            raise DataError(f"{path}:{i}: {w!r} is not a WordNet id (nXXXXXXXX)")
    if len(set(wnids)) != len(wnids):
        raise DataError(f"{path}: repeated wnids")
    if n_classes is not None:
        if n_classes > len(wnids):
            raise DataError(f"{path}: asked for {n_classes} classes, the list has {len(wnids)}")
        wnids = wnids[:n_classes]
    return wnids


def compare_with_cmc(
    wnids: Sequence[str], *, subset: bool = False, path: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Compare the classes used with the CMC ImageNet-100 list (:data:`CMC_WNIDS`).

    Args:
        wnids: The classes used.
        subset: The classes are deliberately a part of the list (``n_classes``, the miniature):
            they are then compared with the first ``len(wnids)`` classes of CMC's list (what
            ``n_classes`` takes from the shipped list), so a reordered list that picks other
            CMC classes differs.
        path: The class list file, hashed into the result when given.

    Returns:
        A record for the provenance: ``reference`` (what the classes are compared with:
        ``CMC's 100 classes`` or ``the first N classes of CMC's list``), ``cmc`` (True when the
        classes used are exactly the reference), ``n_classes``, ``differ`` (classes not shared
        with the reference), ``not_in_cmc`` (sorted classes used that the reference lacks),
        ``missing_from_cmc`` (sorted classes of the reference left out), and the file's ``path``
        and ``sha256``.
    """
    used = set(wnids)
    if subset and len(used) < len(CMC_WNIDS):
        reference, name = (
            set(CMC_WNIDS[: len(used)]),
            f"the first {len(used)} classes of CMC's list",
        )
    else:
        reference, name = set(CMC_WNIDS), f"CMC's {len(CMC_WNIDS)} classes"
    extra, missing = sorted(used - reference), sorted(reference - used)
    record: dict[str, Any] = {
        "reference": name,
        "cmc": not extra and not missing,
        "n_classes": len(used),
        "differ": max(len(extra), len(missing)),
        "not_in_cmc": extra,
        "missing_from_cmc": missing,
    }
    if path is not None:
        record["path"] = os.fspath(path)
        record["sha256"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return record


def warn_if_not_cmc(record: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Log a warning (it lands in the job's log) when a class list is not the CMC list."""
    if record["cmc"]:
        return
    extra, missing = record["not_in_cmc"], record["missing_from_cmc"]
    reference = record.get("reference", f"CMC's {len(CMC_WNIDS)} classes")
    parts = []
    if extra:
        parts.append(
            f"{len(extra)} of its {record['n_classes']} classes are not among {reference} "
            f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})"
        )
    if missing:
        parts.append(
            f"{len(missing)} of {reference} are missing "
            f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})"
        )
    log.warning(
        "%s: not the CMC ImageNet-100 class list of the papers: %d classes differ (%s). "
        "Numbers from it are not comparable with results on CMC's list "
        "(config/imagenet100.txt, sha256 79f3f155...1397, in its order when n_classes takes "
        "a part of it); the provenance records the list.",
        path,
        record["differ"],
        "; ".join(parts),
    )
