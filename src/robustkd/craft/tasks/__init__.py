"""One training step of each method of the CRAFT study, as tasks of the shared loop.

A task has ``.model`` (everything trainable and every stateful buffer: the student, CRD's heads
and memory banks, CRAFT's connectors) and ``.loss(images, targets, generator)`` returning
named components, ``"loss"`` the one minimised. The frozen teacher is held *outside*
``.model``, so the loop neither trains nor checkpoints it (nor switches it to train mode).

Targets carry the label and the dataset index of each image (``(B, 2)``, see
:class:`~robustkd.craft.tasks.base.IndexedImages`): CRD's memory bank needs the index; the
other methods ignore it.

    task = create_task("craft", student, teacher, normalize, objective, train_labels=labels)
    train(task, IndexedImages(train_set), cfg, seed=..., run_dir=..., device=...)

Layout: :mod:`~robustkd.craft.tasks.base` holds :class:`~robustkd.craft.tasks.base.StudentTask`
(what every method shares, and the one ``build`` recipe from a config section), the registry,
:class:`~robustkd.craft.tasks.base.IndexedImages` and
:func:`~robustkd.craft.tasks.base.layer_indices`; one module per method family registers its
tasks on import: :mod:`~robustkd.craft.tasks.baselines` (ERM, LogitKD, AttentionKD),
:mod:`~robustkd.craft.tasks.crd` and :mod:`~robustkd.craft.tasks.craft`. This package names the
methods (:data:`METHODS`) and builds a task by name (:func:`create_task`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor

from robustkd.craft.models import CifarResNet
from robustkd.craft.tasks import baselines, craft, crd  # noqa: F401  (they register the methods)
from robustkd.craft.tasks.base import TASKS, StudentTask

__all__ = ["METHODS", "create_task"]

METHODS = ("erm", "logitkd", "attentionkd", "crd", "craft")


def create_task(
    method: str,
    student: CifarResNet,
    teacher: CifarResNet,
    normalize: Callable[[Tensor], Tensor],
    objective: Mapping[str, Any],
    *,
    train_labels: Sequence[int] | Tensor,
) -> StudentTask:
    """Build the task of a method from its config section.

    Args:
        method: ``erm``, ``logitkd``, ``attentionkd``, ``crd`` or ``craft``.
        student: The student.
        teacher: The frozen teacher (unused by ERM).
        normalize: Pixel normalisation.
        objective: The method's settings (``craft.objectives.<method>``; for ``craft`` also
            ``train_corruptions`` and ``train_severities``).
        train_labels: Labels of the training set, in dataset order (CRD's negatives).

    Returns:
        The task.

    Raises:
        ValueError: Unknown method; KeyError: a missing setting.
    """
    if method not in TASKS:
        known = [m for m in METHODS if m in TASKS]  # in table order, whatever the import order
        raise ValueError(f"unknown CRAFT-study method {method!r} (known: {known})")
    return TASKS[method].build(
        student, teacher, normalize, dict(objective), train_labels=train_labels
    )
