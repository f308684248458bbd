"""The CRAFT study's objectives against direct formulas: KD, attention transfer, CRD, CRAFT."""

import math

import pytest
import torch
import torch.nn.functional as F

from robustkd.craft.losses.attention import attention_map, attention_transfer_loss
from robustkd.craft.losses.craft import (
    CraftConfig,
    CraftObjective,
    cross_view_infonce,
    dealignment,
    fragility_direction,
    pooled_embedding,
    reliability,
)
from robustkd.craft.losses.crd import CRDLoss, nce_loss, negative_pools, sample_negatives
from robustkd.craft.losses.logit_kd import kd_loss


def test_kd_matches_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g) * 3
    t = 4.0
    direct = 0.0
    for i in range(5):
        ps = [math.exp(v / t) for v in zs[i].tolist()]
        pt = [math.exp(v / t) for v in zt[i].tolist()]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        direct += t * t * sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
    assert kd_loss(zs, zt, t).item() == pytest.approx(direct / 5, rel=1e-5)
    per = kd_loss(zs, zt, t, reduction="none")
    assert per.shape == (5,) and per.mean().item() == pytest.approx(direct / 5, rel=1e-5)
    assert kd_loss(zt, zt, t).item() == pytest.approx(0.0, abs=1e-6)
    # No gradient reaches the teacher's logits.
    zt.requires_grad_(True)
    kd_loss(zs.requires_grad_(True), zt, t).backward()
    assert zt.grad is None and zs.grad is not None


def test_attention_transfer_matches_the_direct_formula():
    g = torch.Generator().manual_seed(1)
    fs = [torch.randn(3, 4, 6, 6, generator=g), torch.randn(3, 8, 3, 3, generator=g)]
    ft = [torch.randn(3, 16, 6, 6, generator=g), torch.randn(3, 32, 3, 3, generator=g)]
    direct = 0.0
    for i in range(3):
        per_layer = []
        for a, b in zip(fs, ft, strict=True):
            qa = [
                sum(a[i, c, y, x].item() ** 2 for c in range(a.shape[1])) / a.shape[1]
                for y in range(a.shape[2])
                for x in range(a.shape[3])
            ]
            qb = [
                sum(b[i, c, y, x].item() ** 2 for c in range(b.shape[1])) / b.shape[1]
                for y in range(b.shape[2])
                for x in range(b.shape[3])
            ]
            na, nb = math.sqrt(sum(v * v for v in qa)), math.sqrt(sum(v * v for v in qb))
            per_layer.append(sum((u / na - v / nb) ** 2 for u, v in zip(qa, qb, strict=True)))
        direct += sum(per_layer) / len(per_layer)
    assert attention_transfer_loss(fs, ft).item() == pytest.approx(direct / 3, rel=1e-5)
    assert attention_map(fs[0]).norm(dim=1) == pytest.approx(torch.ones(3), rel=1e-6)
    assert attention_transfer_loss(ft, ft).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="differ in size"):
        attention_transfer_loss([fs[0]], [ft[1]])


def test_crd_memory_bank_update():
    torch.manual_seed(0)
    crd = CRDLoss(6, 10, n_data=12, feat_dim=4, nce_k=5, nce_t=0.07, nce_m=0.5)
    before_s, before_t = crd.memory_s.clone(), crd.memory_t.clone()
    v_s = F.normalize(torch.randn(3, 4), dim=1)
    v_t = F.normalize(torch.randn(3, 4), dim=1)
    index = torch.tensor([2, 7, 11])
    crd.update_memory(v_s, v_t, index)
    for bank, old, v in ((crd.memory_s, before_s, v_s), (crd.memory_t, before_t, v_t)):
        expected = F.normalize(0.5 * old[index] + 0.5 * v, dim=1)
        assert torch.allclose(bank[index], expected, atol=1e-6)
        rest = torch.ones(12, dtype=torch.bool)
        rest[index] = False
        assert torch.equal(bank[rest], old[rest])  # untouched rows
        assert torch.allclose(bank[index].norm(dim=1), torch.ones(3))
    # Buffers: checkpointed with the model, not optimised.
    assert {"memory_s", "memory_t", "z_s", "z_t"} <= set(crd.state_dict())
    assert all(not n.startswith("memory") for n, _ in crd.named_parameters())


def test_crd_forward_updates_the_bank_and_fixes_z():
    torch.manual_seed(0)
    crd = CRDLoss(6, 10, n_data=12, feat_dim=4, nce_k=5)
    f_s, f_t = torch.randn(3, 6, requires_grad=True), torch.randn(3, 10)
    index = torch.tensor([0, 1, 2])
    negatives = torch.tensor([[3, 4, 5, 6, 7]] * 3)
    old = crd.memory_s.clone()
    out = crd(f_s, f_t, index, negatives)
    assert float(crd.z_s) > 0 and float(crd.z_t) > 0
    z = float(crd.z_s)
    assert not torch.equal(crd.memory_s[:3], old[:3]) and torch.equal(crd.memory_s[3:], old[3:])
    out["crd"].backward()
    assert f_s.grad is not None and crd.embed_s.weight.grad is not None
    crd(torch.randn(3, 6), torch.randn(3, 10), index, negatives)
    assert float(crd.z_s) == z  # fixed after the first batch


