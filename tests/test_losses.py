"""Losses against naive loop references (float64), their properties, and bad inputs."""
import math

import pytest
import torch

from sslkit import losses

D64 = torch.float64


def rand(*shape):
    return torch.randn(*shape, dtype=D64)


# -- naive references: explicit Python loops over samples / pairs ---------------------------------
def ref_nt_xent(z1, z2, t):
    views = [v / v.norm() for v in list(z1) + list(z2)]
    n = len(z1)
    total = 0.0
    for i, a in enumerate(views):
        pos = (i + n) % (2 * n)
        denom = sum(math.exp(float(a @ b) / t) for j, b in enumerate(views) if j != i)
        total += -math.log(math.exp(float(a @ views[pos]) / t) / denom)
    return total / (2 * n)


def ref_info_nce(q, k, neg, t):
    total = 0.0
    for i in range(len(q)):
        qi = q[i] / q[i].norm()
        pos = math.exp(float(qi @ (k[i] / k[i].norm())) / t)
        others = neg if neg is not None else [k[j] for j in range(len(k)) if j != i]
        denom = pos + sum(math.exp(float(qi @ (o / o.norm())) / t) for o in others)
        total += -math.log(pos / denom)
    return total / len(q)


def ref_barlow(z1, z2, lam):
    n, d = z1.shape
    def std(z):
        out = torch.empty_like(z)
        for j in range(d):
            col = z[:, j]
            mu = sum(col) / n
            var = sum((c - mu) ** 2 for c in col) / n
            out[:, j] = (col - mu) / math.sqrt(var + 1e-5)
        return out
    a, b = std(z1), std(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lam * c ** 2
    return float(loss)


def ref_vicreg(z1, z2, sw, vw, cw, var_reduction="mean"):
    n, d = z1.shape
    inv = sum(float((z1[i, j] - z2[i, j]) ** 2) for i in range(n) for j in range(d)) / (n * d)
    def var(z):
        total = 0.0
        for j in range(d):
            mu = float(z[:, j].sum()) / n
            v = sum((float(z[i, j]) - mu) ** 2 for i in range(n)) / (n - 1)
            total += max(0.0, 1.0 - math.sqrt(v + 1e-4))
        return total / d
    def cov(z):
        mu = [float(z[:, j].sum()) / n for j in range(d)]
        total = 0.0
        for a in range(d):
            for b in range(d):
                if a != b:
                    c = sum((float(z[i, a]) - mu[a]) * (float(z[i, b]) - mu[b]) for i in range(n)) / (n - 1)
                    total += c ** 2
        return total / d
    variance = var(z1) + var(z2)              # the paper's eq. 6 ("sum")
    if var_reduction == "mean":               # the official code: the mean of the two branches
        variance = variance / 2
    return sw * inv + vw * variance + cw * (cov(z1) + cov(z2))


def ref_dino(s, t, center, st, tt):
    total, pairs = 0.0, 0
    for i in range(len(t)):
        for j in range(len(s)):
            if i == j:
                continue
            for b in range(t.shape[1]):
                q = torch.softmax((t[i, b] - center) / tt, 0)
                logp = torch.log_softmax(s[j, b] / st, 0)
                total += -float((q * logp).sum()) / t.shape[1]
            pairs += 1
    return total / pairs


def ref_masked_mse(pred, target, mask, norm_pix):
    total, count = 0.0, 0
    for b in range(pred.shape[0]):
        for n in range(pred.shape[1]):
            if not mask[b, n]:
                continue
            tgt = target[b, n]
            if norm_pix:
                mu = float(tgt.mean())
                var = sum((float(v) - mu) ** 2 for v in tgt) / (len(tgt) - 1)
                tgt = (tgt - mu) / math.sqrt(var + 1e-6)
            total += float(((pred[b, n] - tgt) ** 2).mean())
            count += 1
    return total / count


def ref_mlm(logits, targets, mask):
    total, count = 0.0, 0
    for b in range(logits.shape[0]):
        for i in range(logits.shape[1]):
            if mask[b, i]:
                row = logits[b, i]
                total += -float(row[targets[b, i]] - torch.logsumexp(row, 0))
                count += 1
    return total / count


# -- equality with the references ------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_reference(t):
    z1, z2 = rand(6, 5), rand(6, 5)
    assert losses.nt_xent(z1, z2, t).item() == pytest.approx(ref_nt_xent(z1, z2, t), abs=1e-5)


def test_info_nce_matches_reference():
    q, k, neg = rand(5, 4), rand(5, 4), rand(7, 4)
    assert losses.info_nce(q, k, neg, 0.2).item() == pytest.approx(ref_info_nce(q, k, list(neg), 0.2), abs=1e-5)
    assert losses.info_nce(q, k, None, 0.2).item() == pytest.approx(ref_info_nce(q, k, None, 0.2), abs=1e-5)


def test_info_nce_unnormalized_is_raw_dot_products():
    q, k = rand(4, 3), rand(4, 3)
    logits = q @ k.T
    want = -torch.log_softmax(logits, 1).diagonal().mean()
    assert losses.info_nce(q, k, temperature=1.0, normalize=False).item() == pytest.approx(want.item(), abs=1e-10)


def test_negative_cosine_matches_reference():
    p, z = rand(5, 4), rand(5, 4)
    want = -sum(float(p[i] @ z[i] / (p[i].norm() * z[i].norm())) for i in range(5)) / 5
    assert losses.negative_cosine(p, z).item() == pytest.approx(want, abs=1e-10)


def test_barlow_twins_matches_reference():
    z1, z2 = rand(7, 4), rand(7, 4)
    assert losses.barlow_twins(z1, z2, 0.01).item() == pytest.approx(ref_barlow(z1, z2, 0.01), abs=1e-5)


@pytest.mark.parametrize("form", ["mean", "sum"])
def test_vicreg_matches_reference(form):
    """Both forms of the variance term against loops: the official code's mean of the two branches
    (the default, the form 25/25/1 were tuned on) and the paper's eq. 6 sum."""
    z1, z2 = rand(6, 4) * 0.5, rand(6, 4) * 2
    kwargs = {} if form == "mean" else {"var_reduction": "sum"}
    got = losses.vicreg(z1, z2, 25.0, 25.0, 1.0, **kwargs).item()
    assert got == pytest.approx(ref_vicreg(z1, z2, 25.0, 25.0, 1.0, var_reduction=form), abs=1e-5)
    terms = losses.vicreg_terms(z1, z2, **kwargs)
    assert terms["loss"].item() == pytest.approx(got)
    assert set(terms) == {"loss", "invariance", "variance", "covariance"}


def test_vicreg_forms_differ_by_the_variance_weight():
    z1, z2 = rand(6, 4) * 0.5, rand(6, 4) * 2
    mean, total = losses.vicreg_terms(z1, z2), losses.vicreg_terms(z1, z2, var_reduction="sum")
    assert total["variance"].item() == pytest.approx(2 * mean["variance"].item())
    assert total["variance"].item() > 0                         # the hinge is active for these z
    assert losses.vicreg(z1, z2, var_weight=12.5, var_reduction="sum").item() == pytest.approx(
        losses.vicreg(z1, z2).item())
    with pytest.raises(ValueError, match="var_reduction"):
        losses.vicreg(z1, z2, var_reduction="max")


@pytest.mark.parametrize("n_s,n_t", [(2, 2), (6, 2), (3, 1)])
def test_dino_matches_reference(n_s, n_t):
    s, t, c = rand(n_s, 3, 5), rand(n_t, 3, 5), rand(5)
    assert losses.dino_loss(s, t, c, 0.1, 0.04).item() == pytest.approx(ref_dino(s, t, c, 0.1, 0.04), abs=1e-5)
    # a list of (B, K) views is the same as the stacked tensor
    assert losses.dino_loss(list(s), list(t), c).item() == pytest.approx(losses.dino_loss(s, t, c).item())


@pytest.mark.parametrize("norm_pix", [False, True])
def test_masked_mse_matches_reference(norm_pix):
    pred, target = rand(3, 6, 4), rand(3, 6, 4)
    mask = torch.rand(3, 6) < 0.5
    mask[0, 0] = True
    got = losses.masked_mse(pred, target, mask, norm_pix).item()
    assert got == pytest.approx(ref_masked_mse(pred, target, mask, norm_pix), abs=1e-5)
    # float 0/1 masks give the same
    assert losses.masked_mse(pred, target, mask.double(), norm_pix).item() == pytest.approx(got)


def test_norm_pix_matches_reference_and_inverts():
    patches = rand(2, 3, 5) * 3 + 1
    normed, mean, std = losses.norm_pix(patches)
    assert mean.shape == std.shape == (2, 3, 1)
    for b in range(2):
        for n in range(3):
            vals = [float(v) for v in patches[b, n]]
            mu = sum(vals) / len(vals)
            sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1) + 1e-6)
            for j, v in enumerate(vals):
                assert float(normed[b, n, j]) == pytest.approx((v - mu) / sd, abs=1e-9)
    torch.testing.assert_close(normed * std + mean, patches)
    with pytest.raises(ValueError, match="at least 2 values"):
        losses.norm_pix(rand(2, 3, 1))


