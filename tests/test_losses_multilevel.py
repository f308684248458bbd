"""The multi-level distillation loss against hand-written formulas."""

from __future__ import annotations

import pytest
import torch

from robustkd.errors import ConfigError
from robustkd.losses import (
    LOSS_VARIANTS,
    MultiLevelLoss,
    available_variants,
    create_multilevel_loss,
    needs_attention,
)
from robustkd.models import ViTOutputs

B, N, D, H = 2, 5, 4, 3
WEIGHTS = {"lambda_g": 1.0, "lambda_l": 0.5, "lambda_a": 10.0, "tau": 2.0}


def make_outputs(seed: int, *, requires_grad: bool = False, attention: bool = True) -> ViTOutputs:
    g = torch.Generator().manual_seed(seed)
    out = ViTOutputs(
        cls=torch.randn(B, D, generator=g),
        patches=torch.randn(B, N, D, generator=g),
        attn_logits=torch.randn(B, H, N, generator=g) * 3 if attention else None,
    )
    if requires_grad:
        for t in (out.cls, out.patches, out.attn_logits):
            if t is not None:
                t.requires_grad_(True)
    return out


def kl_by_hand(s_logits: torch.Tensor, t_logits: torch.Tensor, tau: float) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for b in range(B):
        for h in range(H):
            p = torch.exp(t_logits[b, h].double() / tau)
            p = p / p.sum()
            q = torch.exp(s_logits[b, h].double() / tau)
            q = q / q.sum()
            total = total + (p * torch.log(p / q)).sum()
    return total / (B * H)


def test_components_match_hand_written_formulas():
    s, t = make_outputs(0), make_outputs(1)
    out = MultiLevelLoss(**WEIGHTS)(s, t)
    assert set(out) == {"loss", "global", "local", "attention"}

    g = sum((s.cls[b, d] - t.cls[b, d]) ** 2 for b in range(B) for d in range(D)) / (B * D)
    loc = ((s.patches - t.patches) ** 2).sum() / (B * N * D)
    att = kl_by_hand(s.attn_logits, t.attn_logits, WEIGHTS["tau"])
    torch.testing.assert_close(out["global"], g)
    torch.testing.assert_close(out["local"], loc)
    torch.testing.assert_close(out["attention"].double(), att)
    weighted = WEIGHTS["lambda_g"] * g + WEIGHTS["lambda_l"] * loc + WEIGHTS["lambda_a"] * att
    torch.testing.assert_close(out["loss"].double(), weighted.double())
    assert all(v.dtype == torch.float32 and v.ndim == 0 for v in out.values())


def test_temperature_smooths_the_attention_term():
    s, t = make_outputs(0), make_outputs(1)
    kls = [MultiLevelLoss(1, 1, 1, tau=tau)(s, t)["attention"] for tau in (0.5, 1.0, 4.0)]
    assert kls[0] > kls[1] > kls[2] > 0


def test_zero_when_student_equals_teacher():
    t = make_outputs(0)
    out = MultiLevelLoss(**WEIGHTS)(t, make_outputs(0))
    for value in out.values():
        assert value.abs() < 1e-6


def test_half_precision_inputs_give_float32_losses():
    s, t = make_outputs(0), make_outputs(1)
    s16 = ViTOutputs(s.cls.bfloat16(), s.patches.bfloat16(), s.attn_logits.bfloat16())
    out = MultiLevelLoss(**WEIGHTS)(s16, t)
    assert out["loss"].dtype == torch.float32
    torch.testing.assert_close(
        out["loss"], MultiLevelLoss(**WEIGHTS)(s, t)["loss"], rtol=0.05, atol=0
    )


def test_gradient_reaches_the_student_only():
    s, t = make_outputs(0, requires_grad=True), make_outputs(1, requires_grad=True)
    MultiLevelLoss(**WEIGHTS)(s, t)["loss"].backward()
    for tensor in (s.cls, s.patches, s.attn_logits):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    for tensor in (t.cls, t.patches, t.attn_logits):
        assert tensor.grad is None


def test_zero_weight_terms_are_reported_without_gradient():
    s, t = make_outputs(0, requires_grad=True), make_outputs(1)
    loss_fn = create_multilevel_loss("global", WEIGHTS)
    out = loss_fn(s, t)
    full = MultiLevelLoss(**WEIGHTS)(s, t)
    torch.testing.assert_close(out["local"], full["local"].detach())
    torch.testing.assert_close(out["attention"], full["attention"].detach())
    assert not out["local"].requires_grad and not out["attention"].requires_grad
    torch.testing.assert_close(out["loss"], WEIGHTS["lambda_g"] * out["global"])
    out["loss"].backward()
    assert s.cls.grad is not None and s.patches.grad is None and s.attn_logits.grad is None


def test_missing_attention_logits():
    s, t = make_outputs(0, attention=False), make_outputs(1, attention=False)
    out = create_multilevel_loss("global-local", WEIGHTS)(s, t)
    assert out["attention"].item() == 0.0
    with pytest.raises(ValueError, match="attention logits"):
        MultiLevelLoss(**WEIGHTS)(s, t)


@pytest.mark.parametrize(
    ("variant", "lambdas", "attention"),
    [
        ("global", (1.0, 0.0, 0.0), False),
        ("global-local", (1.0, 0.5, 0.0), False),
        ("global-attention", (1.0, 0.0, 10.0), True),
        ("ours", (1.0, 0.5, 10.0), True),
    ],
)
def test_variants_set_the_lambdas(variant, lambdas, attention):
    loss_fn = create_multilevel_loss(variant, WEIGHTS)
    assert (loss_fn.lambda_g, loss_fn.lambda_l, loss_fn.lambda_a) == lambdas
    assert loss_fn.tau == WEIGHTS["tau"]
    assert needs_attention(variant) is attention is loss_fn.needs_attention


def test_variant_registry_is_the_ablation():
    assert available_variants() == sorted(["global", "global-local", "global-attention", "ours"])
    assert LOSS_VARIANTS["ours"] == {"global", "local", "attention"}


@pytest.mark.parametrize(
    ("variant", "weights", "match"),
    [
        ("nope", WEIGHTS, "unknown distillation loss variant"),
        ("ours", {k: v for k, v in WEIGHTS.items() if k != "tau"}, "missing keys \\['tau'\\]"),
        ("ours", {**WEIGHTS, "lambda_x": 1.0}, "unknown keys \\['lambda_x'\\]"),
        ("ours", {**WEIGHTS, "lambda_l": 0.0}, "lambda_l must be > 0"),
        ("global", {**WEIGHTS, "tau": 0.0}, "tau must be > 0"),
    ],
)
def test_bad_loss_configs(variant, weights, match):
    with pytest.raises(ConfigError, match=match):
        create_multilevel_loss(variant, weights)


def test_constructor_validation():
    with pytest.raises(ValueError, match="at least one"):
        MultiLevelLoss(0, 0, 0)
    with pytest.raises(ValueError, match="lambda_g"):
        MultiLevelLoss(-1, 1, 1)


def test_shape_mismatch_is_an_error():
    s, t = make_outputs(0), make_outputs(1)
    t.patches = t.patches[:, :1]
    with pytest.raises(ValueError, match="patches"):
        MultiLevelLoss(**WEIGHTS)(s, t)
