"""One training step of each method of the CRAFT study, as tasks of the shared loop.

A task has ``.model`` (everything trainable and every stateful buffer: the student, CRD's heads
and memory banks, CRAFT's connectors) and ``.loss(images, targets, generator)`` returning
named components, ``"loss"`` the one minimised. The frozen teacher is held *outside*
``.model``, so the loop neither trains nor checkpoints it (nor switches it to train mode).

Targets carry the label and the dataset index of each image (``(B, 2)``, see
:class:`IndexedImages`): CRD's memory bank needs the index; the other methods ignore it.

    task = create_task("craft", student, teacher, normalize, objective, train_labels=labels)
    train(task, IndexedImages(train_set), cfg, seed=..., run_dir=..., device=...)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from robustkd.craft.corruptions import CorruptionMix
from robustkd.craft.losses.attention import attention_transfer_loss
from robustkd.craft.losses.craft import CraftConfig, CraftObjective, pooled_embedding
from robustkd.craft.losses.crd import CRDLoss, negative_pools, sample_negatives
from robustkd.craft.losses.logit_kd import kd_loss
from robustkd.craft.models import CifarResNet, Features
from robustkd.engine.data import ImageSet

__all__ = [
    "METHODS",
    "AttentionKDTask",
    "CraftTask",
    "CRDTask",
    "ErmTask",
    "IndexedImages",
    "LogitKDTask",
    "StudentTask",
    "create_task",
    "layer_indices",
]

_REGISTRY: dict[str, type[StudentTask]] = {}


def _register(name: str) -> Callable[[type[StudentTask]], type[StudentTask]]:
    def decorator(cls: type[StudentTask]) -> type[StudentTask]:
        cls.method = name
        _REGISTRY[name] = cls
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


@_register("erm")
class ErmTask(StudentTask):
    """ERM: cross-entropy on clean training images."""

    needs_teacher = False
    teacher_views = 0

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce"}``."""
        del generator
        ce = F.cross_entropy(self.student(self.normalize(images)), targets[:, 0])
        return {"loss": ce, "ce": ce}


@_register("logitkd")
class LogitKDTask(StudentTask):
    """LogitKD: ``L_ERM + lambda_KD L_KD`` (section 3.2)."""

    config_keys = ("lambda_kd", "temperature")

    def __init__(self, *args: Any, lambda_kd: float, temperature: float, **kw: Any) -> None:
        """Set ``lambda_kd`` and the KD temperature; other arguments as :class:`StudentTask`."""
        super().__init__(*args, **kw)
        self.lambda_kd, self.temperature = lambda_kd, temperature

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "kd"}``."""
        del generator
        t = self._teacher(images)
        logits = self.student(self.normalize(images))  # (B, K)
        ce = F.cross_entropy(logits, targets[:, 0])
        kd = kd_loss(logits, t.logits, self.temperature)
        return {"loss": ce + self.lambda_kd * kd, "ce": ce, "kd": kd}


@_register("attentionkd")
class AttentionKDTask(StudentTask):
    """AttentionKD: ``L_ERM + lambda_feat L_feat`` on the configured layers (section 3.2)."""

    config_keys = ("lambda_feat", "layers")

    def __init__(self, *args: Any, lambda_feat: float, layers: Sequence[str], **kw: Any) -> None:
        """Set ``lambda_feat`` and the layers; other arguments as :class:`StudentTask`."""
        super().__init__(*args, **kw)
        self.lambda_feat = lambda_feat
        self.layers = layer_indices(layers, self.student)

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "at"}``."""
        del generator
        t = self._teacher(images)
        s = self.student.forward_features(self.normalize(images))
        ce = F.cross_entropy(s.logits, targets[:, 0])
        at = attention_transfer_loss(
            [s.stages[i] for i in self.layers], [t.stages[i] for i in self.layers]
        )
        return {"loss": ce + self.lambda_feat * at, "ce": ce, "at": at}


