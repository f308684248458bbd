import math

import pytest
import torch

from robustkd.engine.distill import ContrastiveInversionTask
from robustkd.losses.contrastive_inversion import contrastive_inversion_loss


def _direct(s, t, tau):
    """mean_i [ -s_i.t_i / tau + log sum_j exp(s_i.t_j / tau) ] with normalised rows."""
    s = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in s.tolist()]
    t = [[x / math.sqrt(sum(y * y for y in v)) for x in v] for v in t.tolist()]
    total = 0.0
    for i, si in enumerate(s):
        dots = [sum(a * b for a, b in zip(si, tj, strict=True)) / tau for tj in t]
        total += -dots[i] + math.log(sum(math.exp(d) for d in dots))
    return total / len(s)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_ci_loss_matches_direct_computation(tau):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    out = contrastive_inversion_loss(s, t, tau)
    assert out["loss"].item() == pytest.approx(_direct(s, t, tau), rel=1e-5)
    assert -1 <= out["positive_cosine"].item() <= 1


def test_ci_loss_is_low_for_aligned_embeddings_and_scale_invariant():
    t = torch.eye(4) * 3
    aligned = contrastive_inversion_loss(t * 0.5, t, 0.1)["loss"]
    shuffled = contrastive_inversion_loss(t[[1, 2, 3, 0]], t, 0.1)["loss"]
    assert aligned.item() < 1e-3 < shuffled.item()


def test_ci_gradients_reach_only_the_student():
    teacher = torch.nn.Linear(12, 4).requires_grad_(False)
    student = torch.nn.Linear(12, 4)
    student.load_state_dict(teacher.state_dict())

    class Identity:
        is_random = False

        def __call__(self, x, generator=None):
            return x * 0.5

    task = ContrastiveInversionTask(teacher, student, Identity(), lambda x: x.flatten(1), tau=0.1)
    images = torch.rand(6, 3, 2, 2)
    out = task.loss(images, torch.zeros(6, dtype=torch.long), torch.Generator())
    out["loss"].backward()
    assert student.weight.grad is not None and teacher.weight.grad is None


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"got \(2, 3\) and \(2, 4\)"):
        contrastive_inversion_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    # Fewer teacher rows than students: no positive for some of them.
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(2, 3\) with offset 0"):
        contrastive_inversion_loss(torch.zeros(4, 3), torch.zeros(2, 3))


def test_the_loss_source_is_cited_as_the_extra_branch(repo_root):
    # The per-distortion configs (simclr_st) live on the official repository's `extra` branch;
    # its `main` branch's sample config uses the symmetric `simclr`: docs must say which.
    import robustkd.losses.contrastive_inversion as ci

    for name, text in (
        ("module docstring", ci.__doc__),
        ("docs/assumptions.md", (repo_root / "docs" / "assumptions.md").read_text()),
        ("config.yaml", (repo_root / "config" / "config.yaml").read_text()),
    ):
        assert "simclr_st" in text and "`extra`" in text, f"{name} does not cite the extra branch"
