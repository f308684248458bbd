"""Backbones (creation, weights, input config, freezing) and the ViT taps."""

from __future__ import annotations

import copy

import pytest
import safetensors.torch
import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from robustkd.errors import ConfigError
from robustkd.losses import MultiLevelLoss
from robustkd.models import (
    ViTOutputs,
    backbone_input_config,
    copy_student,
    create_backbone,
    freeze,
    model_input_config,
    vit_forward,
)

TINY_KWARGS = {"img_size": 16, "patch_size": 4, "embed_dim": 48, "depth": 2, "num_heads": 3}


def tiny_spec(**extra: object) -> dict:
    return {
        "timm_name": "vit_tiny_patch16_224",
        "weights": None,
        "kwargs": {**TINY_KWARGS, **extra},
    }


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone(tiny_spec()).eval()


def unfused_cls_patch_attention(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Row 0 of timm's unfused softmaxed attention, patch columns, renormalised: (B, H, N)."""
    ref = copy.deepcopy(model)
    for block in ref.blocks:
        block.attn.fused_attn = False
    captured = []
    # timm's unfused branch: attn = softmax(q*scale @ k^T); attn = self.attn_drop(attn); ...
    ref.blocks[-1].attn.attn_drop.register_forward_hook(lambda m, i, out: captured.append(out))
    with torch.no_grad():
        ref.forward_features(x)
    (attn,) = captured  # (B, H, T, T)
    row = attn[:, :, 0, ref.num_prefix_tokens :]  # (B, H, N)
    return row / row.sum(dim=-1, keepdim=True)


# ----------------------------------------------------------------------------------------------
# vit_forward
# ----------------------------------------------------------------------------------------------


def test_tiny_vit_is_built_as_asked(tiny_vit):
    assert isinstance(tiny_vit, timm.models.vision_transformer.VisionTransformer)
    assert tiny_vit.embed_dim == 48 and len(tiny_vit.blocks) == 2
    assert tiny_vit.blocks[-1].attn.num_heads == 3
    assert tiny_vit.patch_embed.num_patches == 16
    assert all(block.attn.fused_attn for block in tiny_vit.blocks)  # timm's default, kept


def test_vit_forward_shapes(tiny_vit):
    x = torch.randn(2, 3, 16, 16)
    out = vit_forward(tiny_vit, x, with_attention=True)
    assert isinstance(out, ViTOutputs)
    assert out.cls.shape == (2, 48)
    assert out.patches.shape == (2, 16, 48)
    assert out.attn_logits.shape == (2, 3, 16)
    assert vit_forward(tiny_vit, x, with_attention=False).attn_logits is None


@pytest.mark.parametrize(
    "extra",
    [{}, {"qk_norm": True}, {"reg_tokens": 2}, {"qkv_bias": False}],
    ids=["plain", "qk_norm", "registers", "no_qkv_bias"],
)
def test_attention_logits_match_unfused_timm(extra):
    torch.manual_seed(0)
    model = create_backbone(tiny_spec(**extra)).eval()
    with torch.no_grad():  # make q_norm/k_norm non-trivial when present
        for p in model.blocks[-1].attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 3, 16, 16)
    out = vit_forward(model, x, with_attention=True)
    expected = unfused_cls_patch_attention(model, x)
    assert out.attn_logits.shape == expected.shape == (3, 3, 16)
    torch.testing.assert_close(out.attn_logits.softmax(dim=-1), expected, atol=1e-6, rtol=0)
    assert model.blocks[-1].attn.fused_attn  # the reference copy did not touch the model


def test_tokens_equal_forward_features(tiny_vit):
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tokens = tiny_vit.forward_features(x)
        out = vit_forward(tiny_vit, x, with_attention=True)
    assert torch.equal(out.cls, tokens[:, 0])
    assert torch.equal(out.patches, tokens[:, tiny_vit.num_prefix_tokens :])


def test_vit_forward_runs_the_model_once_and_its_tap_keeps_nothing(tiny_vit):
    """One pass; the tap's hook stays registered (once: not per call, issue 25) but holds no
    tensor after the call and keeps nothing from a plain forward."""
    calls = []
    tiny_vit.patch_embed.register_forward_pre_hook(lambda m, i: calls.append(1))
    qkv = tiny_vit.blocks[-1].attn.qkv
    vit_forward(tiny_vit, torch.randn(1, 3, 16, 16), with_attention=True)
    vit_forward(tiny_vit, torch.randn(1, 3, 16, 16), with_attention=True)
    assert len(calls) == 2
    assert len(qkv._forward_hooks) == 1
    (tap,) = qkv._forward_hooks.values()
    assert tap.output is None and not tap.active
    tiny_vit.forward_features(torch.randn(1, 3, 16, 16))
    assert tap.output is None