def test_nce_loss_direct():
    x = torch.tensor([[2.0, 0.5, 0.1]])
    n = 10
    m_pn = 2 / n
    direct = -(
        math.log(2 / (2 + m_pn + 1e-7))
        + math.log(m_pn / (0.5 + m_pn + 1e-7))
        + math.log(m_pn / (0.1 + m_pn + 1e-7))
    )
    assert nce_loss(x, n).item() == pytest.approx(direct, rel=1e-6)


def test_negatives_come_from_other_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    pools, sizes = negative_pools(labels)
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(torch.tensor([0, 2]), pools, sizes, 50, g)
    assert neg.shape == (2, 50)
    assert set(labels[neg[0]].tolist()) == {1, 2} and set(labels[neg[1]].tolist()) == {0, 1}


def test_negatives_are_distinct_when_the_pool_allows():
    # RepDistiller's exact mode: without replacement unless k exceeds the pool.
    labels = torch.tensor([0] * 10 + [1] * 40 + [2] * 50)
    pools, sizes = negative_pools(labels)  # pool sizes: 90, 60, 50
    anchors = torch.tensor([0, 1, 2, 2])
    g = torch.Generator().manual_seed(0)
    neg = sample_negatives(anchors, pools, sizes, 50, g)
    for row, y in zip(neg.tolist(), anchors.tolist(), strict=True):
        assert len(set(row)) == 50, f"class {y}: {50 - len(set(row))} repeated negatives"
        assert all(labels[i] != y for i in row)
    # k equal to the pool: a permutation of the whole pool (class 2's 50 negatives).
    assert sorted(neg[2].tolist()) == sorted(torch.nonzero(labels != 2).flatten().tolist())
    assert neg[2].tolist() != neg[3].tolist()  # each anchor its own random order
    # Deterministic given the generator's seed (the loop seeds one per (seed, epoch, step)).
    again = sample_negatives(anchors, pools, sizes, 50, torch.Generator().manual_seed(0))
    assert torch.equal(neg, again)
    other = sample_negatives(anchors, pools, sizes, 50, torch.Generator().manual_seed(1))
    assert not torch.equal(neg, other)


def test_negatives_fall_back_to_replacement_when_the_pool_is_smaller_than_k():
    labels = torch.tensor([0, 0, 0, 1, 2])  # class 0's pool: 2 samples; class 1's: 4
    pools, sizes = negative_pools(labels)
    neg = sample_negatives(torch.tensor([0, 1]), pools, sizes, 3, torch.Generator().manual_seed(0))
    assert set(neg[0].tolist()) <= {3, 4}  # 3 draws from 2: with replacement
    assert len(set(neg[1].tolist())) == 3 and set(neg[1].tolist()) <= {0, 1, 2, 4}
    with pytest.raises(ValueError, match="k must be >= 1"):
        sample_negatives(torch.tensor([0]), pools, sizes, 0, None)


def test_negatives_are_uniform_over_the_pool():
    # Every other-class sample is equally likely: k / size per draw (here 2 / 6).
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 2])
    pools, sizes = negative_pools(labels)
    g = torch.Generator().manual_seed(3)
    neg = sample_negatives(torch.zeros(6000, dtype=torch.long), pools, sizes, 2, g)
    counts = torch.bincount(neg.flatten(), minlength=8)[2:].double()
    assert (neg[:, 0] != neg[:, 1]).all()
    # Expected 2000 each; binomial std about 37, so 6 std is a bound that only a bias breaks.
    assert torch.all((counts - 2000).abs() < 6 * 37), counts.tolist()


def test_reliability_bounds_and_monotonicity():
    k = 10
    confident = torch.full((1, 3, k), -5.0)
    confident[..., 3] = 5.0
    r_conf, agree, h = reliability(confident, alpha=10, beta=1, gamma=0.5)
    assert agree.item() == 1.0 and 0 <= r_conf.item() <= 1
    # Agreement: the same confident views, one of them now voting for another class.
    split = confident.clone()
    split[0, 2, 3], split[0, 2, 4] = -5.0, 5.0
    r_split, agree_split, h_split = reliability(split, alpha=10, beta=1, gamma=0.5)
    assert agree_split.item() == pytest.approx(2 / 3)
    assert h_split.item() == pytest.approx(h.item(), abs=1e-6)
    assert r_split.item() < r_conf.item()
    # Entropy: same agreement, flatter predictions.
    flat = confident * 0.2
    r_flat, agree_flat, h_flat = reliability(flat, alpha=10, beta=1, gamma=0.5)
    assert agree_flat.item() == 1.0 and h_flat.item() > h.item()
    assert r_flat.item() < r_conf.item()
    # Always in [0, 1], whatever the inputs.
    g = torch.Generator().manual_seed(0)
    r, _, _ = reliability(torch.randn(64, 4, k, generator=g) * 20, alpha=50, beta=5, gamma=0.1)
    assert float(r.min()) >= 0 and float(r.max()) <= 1
    # Direct formula.
    p = F.softmax(split, -1)
    ent = -(p * p.log()).sum(-1).mean()
    expected = torch.sigmoid(torch.tensor(10 * (2 / 3 - 0.5)) - ent)
    assert r_split.item() == pytest.approx(expected.item(), rel=1e-5)


