"""What every CRAFT-study task shares: :class:`StudentTask`, the registry, the indexed images.

:class:`StudentTask` holds the student, the frozen teacher and the pixel normalisation, and
builds any method's task from its config section in one recipe (:meth:`StudentTask.build`);
:func:`register_task` adds a method to :data:`TASKS`. :class:`IndexedImages` gives the targets
``[label, index]`` every task reads; :func:`layer_indices` maps layer names to stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from robustkd.craft.models import CifarResNet, Features
from robustkd.engine.data import ImageSet

__all__ = ["TASKS", "IndexedImages", "StudentTask", "layer_indices", "register_task"]

TASKS: dict[str, type[StudentTask]] = {}


def register_task(name: str) -> Callable[[type[StudentTask]], type[StudentTask]]:
    """Register a task class under the method name ``name`` (sets its ``method``)."""

    def decorator(cls: type[StudentTask]) -> type[StudentTask]:
        cls.method = name
        TASKS[name] = cls
        return cls

    return decorator


class IndexedImages(Dataset):
    """A training :class:`~robustkd.engine.data.ImageSet` whose targets are ``[label, index]``."""

    def __init__(self, images: ImageSet) -> None:
        """Wrap ``images`` (its augmentation stream and epoch are used as they are)."""
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (the loop calls this)."""
        self.images.set_epoch(epoch)

    def fingerprint(self) -> str:
        """The wrapped set's fingerprint (see :meth:`ImageSet.fingerprint`)."""
        return self.images.fingerprint()

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Image and ``[label, index]`` of position ``key`` or ``(epoch, position)``."""
        img, label = self.images[key]
        i = key[1] if isinstance(key, tuple) else key
        return img, torch.stack([torch.as_tensor(label).long(), torch.tensor(i)])


def layer_indices(names: Sequence[str], model: CifarResNet) -> list[int]:
    """Map layer names ``stage1``... to stage indices of ``model`` (names are checked)."""
    known = [f"stage{i + 1}" for i in range(len(model.stages))]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ValueError(f"unknown or no layers {list(names)} (known: {known})")
    return [known.index(n) for n in names]


class StudentTask:
    """Shared parts: the student, the frozen teacher, pixel normalisation.

    Attributes:
        model: ``nn.ModuleDict`` with ``"student"`` and the method's trainable extras.
        config_keys: Settings of the method's config section passed to its constructor.
        needs_teacher: False for a method trained without the teacher (ERM).
        teacher_views: Teacher forward passes per training image (for the cost report).
    """

    method: ClassVar[str] = ""
    config_keys: ClassVar[tuple[str, ...]] = ()
    needs_teacher: ClassVar[bool] = True
    teacher_views: int = 1

    def __init__(
        self,
        student: CifarResNet,
        teacher: CifarResNet | None,
        normalize: Callable[[Tensor], Tensor],
        extras: Mapping[str, nn.Module] | None = None,
    ) -> None:
        """Assemble the task.

        Args:
            student: The student network (trained).
            teacher: The frozen teacher (eval mode, no gradients), or None for ERM.
            normalize: Pixel normalisation applied before both networks.
            extras: Further trainable modules (heads, memory banks, connectors).
        """
        self.student, self.teacher, self.normalize = student, teacher, normalize
        self.model = nn.ModuleDict({"student": student, **(extras or {})})

    @classmethod
    def settings(
        cls, cfg: Mapping[str, Any], *, train_labels: Sequence[int] | Tensor
    ) -> dict[str, Any]:
        """The constructor's keyword arguments from the method's config section.

        By default the values of :attr:`config_keys`; methods with more override this.

        Raises:
            KeyError: A missing setting.
        """
        del train_labels  # only CRD's memory bank needs them
        return {k: cfg[k] for k in cls.config_keys}

    @classmethod
    def build(
        cls,
        student: CifarResNet,
        teacher: CifarResNet,
        normalize: Callable[[Tensor], Tensor],
        cfg: Mapping[str, Any],
        *,
        train_labels: Sequence[int] | Tensor,
    ) -> StudentTask:
        """Build the task from its config section (see :func:`create_task`).

        One recipe for every method: the student, the teacher (None for a method that takes
        no teacher), the normalisation and the method's :meth:`settings`.
        """
        kwargs = cls.settings(cfg, train_labels=train_labels)
        return cls(student, teacher if cls.needs_teacher else None, normalize, **kwargs)

    def _teacher(self, x: Tensor) -> Features:
        assert self.teacher is not None
        self.teacher.to(x.device).eval()
        with torch.no_grad():
            return self.teacher.forward_features(self.normalize(x))

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """Return the named loss components of a batch (B, 3, H, W) in [0, 1]."""
        raise NotImplementedError