def test_masked_mse_ignores_visible_patches():
    pred, target = rand(2, 5, 3), rand(2, 5, 3)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[:, :2] = True
    pred2 = pred.clone()
    pred2[:, 2:] += 100.0
    assert losses.masked_mse(pred2, target, mask).item() == pytest.approx(losses.masked_mse(pred, target, mask).item())
    assert losses.masked_mse(pred, target, torch.zeros(2, 5, dtype=torch.bool)).item() == 0.0


def test_mlm_cross_entropy_matches_reference():
    logits = rand(3, 5, 7)
    targets = torch.randint(0, 7, (3, 5))
    mask = torch.rand(3, 5) < 0.5
    mask[0, 0] = True
    targets_ignored = targets.masked_fill(~mask, -100)   # as pretext.mask_tokens returns them
    got = losses.mlm_cross_entropy(logits, targets_ignored, mask).item()
    assert got == pytest.approx(ref_mlm(logits, targets, mask), abs=1e-5)


# -- properties ---------------------------------------------------------------------------------------
def test_nt_xent_symmetric_and_scale_invariant():
    z1, z2 = rand(8, 6), rand(8, 6)
    a = losses.nt_xent(z1, z2)
    assert losses.nt_xent(z2, z1).item() == pytest.approx(a.item(), abs=1e-10)
    assert losses.nt_xent(3.0 * z1, 0.1 * z2).item() == pytest.approx(a.item(), abs=1e-10)