@_register("crd")
class CRDTask(StudentTask):
    """CRD: ``L_ERM + lambda_crd L_CRD`` on the penultimate features (Tian et al.)."""

    config_keys = ("lambda_crd", "feat_dim", "nce_k", "nce_t", "nce_m")

    def __init__(
        self,
        student: CifarResNet,
        teacher: CifarResNet,
        normalize: Callable[[Tensor], Tensor],
        *,
        lambda_crd: float,
        train_labels: Sequence[int] | Tensor,
        feat_dim: int,
        nce_k: int,
        nce_t: float,
        nce_m: float,
    ) -> None:
        """Build the CRD module (heads and memory banks) for the training set.

        Args:
            student: The student.
            teacher: The frozen teacher.
            normalize: Pixel normalisation.
            lambda_crd: Weight of the CRD term.
            train_labels: Label of every training image (in dataset order).
            feat_dim: Embedding dimension.
            nce_k: Negatives per anchor, drawn from the other classes without replacement
                when the pool allows (:func:`~robustkd.craft.losses.crd.sample_negatives`).
            nce_t: Temperature (0.1 in the CRAFT paper's Table 1; 0.07 in CRD's).
            nce_m: Memory momentum.
        """
        crd = CRDLoss(
            student.num_features,
            teacher.num_features,
            len(train_labels),
            feat_dim=feat_dim,
            nce_k=nce_k,
            nce_t=nce_t,
            nce_m=nce_m,
        )
        super().__init__(student, teacher, normalize, {"crd": crd})
        self.crd, self.lambda_crd = crd, lambda_crd
        self.pools, self.pool_sizes = negative_pools(train_labels)

    @classmethod
    def settings(
        cls, cfg: Mapping[str, Any], *, train_labels: Sequence[int] | Tensor
    ) -> dict[str, Any]:
        """:attr:`config_keys` and the training labels (the memory bank's rows)."""
        return {"train_labels": train_labels, **{k: cfg[k] for k in cls.config_keys}}

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "crd", "crd_student", "crd_teacher"}``."""
        labels, index = targets[:, 0], targets[:, 1]
        t = self._teacher(images)
        s = self.student.forward_features(self.normalize(images))
        ce = F.cross_entropy(s.logits, labels)
        pools, sizes = self.pools.to(images.device), self.pool_sizes.to(images.device)
        negatives = sample_negatives(labels, pools, sizes, self.crd.nce_k, generator)  # (B, K)
        crd = self.crd(s.pooled, t.pooled, index, negatives)
        return {"loss": ce + self.lambda_crd * crd["crd"], "ce": ce, **crd}


@_register("craft")
class CraftTask(StudentTask):
    """CRAFT (section 3): clean + M corrupted views through both networks, reliability-aware.

    Each step corrupts the batch M times with :class:`CorruptionMix` (every image draws its own
    training corruption and severity from the step's generator), runs the teacher and the
    student on all ``V = M + 1`` views in one batch each, builds pooled, normalised multi-layer
    embeddings and applies :class:`CraftObjective`. When a layer's widths differ, a linear
    connector (trained with the student) maps the student's pooled feature to the teacher's
    width; with equal widths (our configurations) the cosine similarity is the paper's, unmapped.
    """

    def __init__(
        self,
        student: CifarResNet,
        teacher: CifarResNet,
        normalize: Callable[[Tensor], Tensor],
        *,
        config: CraftConfig,
        layers: Sequence[str],
        train_corruptions: Sequence[str],
        train_severities: Sequence[int],
    ) -> None:
        """Assemble CRAFT.

        Args:
            student: The student.
            teacher: The frozen teacher.
            normalize: Pixel normalisation.
            config: Hyperparameters.
            layers: Layers whose pooled features make the embedding (``stage1``...).
            train_corruptions: Corruptions of the training views.
            train_severities: Their severities.
        """
        self.layers = layer_indices(layers, student)
        connectors = nn.ModuleList(
            nn.Identity()
            if student.widths[i] == teacher.widths[i]
            else nn.Linear(student.widths[i], teacher.widths[i], bias=False)
            for i in self.layers
        )
        super().__init__(student, teacher, normalize, {"connectors": connectors})
        self.connectors, self.config = connectors, config
        self.objective = CraftObjective(config)
        self.mix = CorruptionMix(train_corruptions, train_severities)
        self.teacher_views = config.views + 1

    @classmethod
    def settings(
        cls, cfg: Mapping[str, Any], *, train_labels: Sequence[int] | Tensor
    ) -> dict[str, Any]:
        """The hyperparameters, the layers and the training corruptions and severities."""
        del train_labels
        return {
            "config": CraftConfig.from_config(cfg),
            "layers": cfg["layers"],
            "train_corruptions": cfg["train_corruptions"],
            "train_severities": cfg.get("train_severities", (1, 2, 3, 4, 5)),
        }

    def views(self, images: Tensor, generator: torch.Generator) -> Tensor:
        """The clean batch and its M corrupted copies, (B, V, 3, H, W), clean first."""
        views = [images] + [self.mix(images, generator) for _ in range(self.config.views)]
        return torch.stack(views, dim=1)

    def loss(
        self, images: Tensor, targets: Tensor, generator: torch.Generator
    ) -> dict[str, Tensor]:
        """``{"loss", "ce", "kd", "con", "de", "reliability", "agree", "entropy", "fragility"}``."""
        b = images.shape[0]
        x = self.views(images, generator)  # (B, V, 3, H, W)
        v = x.shape[1]
        flat = x.flatten(0, 1)  # (B*V, 3, H, W), image-major
        t = self._teacher(flat)
        s = self.student.forward_features(self.normalize(flat))
        z_t = pooled_embedding([t.stages[i] for i in self.layers]).view(b, v, -1)  # (B, V, D)
        z_s = pooled_embedding([s.stages[i] for i in self.layers], self.connectors).view(b, v, -1)
        return self.objective(
            s.logits.view(b, v, -1), t.logits.view(b, v, -1), z_s, z_t, targets[:, 0]
        )


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
    if method not in _REGISTRY:
        raise ValueError(f"unknown CRAFT-study method {method!r} (known: {list(_REGISTRY)})")
    return _REGISTRY[method].build(
        student, teacher, normalize, dict(objective), train_labels=train_labels
    )