def test_dealignment_is_zero_when_the_fragility_direction_is_zero():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(4, 1, 8, generator=g), dim=-1)
    z_t = z.expand(4, 3, 8)  # the teacher does not move across views
    u, delta = fragility_direction(z_t)
    assert torch.count_nonzero(delta) == 0 and torch.count_nonzero(u) == 0
    z_s = F.normalize(torch.randn(4, 3, 8, generator=g), dim=-1)
    assert torch.count_nonzero(dealignment(u, z_s)) == 0
    # A moving teacher gives a unit direction and a positive penalty along it.
    z_t2 = F.normalize(torch.randn(4, 3, 8, generator=g), dim=-1)
    u2, d2 = fragility_direction(z_t2)
    assert torch.allclose(u2.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(d2, z_t2.mean(1) - z_t2[:, 0])
    direct = torch.stack([(z_s[i] @ u2[i]).pow(2).mean() for i in range(4)])
    assert torch.allclose(dealignment(u2, z_s), direct, atol=1e-6)


def test_cross_view_infonce_matches_the_direct_formula():
    g = torch.Generator().manual_seed(0)
    b, v, d, tau = 3, 2, 5, 0.1
    z_t = F.normalize(torch.randn(b, v, d, generator=g), dim=-1)
    z_s = F.normalize(torch.randn(b, v, d, generator=g), dim=-1)
    loss = cross_view_infonce(z_t, z_s, tau)
    for i in range(b):
        total = 0.0
        for m in range(v):
            sim = [
                [math.exp(float(z_t[i, m] @ z_s[j, n]) / tau) for n in range(v)] for j in range(b)
            ]
            pos = sum(sim[i])
            den = sum(map(sum, sim))
            total += -math.log(pos / den)
        assert loss[i].item() == pytest.approx(total / v, rel=1e-5)


def test_pooled_embedding_is_unit_norm_concat():
    g = torch.Generator().manual_seed(0)
    stages = [torch.rand(2, 4, 8, 8, generator=g), torch.rand(2, 6, 4, 4, generator=g)]
    z = pooled_embedding(stages)
    assert z.shape == (2, 10) and torch.allclose(z.norm(dim=1), torch.ones(2))
    a = F.normalize(stages[0].mean((2, 3)), dim=1)
    assert torch.allclose(z[:, :4], a / math.sqrt(2), atol=1e-6)


def test_craft_objective_weights_terms_by_reliability():
    g = torch.Generator().manual_seed(0)
    b, v, k, d = 4, 3, 5, 6
    s_logits = torch.randn(b, v, k, generator=g, requires_grad=True)
    t_logits = torch.randn(b, v, k, generator=g)
    z_s = F.normalize(torch.randn(b, v, d, generator=g), dim=-1).requires_grad_(True)
    z_t = F.normalize(torch.randn(b, v, d, generator=g), dim=-1)
    labels = torch.tensor([0, 1, 2, 3])
    cfg = CraftConfig(views=v - 1, lambda_kd=0.5, lambda_con=2.0, lambda_de=3.0)
    out = CraftObjective(cfg)(s_logits, t_logits, z_s, z_t, labels)
    r, _, _ = reliability(t_logits, cfg.alpha, cfg.beta, cfg.gamma)
    u, _ = fragility_direction(z_t)
    kd = (r * kd_loss(s_logits[:, 0], t_logits[:, 0], 4.0, "none")).mean()
    con = (r * cross_view_infonce(z_t, z_s, cfg.tau)).mean()
    de = ((1 - r) * dealignment(u, z_s)).mean()
    ce = F.cross_entropy(s_logits[:, 0], labels)
    assert out["loss"].item() == pytest.approx((ce + 0.5 * kd + 2 * con + 3 * de).item(), rel=1e-5)
    assert {"ce", "kd", "con", "de", "reliability", "agree", "entropy", "fragility"} <= set(out)
    out["loss"].backward()
    assert s_logits.grad is not None and z_s.grad is not None
    with pytest.raises(ValueError, match="kd_views"):
        CraftConfig.from_config({"kd_views": "some"})