def test_nt_xent_lower_for_aligned_views():
    z1 = rand(16, 8)
    assert losses.nt_xent(z1, z1 + 0.01 * rand(16, 8)) < losses.nt_xent(z1, rand(16, 8))


def test_barlow_twins_zero_for_identity_cross_correlation():
    x = rand(64, 5)
    x = x - x.mean(0)
    # whiten: rows of (N, D) data with identity covariance (biased), so C = I exactly
    cov = x.T @ x / len(x)
    evals, evecs = torch.linalg.eigh(cov)
    w = x @ evecs @ torch.diag(evals.rsqrt())
    assert losses.barlow_twins(w, w).item() < 1e-6
    assert losses.barlow_twins(w, rand(64, 5)).item() > 1.0


def test_vicreg_terms_properties():
    z = rand(64, 5)
    assert losses.invariance_term(z, z).item() == 0.0
    assert losses.invariance_term(z, z + 1).item() == pytest.approx(1.0)
    big = rand(64, 5)
    big = big / big.std(0) * 1.5                     # every dimension has std 1.5 >= 1
    assert losses.variance_term(big).item() == 0.0
    assert losses.variance_term(torch.zeros(8, 3, dtype=D64)).item() == pytest.approx(1 - math.sqrt(1e-4))
    x = rand(64, 5)
    x = x - x.mean(0)
    evals, evecs = torch.linalg.eigh(x.T @ x / 63)
    white = x @ evecs @ torch.diag(evals.rsqrt())   # decorrelated (unbiased covariance = I)
    assert losses.covariance_term(white).item() < 1e-20
    corr = torch.cat([x[:, :1], x[:, :1]], 1)        # two identical dimensions: covariance = var
    var = float(x[:, 0].var())
    assert losses.covariance_term(corr).item() == pytest.approx(2 * var ** 2 / 2)


def test_negative_cosine_stop_gradient():
    p, z = rand(4, 3).requires_grad_(), rand(4, 3).requires_grad_()
    losses.negative_cosine(p, z).backward()
    assert z.grad is None and p.grad is not None
    p.grad = None
    losses.negative_cosine(p, z, detach=False).backward()
    assert z.grad is not None


def test_dino_gradients_only_into_student():
    s = rand(4, 3, 6).requires_grad_()
    t = rand(2, 3, 6).requires_grad_()
    c = torch.zeros(6, dtype=D64, requires_grad=True)
    losses.dino_loss(s, t, c).backward()
    assert t.grad is None and c.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