def test_vit_forward_grad_and_no_grad(tiny_vit):
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = vit_forward(tiny_vit, x, with_attention=True)
    assert not (out.cls.requires_grad or out.patches.requires_grad or out.attn_logits.requires_grad)
    out = vit_forward(tiny_vit, x, with_attention=True)
    out.attn_logits.sum().backward()
    assert tiny_vit.blocks[-1].attn.qkv.weight.grad is not None
    assert tiny_vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_vit_forward_rejects_non_vit():
    model = timm.create_model("resnet18", num_classes=0)
    with pytest.raises(TypeError, match="VisionTransformer"):
        vit_forward(model, torch.randn(1, 3, 32, 32), with_attention=False)


# ----------------------------------------------------------------------------------------------
# Teacher / student
# ----------------------------------------------------------------------------------------------


def test_teacher_stays_frozen_while_student_trains():
    torch.manual_seed(0)
    teacher = freeze(create_backbone(tiny_spec()))
    student = copy_student(teacher)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    assert not teacher.training and student.training
    assert all(not p.requires_grad for p in teacher.parameters())
    assert all(p.requires_grad for p in student.parameters())
    assert all(
        p.data_ptr() != q.data_ptr()
        for p, q in zip(teacher.parameters(), student.parameters(), strict=True)
    )

    loss_fn = MultiLevelLoss(1.0, 1.0, 10.0, tau=0.5)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-2)
    for _ in range(3):
        clean = torch.rand(4, 3, 16, 16)
        distorted = clean + 0.5 * torch.randn_like(clean)
        with torch.no_grad():
            t_out = vit_forward(teacher, clean, with_attention=True)
        s_out = vit_forward(student, distorted, with_attention=True)
        losses = loss_fn(s_out, t_out)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()

    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())
    changed = [not torch.equal(student.state_dict()[k], before[k]) for k in before]
    assert any(changed)


# ----------------------------------------------------------------------------------------------
# create_backbone: weights
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_round_trip_resnet(tmp_path, suffix):
    torch.manual_seed(1)
    source = create_backbone({"timm_name": "resnet18", "weights": None})
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    torch.manual_seed(2)  # a different random init underneath
    loaded = create_backbone({"timm_name": "resnet18", "weights": str(path)})
    a, b = source.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_local_file_round_trip_vit_checkpoint_wrapper(tmp_path):
    torch.manual_seed(1)
    source = create_backbone(tiny_spec())
    path = tmp_path / "tiny.pth"
    torch.save({"model": source.state_dict(), "epoch": 3}, path)  # a training checkpoint
    loaded = create_backbone({**tiny_spec(), "weights": str(path)})
    a, b = source.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_local_file_drops_only_the_classifier(tmp_path):
    source = timm.create_model("vit_tiny_patch16_224", num_classes=10, **TINY_KWARGS)
    path = tmp_path / "with_head.pth"
    torch.save(source.state_dict(), path)
    loaded = create_backbone({**tiny_spec(), "weights": str(path)})
    assert not any(k.startswith("head.") for k in loaded.state_dict())
    assert torch.equal(loaded.cls_token, source.cls_token)


def test_missing_weights_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "dino.pth"
    with pytest.raises(FileNotFoundError, match="nope/dino.pth"):
        create_backbone({**tiny_spec(), "weights": str(path)})


def test_mismatched_weights_file_is_an_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), path)
    with pytest.raises(ConfigError, match="resnet.pth"):
        create_backbone({**tiny_spec(), "weights": str(path)})
    torch.save({"blocks.0.norm1.weight": torch.ones(48)}, path)  # a partial file
    with pytest.raises(ConfigError, match="missing keys"):
        create_backbone({**tiny_spec(), "weights": str(path)})


@pytest.mark.parametrize(
    ("name", "expected_kwargs"),
    [
        ("vit_base_patch16_224.dino", {"pretrained": True, "num_classes": 0, "img_size": 224}),
        ("resnet101_clip.openai", {"pretrained": True, "img_size": 224}),  # keeps head.proj
    ],
)
def test_hub_weights_ask_timm_for_pretrained(monkeypatch, name, expected_kwargs):
    calls = []
    monkeypatch.setattr(timm, "create_model", lambda n, **kw: calls.append((n, kw)) or "model")
    spec = {"timm_name": name, "weights": "hub", "kwargs": {"img_size": 224}}
    assert create_backbone(spec) == "model"
    assert calls == [(name, expected_kwargs)]


def test_hub_download_failure_is_a_config_error(monkeypatch):
    def offline(*args, **kwargs):
        raise FileNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="local .pth/.safetensors"):
        create_backbone({"timm_name": "vit_base_patch16_224.dino", "weights": "hub"})


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"timm_name": "vit_tiny_patch16_224"}, "'weights' is required"),
        ({"timm_name": "no_such_model", "weights": None}, "not a timm model"),
        ({"timm_name": "resnet18", "weights": None, "weight": "x"}, "unknown backbone key"),
        ({"timm_name": "resnet18", "weights": 3}, "'weights' must be"),
        ({"timm_name": "resnet18", "weights": None, "kwargs": {"pretrained": True}}, "pretrained"),
        ({"timm_name": "vit_base_patch16_18x2_224", "weights": "hub"}, "no pretrained weights"),
    ],
)
def test_bad_specs_are_config_errors(spec, match):
    with pytest.raises(ConfigError, match=match):
        create_backbone(spec)


