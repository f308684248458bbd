"""Whose raw data each preparation reads: the miniature the pipeline writes, or the user's.

With ``demo_raw.enabled``, the pipeline writes miniature raw data into
``results/raw_demo/<dataset>/`` (rule ``demo_raw``), but only for a dataset whose ``root`` is
that folder: a dataset whose root points elsewhere (real data) is prepared from its root and
gets no miniature. ImageNet-100's folder also holds the pretraining corpus's classes
(``data.pretrain_corpus``, read from the same ILSVRC tree): it is written when either root is
that folder, and holds the target classes only when ImageNet-100's root is (a custom class list
of real data then cannot collide with the corpus's).

The workflow (``workflow/rules/common.smk``) asks this module which raw folders a preparation
depends on and what each miniature holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_RAW_DIR",
    "demo_raw_dir",
    "demo_raw_spec",
    "raw_input",
    "uses_demo_raw",
    "writes_demo_raw",
]

DEMO_RAW_DIR = "results/raw_demo"
"""Where rule ``demo_raw`` writes each dataset's miniature (relative to the working directory)."""


def demo_raw_dir(dataset: str) -> str:
    """Return the miniature raw folder of ``dataset`` (``results/raw_demo/<dataset>``)."""
    return f"{DEMO_RAW_DIR}/{dataset}"


def _same_place(path: str, other: str, workdir: str | os.PathLike[str]) -> bool:
    """Whether two paths (relative ones to ``workdir``) name the same place, links aside."""
    base = Path(workdir).absolute()
    return os.path.normpath(base / path) == os.path.normpath(base / other)


def _source(config: Mapping[str, Any], dataset: str, corpus: bool) -> Mapping[str, Any] | None:
    if corpus:
        return config["data"].get("pretrain_corpus")
    return config["data"]["datasets"][dataset]


def uses_demo_raw(
    config: Mapping[str, Any],
    dataset: str,
    *,
    corpus: bool = False,
    workdir: str | os.PathLike[str] = ".",
) -> bool:
    """Whether a preparation reads the miniature: ``demo_raw`` on and its root the miniature's.

    Args:
        config: The merged config.
        dataset: A dataset name (``imagenet100`` for the pretraining corpus).
        corpus: Ask for the pretraining corpus (``data.pretrain_corpus``) instead.
        workdir: The working directory relative roots start in.

    Returns:
        True when the ``root`` of the dataset (or corpus) is ``results/raw_demo/<dataset>``.
    """
    source = _source(config, dataset, corpus)
    if not config["demo_raw"]["enabled"] or source is None:
        return False
    return _same_place(str(source["root"]), demo_raw_dir(dataset), workdir)


def writes_demo_raw(
    config: Mapping[str, Any], dataset: str, *, workdir: str | os.PathLike[str] = "."
) -> bool:
    """Whether rule ``demo_raw`` writes ``dataset``'s miniature: a preparation reads it.

    Args:
        config: The merged config.
        dataset: A dataset name.
        workdir: The working directory.

    Returns:
        True for a dataset whose root is its miniature folder, and for ``imagenet100`` when the
        pretraining corpus's root is that folder.
    """
    if uses_demo_raw(config, dataset, workdir=workdir):
        return True
    return dataset == "imagenet100" and uses_demo_raw(config, dataset, corpus=True, workdir=workdir)


def raw_input(
    config: Mapping[str, Any],
    dataset: str,
    *,
    corpus: bool = False,
    workdir: str | os.PathLike[str] = ".",
) -> list[str]:
    """The raw folder a preparation depends on: the miniature's, or none for real raw data.

    Real raw data lives outside the workflow (a local copy or a download into its root) and is
    hashed into the provenance instead of being tracked as an input.

    Args:
        config: The merged config.
        dataset: A dataset name.
        corpus: The pretraining corpus's preparation (from ImageNet-100's tree).
        workdir: The working directory.

    Returns:
        ``[results/raw_demo/<dataset>]`` or ``[]``.
    """
    if uses_demo_raw(config, dataset, corpus=corpus, workdir=workdir):
        return [demo_raw_dir(dataset)]
    return []


def demo_raw_spec(
    config: Mapping[str, Any], dataset: str, *, workdir: str | os.PathLike[str] = "."
) -> dict[str, Any]:
    """What ``dataset``'s miniature holds: ``demo_raw.<dataset>``, and ImageNet's class lists.

    ImageNet-100's miniature gets the target class list and ``n_classes`` (0 when its root is
    real data, so only the corpus's classes are written) and, with a pretraining corpus read
    from the miniature, the corpus's class list as the other classes.

    Args:
        config: The merged config.
        dataset: A dataset name.
        workdir: The working directory.

    Returns:
        Keyword arguments of the dataset's ``write_demo_raw``.
    """
    spec = dict(config["demo_raw"].get(dataset, {}))
    if dataset != "imagenet100":
        return spec
    source = config["data"]["datasets"]["imagenet100"]
    spec["class_list"] = source["class_list"]
    targets = uses_demo_raw(config, dataset, workdir=workdir)
    spec["n_classes"] = source.get("n_classes", 100) if targets else 0
    corpus = config["data"].get("pretrain_corpus")
    if corpus is not None and uses_demo_raw(config, dataset, corpus=True, workdir=workdir):
        # The corpus's classes live in the same ILSVRC tree.
        spec["other_class_list"] = corpus["class_list"]
        spec["other_classes"] = corpus.get("n_classes", spec.get("other_classes", 2))
    elif not targets:
        spec["other_classes"] = 0
    return spec