def test_dino_minimal_when_student_matches_sharpened_teacher():
    t = rand(2, 4, 5)
    s_good = t.clone() * (0.1 / 0.04)      # same distribution as the sharpened teacher
    s_bad = -s_good
    c = torch.zeros(5, dtype=D64)
    assert losses.dino_loss(s_good.flip(0), t, c) < losses.dino_loss(s_bad, t, c)


def test_losses_gradients_flow():
    for fn in (losses.nt_xent, losses.barlow_twins, losses.vicreg, losses.info_nce):
        z1, z2 = rand(6, 4).requires_grad_(), rand(6, 4).requires_grad_()
        fn(z1, z2).backward()
        assert z1.grad is not None and torch.isfinite(z1.grad).all(), fn.__name__


# -- bad inputs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [losses.nt_xent, losses.info_nce, losses.negative_cosine,
                                losses.barlow_twins, losses.vicreg, losses.invariance_term])
def test_pair_losses_reject_bad_inputs(fn):
    with pytest.raises(ValueError, match="same shape"):
        fn(rand(4, 3), rand(5, 3))
    with pytest.raises(ValueError, match="rank"):
        fn(rand(4, 3, 2), rand(4, 3, 2))
    with pytest.raises(ValueError, match="floating"):
        fn(torch.ones(4, 3, dtype=torch.long), torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="torch.Tensor"):
        fn([[1.0]], [[1.0]])


@pytest.mark.parametrize("fn", [losses.nt_xent, losses.info_nce, losses.barlow_twins, losses.vicreg])
def test_batch_of_one_rejected(fn):
    with pytest.raises(ValueError, match="batch size 1"):
        fn(rand(1, 3), rand(1, 3))


def test_bad_temperatures_and_weights():
    z = rand(4, 3)
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            losses.nt_xent(z, z, temperature=t)
        with pytest.raises(ValueError, match="temperature"):
            losses.info_nce(z, z, temperature=t)
        with pytest.raises(ValueError, match="teacher_temp"):
            losses.dino_loss(rand(2, 4, 3), rand(2, 4, 3), torch.zeros(3, dtype=D64), teacher_temp=t)
    with pytest.raises(ValueError, match="lambda_"):
        losses.barlow_twins(z, z, lambda_=-1)
    with pytest.raises(ValueError, match="var_weight"):
        losses.vicreg(z, z, var_weight=-1)
    with pytest.raises(ValueError, match="negatives"):
        losses.info_nce(z, z, rand(5, 2))
    with pytest.raises(ValueError, match="batch size 1"):
        losses.variance_term(rand(1, 3))


def test_dino_bad_inputs():
    c = torch.zeros(5, dtype=D64)
    with pytest.raises(ValueError, match="center"):
        losses.dino_loss(rand(2, 3, 5), rand(2, 3, 5), torch.zeros(4, dtype=D64))
    with pytest.raises(ValueError, match="both must be"):
        losses.dino_loss(rand(2, 3, 5), rand(2, 4, 5), c)
    with pytest.raises(ValueError, match="pair of different views"):
        losses.dino_loss(rand(1, 3, 5), rand(1, 3, 5), c)
    with pytest.raises(ValueError, match="rank"):
        losses.dino_loss(rand(3, 5), rand(3, 5), c)
    with pytest.raises(ValueError, match=r"student_logits\[1\]"):
        losses.dino_loss([rand(3, 5), rand(2, 5)], [rand(3, 5)], c)