# ----------------------------------------------------------------------------------------------
# Input config
# ----------------------------------------------------------------------------------------------


def test_input_config_dino():
    spec = {"timm_name": "vit_base_patch16_224.dino", "weights": None, "kwargs": {"depth": 1}}
    model = create_backbone(spec)
    for cfg in (model_input_config(model), backbone_input_config({**spec, "weights": "hub"})):
        assert cfg["input_size"] == (3, 224, 224)
        assert cfg["mean"] == pytest.approx(IMAGENET_DEFAULT_MEAN)
        assert cfg["std"] == pytest.approx(IMAGENET_DEFAULT_STD)
    assert model.embed_dim == 768 and model.blocks[0].attn.num_heads == 12


def test_input_config_follows_img_size(tiny_vit):
    assert model_input_config(tiny_vit)["input_size"] == (3, 16, 16)
    assert backbone_input_config(tiny_spec())["input_size"] == (3, 16, 16)


def test_clip_rn101_keeps_its_embedding_projection():
    spec = {"timm_name": "resnet101_clip.openai", "weights": None}
    assert backbone_input_config(spec)["mean"] == pytest.approx(OPENAI_CLIP_MEAN)
    model = create_backbone(spec).eval()
    cfg = model_input_config(model)
    assert cfg["mean"] == pytest.approx(OPENAI_CLIP_MEAN)
    assert cfg["std"] == pytest.approx(OPENAI_CLIP_STD)
    assert cfg["input_size"] == (3, 224, 224)
    with torch.no_grad():  # the attention-pool head on a (1, 2048, 7, 7) feature map
        emb = model.forward_head(torch.randn(1, model.num_features, 7, 7))
    assert emb.shape == (1, 512)  # CLIP encode_image, not the 2048-d pre-projection features


def _bf16_logits(attn: torch.nn.Module, qkv: torch.Tensor, npre: int) -> torch.Tensor:
    """The tap's formula as it ran before issue 25 under autocast: logits formed in bf16."""
    b, t, _ = qkv.shape
    qkv = qkv.reshape(b, t, 3, attn.num_heads, attn.head_dim)
    q = (attn.q_norm(qkv[:, 0, 0]) * attn.scale).unsqueeze(-2)  # (B, H, 1, hd)
    k = attn.k_norm(qkv[:, npre:, 1].transpose(1, 2))  # (B, H, N, hd)
    return (q @ k.transpose(-2, -1)).squeeze(-2)  # (B, H, N)


def test_attention_logits_are_float32_under_autocast():
    # Issue 25, point 6: under autocast the CLS->patch logits were formed in bf16 before the
    # loss's float32 softmax. The tap now forms them in float32 from the projection's output.
    torch.manual_seed(0)
    teacher, student = (create_backbone(tiny_spec()).eval() for _ in range(2))
    for model in (teacher, student):
        with torch.no_grad():  # logits of tens, as a trained ViT's CLS attention has
            model.blocks[-1].attn.qkv.weight.mul_(20.0)
    x = torch.randn(4, 3, 16, 16)
    kl = {}
    for name, model in (("teacher", teacher), ("student", student)):
        qkv: list[torch.Tensor] = []
        hook = model.blocks[-1].attn.qkv.register_forward_hook(
            lambda m, i, out, kept=qkv: kept.append(out)
        )
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            logits = vit_forward(model, x, with_attention=True).attn_logits
            before = _bf16_logits(model.blocks[-1].attn, qkv[0], model.num_prefix_tokens)
        hook.remove()
        assert qkv[0].dtype == torch.bfloat16 and before.dtype == torch.bfloat16
        assert logits.dtype == torch.float32
        # The reference: the same bf16 projection, the logits formed in float64.
        exact = _bf16_logits(model.blocks[-1].attn, qkv[0].double(), model.num_prefix_tokens)
        assert exact.abs().max() > 10
        assert (logits.double() - exact).abs().max() <= 1e-6 * exact.abs().max()
        kl[name] = (logits, before, exact)
    loss = MultiLevelLoss(lambda_g=0.0, lambda_l=0.0, lambda_a=1.0, tau=2.0)
    (now, before, exact) = (
        loss(
            ViTOutputs(x.new_zeros(4, 48), x.new_zeros(4, 16, 48), kl["student"][i]),
            ViTOutputs(x.new_zeros(4, 48), x.new_zeros(4, 16, 48), kl["teacher"][i]),
        )["attention"].item()
        for i in range(3)
    )
    moved_now, moved_before = abs(now - exact) / exact, abs(before - exact) / exact
    assert moved_now < 1e-5 < moved_before