def test_reconstruction_bad_inputs():
    with pytest.raises(ValueError, match="mask must have shape"):
        losses.masked_mse(rand(2, 4, 3), rand(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        losses.masked_mse(rand(2, 4, 3), rand(2, 4, 2), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="rank"):
        losses.masked_mse(rand(2, 12), rand(2, 12), torch.ones(2, dtype=torch.bool))
    with pytest.raises(ValueError, match="integer"):
        losses.mlm_cross_entropy(rand(2, 4, 5), rand(2, 4), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="targets must have shape"):
        losses.mlm_cross_entropy(rand(2, 4, 5), torch.zeros(2, 3, dtype=torch.long),
                                 torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must have shape"):
        losses.mlm_cross_entropy(rand(2, 4, 5), torch.zeros(2, 4, dtype=torch.long),
                                 torch.ones(2, 3, dtype=torch.bool))


# -- precision: under bf16 autocast (as fit runs on CUDA) every loss computes and returns fp32 ----
def _bf16_cases():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g).to(torch.bfloat16)  # noqa: E731
    mask = torch.rand(3, 5, generator=g) < 0.5
    mask[0, 0] = True
    targets = torch.randint(0, 7, (3, 5), generator=g)
    return [
        ("nt_xent", losses.nt_xent, (r(6, 8), r(6, 8)), {}),
        ("info_nce", losses.info_nce, (r(6, 8), r(6, 8)), {}),
        ("info_nce_negatives", losses.info_nce, (r(6, 8), r(6, 8), r(10, 8)), {}),
        ("negative_cosine", losses.negative_cosine, (r(6, 8), r(6, 8)), {}),
        ("barlow_twins", losses.barlow_twins, (r(6, 8), r(6, 8)), {}),
        ("vicreg", losses.vicreg, (r(6, 8), r(6, 8)), {}),
        ("invariance", losses.invariance_term, (r(6, 8), r(6, 8)), {}),
        ("variance", losses.variance_term, (r(6, 8),), {}),
        ("covariance", losses.covariance_term, (r(6, 8),), {}),
        ("dino", losses.dino_loss, (r(4, 3, 16), r(2, 3, 16), r(16)), {}),
        ("masked_mse", losses.masked_mse, (r(3, 5, 12), r(3, 5, 12), mask), {"norm_pix": True}),
        ("mlm", losses.mlm_cross_entropy, (r(3, 5, 7), targets, mask), {}),
    ]


@pytest.mark.parametrize("case", _bf16_cases(), ids=lambda c: c[0])
def test_losses_compute_in_fp32_under_bf16_autocast(case):
    _, fn, args, kw = case
    up = tuple(a.float() if a.dtype == torch.bfloat16 else a for a in args)  # same rounded values
    want = fn(*up, **kw)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fn(*args, **kw)
    assert got.dtype == torch.float32
    assert float(got) == pytest.approx(float(want), rel=1e-5, abs=1e-5)


def test_vicreg_terms_fp32_under_bf16_autocast():
    z1, z2 = torch.randn(6, 8).bfloat16(), torch.randn(6, 8).bfloat16()
    want = losses.vicreg_terms(z1.float(), z2.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = losses.vicreg_terms(z1, z2)
    for k in want:
        assert got[k].dtype == torch.float32
        assert float(got[k]) == pytest.approx(float(want[k]), rel=1e-5, abs=1e-5)


def test_bf16_loss_gradient_reaches_bf16_inputs():
    z1 = torch.randn(6, 8).bfloat16().requires_grad_()
    z2 = torch.randn(6, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses.nt_xent(z1, z2).backward()
    assert z1.grad is not None and z1.grad.dtype == torch.bfloat16 and z1.grad.abs().sum() > 0


def test_float64_inputs_stay_float64():
    assert losses.nt_xent(rand(4, 3), rand(4, 3)).dtype == D64


def test_mlm_cross_entropy_rejects_out_of_vocabulary_targets():
    logits, mask = rand(2, 4, 5), torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"targets.*\[0, 4\]"):
        losses.mlm_cross_entropy(logits, torch.full((2, 4), 5), mask)
    with pytest.raises(ValueError, match="targets"):
        losses.mlm_cross_entropy(logits, torch.full((2, 4), -1), mask)
    # unmasked positions may hold anything (e.g. -100 or an id >= V): they do not count
    targets = torch.full((2, 4), 99)
    targets[0, 0] = 3
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 0] = True
    assert torch.isfinite(losses.mlm_cross_entropy(logits, targets, mask))


def test_losses_make_no_host_device_sync():
    """On "meta" tensors (standing in for an accelerator) no loss reads values back to the host."""
    from devguard import DeviceGuard
    m = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    mask = torch.empty(3, 5, dtype=torch.bool, device="meta")
    targets = torch.empty(3, 5, dtype=torch.long, device="meta")
    with DeviceGuard() as g:
        losses.dino_loss(m(4, 3, 16), m(2, 3, 16), m(16))
        losses.dino_loss([m(3, 16)] * 2, [m(3, 16)] * 3, m(1, 16))
        losses.nt_xent(m(6, 8), m(6, 8))
        losses.vicreg(m(6, 8), m(6, 8))
        losses.masked_mse(m(3, 5, 12), m(3, 5, 12), mask)
        losses.mlm_cross_entropy(m(3, 5, 7), targets, mask)
    assert not g.reads and not g.uploads, (g.reads, g.uploads)
