"""Exercise checkers: reference solutions pass, unfinished ones say "not implemented yet", calling the
kit's own implementation fails, and every typical mistake fails with its own hint and no other.

Each wrong implementation below is written independently of the checkers' mistake catalogue (the
catalogue's own variants are tested too), so a test fails if a checker stops recognising a mistake
a student would really make."""
import inspect
import re
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslkit
import sslkit.exercises as ex
from sslkit.exercises import reference as R
from sslkit.exercises.catalog import EXERCISES


def clone(fn):
    """The reference with its own code object (the checkers flag a call of the reference itself)."""
    inner = inspect.unwrap(fn)
    new = types.FunctionType(inner.__code__.replace(), inner.__globals__, inner.__name__, inner.__defaults__)
    return torch.no_grad()(new) if inner is not fn else new


def verdict(name, fn):
    res = ex.check(name, fn, verbose=False)
    assert not res and res.status == "failed", res.report()
    return res


def hinted(name, fn, mistake, *failing_cases):
    """fn fails, its hint is the one of ``mistake`` (shown once), and the named cases fail."""
    res = verdict(name, fn)
    assert res.mistake == mistake and res.hint == EXERCISES[name].mistakes[mistake].hint, res.report()
    assert res.report().count("hint:") == 1
    failed = {c.case for c in res.failures}
    for case in failing_cases:
        assert any(case in f for f in failed), f"{case!r} not among failed cases {failed}"
    return res


def unhinted(name, fn):
    res = verdict(name, fn)
    assert res.hint == "" and res.mistake == "" and "hint:" not in res.report(), res.report()
    return res


# ---- every exercise ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ex.names())
def test_reference_solutions_pass(name, capsys):
    res = ex.check(name, clone(getattr(R, name)))
    assert res and res.passed and res.status == "passed" and len(res.cases) >= 3
    out = capsys.readouterr().out
    assert out.startswith(f"✅ {name}: all") and "❌" not in out and "hint" not in out
    assert repr(res).startswith(f"CheckResult({name!r}, passed=True")


@pytest.mark.parametrize("name", ex.names())
def test_unfinished_function_is_not_implemented_yet(name):
    def stub(*args, **kwargs):
        raise NotImplementedError("Exercise: implement it")
    res = ex.check(name, stub, verbose=False)
    assert res.status == "not implemented" and len(res.cases) == 1 and "not implemented yet" in res.report()
    with pytest.raises(ex.ExerciseFailed, match="not implemented yet"):
        getattr(ex, f"check_{name}")(stub, verbose=False, raise_error=True)
    assert getattr(ex, f"check_{name}")(clone(getattr(R, name)), verbose=False)


@pytest.mark.parametrize("name", ex.names())
def test_calling_the_reference_fails(name):
    ref = getattr(R, name)
    res = ex.check(name, lambda *a, **k: ref(*a, **k), verbose=False)
    assert res.status == "uses the kit" and not res and res.hint == ""
    assert f"sslkit.exercises.reference.{name}" in res.report() and "write it yourself" in res.report()


KIT_CALLS = {
    "random_masking": (lambda t, r, generator=None: sslkit.pretext.random_masking(t, r, generator=generator),
                       "sslkit.pretext.random_masking"),
    "nt_xent": (lambda z1, z2, temperature=0.5: sslkit.losses.nt_xent(z1, z2, temperature), "sslkit.losses.nt_xent"),
    "moco_loss": (lambda q, k, queue, temperature=0.2: sslkit.losses.info_nce(q, k, queue, temperature),
                  "sslkit.losses.info_nce"),
    "ema_update": (lambda t, o, m: sslkit.methods.base.ema_update(t, o, m), "sslkit.methods.base.ema_update"),
    "vicreg_variance": (lambda z, gamma=1.0, eps=1e-4: sslkit.losses.variance_term(z, gamma, eps),
                        "sslkit.losses.variance_term"),
    "vicreg_covariance": (lambda z: sslkit.losses.covariance_term(z), "sslkit.losses.covariance_term"),
    "patchify": (lambda x, p: sslkit.pretext.patchify(x, p), "sslkit.pretext.patchify"),
    "masked_mse": (lambda p, t, m, norm_pix=False: sslkit.losses.masked_mse(p, t, m, norm_pix=norm_pix),
                   "sslkit.losses.masked_mse"),
    "knn_predict": (lambda *a, **k: sslkit.eval.knn.knn_predict(*a, **k), "sslkit.eval.knn.knn_predict"),
    "alignment": (lambda a, b, alpha=2.0: torch.tensor(sslkit.eval.alignment(a, b, alpha)), "sslkit.eval.alignment"),
    "uniformity": (lambda z, t=2.0: torch.tensor(sslkit.eval.uniformity(z, t)), "sslkit.eval.uniformity"),
    "pca": (lambda x, k: torch.as_tensor(sslkit.widgets.project_2d(x)), "sslkit.widgets.project_2d"),
}


@pytest.mark.parametrize("name", list(KIT_CALLS))
def test_calling_the_kit_fails(name):
    fn, shown = KIT_CALLS[name]
    res = ex.check(name, fn, verbose=False)
    assert res.status == "uses the kit" and not res and shown in res.report() and res.hint == ""


@pytest.mark.parametrize("name, mistake", [(n, m) for n, e in EXERCISES.items() for m in e.mistakes])
def test_catalogue_mistakes_get_their_own_hint(name, mistake):
    """The cases tell every catalogued mistake apart from the others and from a correct solution."""
    hinted(name, EXERCISES[name].mistakes[mistake].fn, mistake)


CODE = re.compile(r"\.\w+\(|\b(?:torch|F|nn)\.|\bdim\s*=|\w\[|\bdef\b|\breturn\b|==|\w\s*=\s*\w|-inf")


def test_hints_are_concepts_not_code():
    for name, e in EXERCISES.items():
        for key, m in e.mistakes.items():
            assert not CODE.search(m.hint), f"{name}/{key}: the hint reads like code: {m.hint!r}"
            assert m.hint.endswith((".", ")")) and len(m.hint) > 40, (name, key)


def test_check_bad_arguments():
    with pytest.raises(ValueError, match="name='nope'"):
        ex.check("nope", R.nt_xent)
    with pytest.raises(ValueError, match="must be a function"):
        ex.check("nt_xent", 3)
    with pytest.raises(AttributeError):
        ex.check_nope  # noqa: B018


def test_check_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    ex.check("random_masking", clone(R.random_masking), verbose=False)
    ex.check("bert_mask", lambda *a, **k: R.bert_mask(*a[:5]), verbose=False)   # ignores the generator
    assert torch.equal(torch.rand(3), want)


def test_a_function_that_changes_its_inputs_is_told_so_and_judged_on_copies():
    def normalises_in_place(z1, z2, temperature=0.5):
        z1.div_(z1.norm(dim=1, keepdim=True))
        return clone(R.nt_xent)(z1, z2, temperature)
    res = verdict("nt_xent", normalises_in_place)
    # The values are right (they were computed on copies); the in-place change is reported by name.
    # (Backpropagating through the in-place division fails too: autograd needs the old values.)
    assert {c.case for c in res.failures} == {"leaves its inputs unchanged", "differentiable with the right gradients"}
    assert "changed z1 in place" in res.report()


# ---- nt_xent -------------------------------------------------------------------------------------
def _nt_xent(diag_value=None, normalise=True, reduction="mean", t_mode="div", negatives="both", anchors="both"):
    def fn(z1, z2, temperature=0.5):
        n = len(z1)
        a, b = (F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)) if normalise else (z1, z2)
        t = temperature if t_mode == "div" else 1 / temperature
        rows = []
        for i in range(2 * n):  # a loop over anchors, unlike the checker's variants
            anchor = a[i] if i < n else b[i - n]
            partner = b[i] if i < n else a[i - n]
            others = [x for j, x in enumerate(torch.cat([a, b])) if j != i]
            if negatives == "other view":
                others = [x for j, x in enumerate(b if i < n else a) if j != i % n] + [partner]
            logits = torch.stack([anchor @ x for x in others]) / t
            if diag_value is not None:
                logits = torch.cat([logits, torch.tensor([diag_value], dtype=logits.dtype)])
            rows.append(torch.logsumexp(logits, 0) - anchor @ partner / t)
        rows = torch.stack(rows[:n] if anchors == "first" else rows)
        return rows.mean() if reduction == "mean" else rows.sum()
    return fn


def test_nt_xent_loop_version_passes():
    assert ex.check("nt_xent", _nt_xent(), verbose=False)


def test_nt_xent_mistakes():
    hinted("nt_xent", _nt_xent(diag_value=0.0), "self-similarity set to 0", "hand-made")   # the most common bug
    res = hinted("nt_xent", _nt_xent(reduction="sum"), "sum instead of mean")
    assert "exactly 2N times" in res.hint
    hinted("nt_xent", _nt_xent(normalise=False), "not normalised", "long unnormalised")
    hinted("nt_xent", _nt_xent(t_mode="mul"), "temperature multiplies")
    hinted("nt_xent", _nt_xent(negatives="other view"), "negatives from one view")
    hinted("nt_xent", _nt_xent(anchors="first"), "anchors from one view")

    def self_kept(z1, z2, temperature=0.5):
        z = F.normalize(torch.cat([z1, z2]), dim=1)
        n = len(z1)
        return F.cross_entropy(z @ z.T / temperature, torch.arange(2 * n).roll(n))
    hinted("nt_xent", self_kept, "self-similarity kept")
    # Two mistakes at once match no single mistake: no hint rather than a wrong one.
    unhinted("nt_xent", _nt_xent(diag_value=0.0, reduction="sum"))
    res = unhinted("nt_xent", lambda z1, z2, temperature=0.5: clone(R.nt_xent)(z1, z2, temperature).reshape(1))
    assert "wrong loss shape: expected (), got (1,)" in res.report()
    res = unhinted("nt_xent", lambda z1, z2, temperature=0.5: clone(R.nt_xent)(z1, z2, temperature).detach())
    assert "carries no gradient" in res.report()
    res = unhinted("nt_xent", lambda z1, z2, temperature=0.5: clone(R.nt_xent)(z1.float(), z2.float(), temperature))
    assert "wrong dtype for loss: expected torch.float64, got torch.float32" in res.report()


# ---- moco_loss -----------------------------------------------------------------------------------
def test_moco_loss_mistakes():
    def in_batch(q, k, queue, temperature=0.2):
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        return F.cross_entropy(q @ k.T / temperature, torch.arange(len(q)))
    hinted("moco_loss", in_batch, "in-batch negatives")

    def positive_outside(q, k, queue, temperature=0.2):
        q, k, queue = (F.normalize(x, dim=1) for x in (q, k, queue))
        pos = torch.einsum("nd,nd->n", q, k) / temperature
        return (torch.logsumexp(q @ queue.T / temperature, dim=1) - pos).mean()
    hinted("moco_loss", positive_outside, "positive left out of the softmax")

    def positive_last(q, k, queue, temperature=0.2):
        q, k, queue = (F.normalize(x, dim=1) for x in (q, k, queue))
        logits = torch.cat([q @ queue.T, (q * k).sum(1, keepdim=True)], 1) / temperature
        return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))
    hinted("moco_loss", positive_last, "positive in the wrong column")


# ---- alignment / uniformity ----------------------------------------------------------------------
def test_alignment_and_uniformity_mistakes():
    hinted("alignment", lambda a, b, alpha=2.0: (a - b).norm(dim=1).pow(alpha).mean(), "not normalised")
    hinted("alignment", lambda a, b, alpha=2.0: (F.normalize(a, dim=1) - F.normalize(b, dim=1)).norm(dim=1).mean(),
           "no power", "random pairs")
    hinted("alignment", lambda a, b, alpha=2.0: (1 - F.cosine_similarity(a, b)).mean(), "1 - cosine")

    def with_self_pairs(z, t=2.0):
        z = F.normalize(z, dim=1)
        return torch.stack([(-t * (x - y).pow(2).sum()).exp() for x in z for y in z]).mean().log()
    hinted("uniformity", with_self_pairs, "self-pairs included")
    hinted("uniformity", lambda z, t=2.0: torch.pdist(F.normalize(z, dim=1)).pow(2).mul(-t).exp().mean(), "no log")


# ---- random_masking ------------------------------------------------------------------------------
def test_random_masking_mistakes():
    def inverted(tokens, ratio, generator=None):
        m = clone(R.random_masking)(tokens, ratio, generator)
        return m._replace(mask=~m.mask)
    res = hinted("random_masking", inverted, "mask inverted", "mask is True exactly at the removed tokens")
    # One wrong output does not cascade into failures of the independent properties.
    assert {c.case for c in res.failures} <= {"mask is True exactly at the removed tokens",
                                              "every position equally likely to be hidden"}

    def one_noise(tokens, ratio, generator=None):
        B, N, D = tokens.shape
        order = torch.randperm(N, generator=generator).repeat(B, 1)   # one permutation for the whole batch
        K = N - round(ratio * N)
        restore = order.argsort(1)
        return (tokens.gather(1, order[:, :K, None].expand(-1, -1, D)), restore >= K, order[:, :K], restore)
    hinted("random_masking", one_noise, "one mask for the whole batch", "a different mask for every sample")

    def truncated(tokens, ratio, generator=None):
        B, N, D = tokens.shape
        K = int(N * (1 - ratio))
        shuffle = torch.rand(B, N, generator=generator).argsort(1)
        restore = shuffle.argsort(1)
        return (tokens.gather(1, shuffle[:, :K, None].expand(-1, -1, D)), restore >= K, shuffle[:, :K], restore)
    res = hinted("random_masking", truncated, "float rounding in the count")
    assert "N=10, mask_ratio=0.9: kept has shape (2, 0, 4), expected (2, 1, 4)" in res.report()
    hinted("random_masking", lambda t, r, generator=None: clone(R.random_masking)(t, r), "generator ignored")

    def shuffle_as_restore(tokens, ratio, generator=None):
        m = clone(R.random_masking)(tokens, ratio, generator)
        return m._replace(ids_restore=m.ids_restore.argsort(1))
    hinted("random_masking", shuffle_as_restore, "ids_restore is the shuffle", "ids_restore undoes the shuffle")


# ---- bert_mask -----------------------------------------------------------------------------------
def _bert(all_mask=False, overlap=False, specials=False, per_sequence=False, targets="ok", everywhere=False):
    def fn(ids, chosen, vocab_size, mask_id, special_ids, generator=None):
        B, L = ids.shape
        u = torch.rand(B, 1 if per_sequence else L, generator=generator).expand(B, L)
        pool = torch.arange(vocab_size) if specials else torch.tensor(
            [i for i in range(vocab_size) if i not in set(special_ids)])
        words = pool[torch.randint(0, len(pool), (B, L), generator=generator)]
        where = torch.ones_like(chosen) if everywhere else chosen
        if all_mask:
            out = torch.where(where, mask_id, ids)
        elif overlap:
            out = torch.where(where & (u < 0.1), words, torch.where(where & (u < 0.8), mask_id, ids))
        else:
            out = torch.where(where & (u < 0.8), mask_id, torch.where(where & (u < 0.9), words, ids))
        tgt = {"ok": torch.where(chosen, ids, -100), "ids": ids.clone(), "inputs": torch.where(chosen, out, -100)}[targets]
        return out, tgt
    return fn


def test_bert_mask_mistakes():
    assert ex.check("bert_mask", _bert(), verbose=False)
    hinted("bert_mask", _bert(all_mask=True), "every chosen token becomes [MASK]", "80% [MASK]")
    hinted("bert_mask", _bert(overlap=True), "the three outcomes overlap", "80% [MASK]")
    hinted("bert_mask", _bert(specials=True), "special tokens as random words", "random words are ordinary words")
    hinted("bert_mask", _bert(per_sequence=True), "one outcome per sequence")
    hinted("bert_mask", _bert(targets="ids"), "no ignore index", "targets")
    hinted("bert_mask", _bert(targets="inputs"), "targets are the corrupted tokens", "targets")
    hinted("bert_mask", _bert(everywhere=True), "tokens that were not chosen corrupted")
    res = unhinted("bert_mask", _bert(all_mask=True, targets="ids"))
    assert "100% became [MASK], 0% a random word and 0% stayed" in res.report()


# ---- ema_update ----------------------------------------------------------------------------------
def test_ema_update_mistakes():
    @torch.no_grad()
    def swapped(target, online, m):
        for a, b in zip(target.parameters(), online.parameters()):
            a.copy_((1 - m) * a + m * b)
    # At m=0 the swapped update leaves the target unchanged, like a missing in-place write; the other
    # momenta tell the two apart, so the hint is the right one.
    hinted("ema_update", swapped, "momentum swapped", "momentum=0.0", "momentum=0.9")

    def without_no_grad(target, online, m):
        for a, b in zip(target.parameters(), online.parameters()):
            a.mul_(m).add_((1 - m) * b)
    res = hinted("ema_update", without_no_grad, "gradient tracking on")
    assert "leaf Variable" in res.report()

    @torch.no_grad()
    def rebinds(target, online, m):
        for a, b in zip(target.parameters(), online.parameters()):
            a = m * a + (1 - m) * b  # noqa: F841 - the network keeps its old tensor
    hinted("ema_update", rebinds, "not in place")

    @torch.no_grad()
    def moves_online(target, online, m):
        for a, b in zip(online.parameters(), target.parameters()):
            a.lerp_(b, 1 - m)
    hinted("ema_update", moves_online, "online network updated")

    def data_assignment(target, online, m):
        for a, b in zip(target.parameters(), online.parameters()):
            a.data = m * a.data + (1 - m) * b.data
    assert ex.check("ema_update", data_assignment, verbose=False)   # old-fashioned but correct


# ---- vicreg --------------------------------------------------------------------------------------
def test_vicreg_term_mistakes():
    hinted("vicreg_variance", lambda z, gamma=1.0, eps=1e-4: (gamma - (z.var(0) + eps).sqrt()).mean(), "no hinge")
    hinted("vicreg_variance", lambda z, gamma=1.0, eps=1e-4: F.relu(gamma - z.std(0)).mean(), "eps missing",
           "two collapsed dimensions")
    hinted("vicreg_variance", lambda z, gamma=1.0, eps=1e-4: F.relu(gamma - (z.var(0, unbiased=False) + eps).sqrt()).mean(),
           "biased variance")

    def with_diagonal(z):
        c = torch.cov(z.T)
        return c.pow(2).sum() / z.shape[1]
    hinted("vicreg_covariance", with_diagonal, "diagonal included")

    def uncentred(z):
        c = z.T @ z / (len(z) - 1)
        return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]
    hinted("vicreg_covariance", uncentred, "not centred")

    def correlation(z):
        c = torch.corrcoef(z.T)
        return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]
    hinted("vicreg_covariance", correlation, "correlation instead of covariance")


# ---- patchify / masked_mse / decoder input ------------------------------------------------------
def test_patchify_mistakes():
    def unfold(x, p):   # F.unfold's columns are channel-first: (C, p, p)
        return F.unfold(x, p, stride=p).transpose(1, 2)
    hinted("patchify", unfold, "channels first inside a patch", "RGB 8x8")
    hinted("patchify", lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]), "a plain reshape")


def _mse(denominator="hidden", empty_ok=True, where="hidden", sum_pixels=False):
    def fn(pred, target, mask, norm_pix=False):
        if norm_pix:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        e = (pred - target).pow(2)
        e = e.sum(-1) if sum_pixels else e.mean(-1)
        m = {"hidden": mask, "visible": ~mask, "all": torch.ones_like(mask)}[where]
        if not empty_ok:
            return e[m].mean()            # NaN when nothing is hidden
        if denominator == "B*N":
            return (e * m).sum() / mask.numel()
        return (e * m).sum() / max(int(m.sum()), 1)
    return fn


def test_masked_mse_mistakes():
    assert ex.check("masked_mse", _mse(), verbose=False)
    hinted("masked_mse", _mse(denominator="B*N"), "divided by all patches")
    res = hinted("masked_mse", _mse(empty_ok=False), "NaN when nothing is hidden", "nothing hidden gives 0")
    assert "got nan" in res.report()
    hinted("masked_mse", _mse(where="all", denominator="B*N"), "all patches")
    hinted("masked_mse", _mse(where="visible"), "mask the wrong way round")
    hinted("masked_mse", _mse(sum_pixels=True), "squared errors summed over the pixels")
    hinted("masked_mse", lambda p, t, m, norm_pix=False: _mse()(p, t, m, False), "norm_pix ignored", "norm_pix=True")


def test_mae_decoder_input_mistakes():
    def scatter_back(kept, token, restore):   # scattering with ids_restore applies the inverse: shuffles again
        B, K, D = kept.shape
        seq = torch.cat([kept, token.expand(B, restore.shape[1] - K, D)], 1)
        return torch.zeros_like(seq).scatter(1, restore[..., None].expand_as(seq), seq)
    hinted("mae_decoder_input", scatter_back, "shuffled again")

    def zeros(kept, token, restore):
        B, K, D = kept.shape
        seq = torch.cat([kept, kept.new_zeros(B, restore.shape[1] - K, D)], 1)
        return torch.stack([s[r] for s, r in zip(seq, restore)])
    hinted("mae_decoder_input", zeros, "zeros instead of the mask token")


# ---- knn_predict ---------------------------------------------------------------------------------
def _knn(normalise=True, weighted=True, skip=0, euclid=False):
    def fn(train_feats, train_labels, test_feats, num_classes, k=20, temperature=0.07):
        a, b = (F.normalize(test_feats, dim=1), F.normalize(train_feats, dim=1)) if normalise else (test_feats, train_feats)
        preds = []
        for q in a:   # one query at a time
            s = -(b - q).norm(dim=1) if euclid else b @ q
            order = s.argsort(descending=True)[skip:skip + min(k, len(b))]
            votes = torch.zeros(num_classes)
            for j in order:
                votes[train_labels[j]] += (s[j] / temperature).exp() if weighted else 1.0
            preds.append(votes.argmax())
        return torch.stack(preds)
    return fn


def test_knn_predict_mistakes():
    assert ex.check("knn_predict", _knn(), verbose=False)
    hinted("knn_predict", _knn(skip=1), "first neighbour skipped")
    hinted("knn_predict", _knn(normalise=False), "dot product", "cosine, not dot product")
    hinted("knn_predict", _knn(euclid=True, normalise=False), "Euclidean distance")
    # A student who normalises but does not weight is told about the weights, not about normalising.
    res = hinted("knn_predict", _knn(weighted=False), "unweighted votes", "votes weighted")
    assert "unit sphere" not in res.report()


# ---- stratified_subset ---------------------------------------------------------------------------
def test_stratified_subset_mistakes():
    def first(labels, n, generator=None):
        return torch.cat([torch.nonzero(labels == c)[:n, 0] for c in labels.unique()])
    hinted("stratified_subset", first, "always the first items", "a random sample")

    def anywhere(labels, n, generator=None):
        return torch.randperm(len(labels), generator=generator)[: n * len(labels.unique())]
    hinted("stratified_subset", anywhere, "not stratified", "per_class items of every class")

    def repeats(labels, n, generator=None):
        out = []
        for c in labels.unique():
            idx = torch.nonzero(labels == c)[:, 0]
            out.append(idx[torch.randint(len(idx), (n,), generator=generator)])
        return torch.cat(out)
    hinted("stratified_subset", repeats, "drawn with replacement", "no item twice")


# ---- pca -----------------------------------------------------------------------------------------
def test_pca_mistakes():
    def eigh_ascending(x, k):   # eigh sorts eigenvalues ascending: the first k are the smallest
        xc = x - x.mean(0)
        _, vecs = torch.linalg.eigh(xc.T @ xc)
        return xc @ vecs[:, :k]
    hinted("pca", eigh_ascending, "smallest variance first", "2 components")
    hinted("pca", lambda x, k: x @ torch.linalg.svd(x, full_matrices=False)[2][:k].T, "not centred")
    hinted("pca", lambda x, k: torch.linalg.svd(x - x.mean(0), full_matrices=False)[0][:, :k], "left singular vectors")
    # A sign flip of a component is not a mistake.
    assert ex.check("pca", lambda x, k: -clone(R.pca)(x, k), verbose=False)
    # torch.pca_lowrank is a randomised approximation: said so, not a bare "wrong values".
    res = ex.check("pca", lambda x, k: (x - x.mean(0)) @ torch.pca_lowrank(x, q=k)[2], verbose=False)
    assert not res and "randomised approximation" in res.report() and "torch.pca_lowrank" in res.report()
    assert res.hint == ""


# ---- dino --------------------------------------------------------------------------------------
def test_dino_mistakes():
    hinted("dino_teacher", lambda t, c, temperature=0.04: F.softmax(t.detach() / temperature, dim=1), "no centring")
    hinted("dino_teacher", lambda t, c, temperature=0.04: F.softmax((t.detach() - c) / temperature, dim=0),
           "softmax over the batch")
    hinted("dino_teacher", lambda t, c, temperature=0.04: F.softmax((t - c) / temperature, dim=-1),
           "gradient into the teacher", "no gradient into the teacher")
    hinted("update_center", lambda c, t, momentum=0.9: c.mul_(momentum).add_((1 - momentum) * t.detach().mean(0)),
           "changes the centre in place", "leaves its inputs unchanged")
    hinted("update_center", lambda c, t, momentum=0.9: (1 - momentum) * c + momentum * t.detach().mean(0),
           "momentum swapped")


# ---- the references themselves: against loops and against the kit -------------------------------
def test_references_against_naive_loops():
    g = torch.Generator().manual_seed(0)
    z1, z2, queue = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g), torch.randn(7, 4, generator=g)
    assert torch.allclose(R.nt_xent(z1, z2, 0.3), _nt_xent()(z1, z2, 0.3), atol=1e-5)
    qn, kn, un = F.normalize(z1, dim=1), F.normalize(z2, dim=1), F.normalize(queue, dim=1)
    moco = sum(-torch.log(torch.exp(qn[i] @ kn[i] / 0.2) / (torch.exp(qn[i] @ kn[i] / 0.2)
                                                           + sum(torch.exp(qn[i] @ u / 0.2) for u in un)))
               for i in range(5)) / 5
    assert torch.allclose(R.moco_loss(z1, z2, queue, 0.2), moco, atol=1e-5)
    z = torch.randn(9, 3, generator=g)
    n, d = z.shape
    mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]
    cov = [[sum((z[i, a] - mean[a]) * (z[i, b] - mean[b]) for i in range(n)) / (n - 1) for b in range(d)] for a in range(d)]
    assert torch.allclose(R.vicreg_covariance(z), sum(cov[a][b] ** 2 for a in range(d) for b in range(d) if a != b) / d)
    std = [((sum((z[i, j] - mean[j]) ** 2 for i in range(n)) / (n - 1)) + 1e-4) ** 0.5 for j in range(d)]
    assert torch.allclose(R.vicreg_variance(z), sum(max(0.0, 1 - s) for s in std) / d)
    x = torch.randn(2, 3, 4, 6, generator=g)
    patches = [[torch.stack([x[b, c, r, col] for r in range(i * 2, i * 2 + 2) for col in range(j * 2, j * 2 + 2)
                             for c in range(3)]) for i in range(2) for j in range(3)] for b in range(2)]
    assert torch.equal(R.patchify(x, 2), torch.stack([torch.stack(p) for p in patches]))
    m = R.random_masking(torch.randn(2, 6, 3, generator=g), 0.5, torch.Generator().manual_seed(1))
    token = torch.randn(3, generator=g)
    full = R.mae_decoder_input(m.kept, token, m.ids_restore)
    for b in range(2):
        for j in range(3):
            assert torch.equal(full[b, m.ids_keep[b, j]], m.kept[b, j])   # kept tokens back in place
        for pos in range(6):
            if m.mask[b, pos]:
                assert torch.equal(full[b, pos], token)                     # the mask token elsewhere
    zs = torch.randn(6, 3, generator=g)
    zn = F.normalize(zs, dim=1)
    pairs = [torch.exp(-2 * (zn[i] - zn[j]).pow(2).sum()) for i in range(6) for j in range(6) if i != j]
    assert torch.allclose(R.uniformity(zs), torch.stack(pairs).mean().log(), atol=1e-6)


def test_references_equal_the_kit():
    """Where the kit's maths is settled, the references agree with the kit's own functions."""
    from sslkit import losses, pretext
    from sslkit.eval import diagnostics, knn
    from sslkit.methods.base import ema_update
    g = torch.Generator().manual_seed(0)
    z1, z2, queue = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g), torch.randn(12, 5, generator=g)
    assert torch.allclose(R.nt_xent(z1, z2, 0.3), losses.nt_xent(z1, z2, 0.3))
    assert torch.allclose(R.moco_loss(z1, z2, queue, 0.2), losses.info_nce(z1, z2, queue, 0.2))
    assert abs(R.alignment(z1, z2).item() - diagnostics.alignment(z1, z2)) < 1e-5
    assert abs(R.uniformity(z1).item() - diagnostics.uniformity(z1)) < 1e-5
    pred, target = torch.randn(2, 6, 12, generator=g), torch.randn(2, 6, 12, generator=g)
    for mask in (torch.rand(2, 6, generator=g) < 0.5, torch.zeros(2, 6, dtype=torch.bool)):
        for norm_pix in (False, True):
            mine = R.masked_mse(pred, target, mask, norm_pix)
            assert torch.isfinite(mine) and torch.allclose(mine, losses.masked_mse(pred, target, mask, norm_pix=norm_pix))
    x = torch.randn(2, 3, 8, 12, generator=g)
    assert torch.equal(R.patchify(x, 4), pretext.patchify(x, 4))
    tokens = torch.randn(3, 10, 4, generator=g)
    mine = R.random_masking(tokens, 0.7, torch.Generator().manual_seed(1))
    kit = pretext.random_masking(tokens, 0.7, generator=torch.Generator().manual_seed(1))
    for a, b in zip(mine, (kit.kept, kit.mask, kit.ids_keep, kit.ids_restore)):
        assert torch.equal(a, b)
    bank, labels, q = torch.randn(7, 6, generator=g), torch.arange(7) % 3, torch.randn(9, 6, generator=g)
    for k in (1, 5, 7, 50):
        assert torch.equal(R.knn_predict(bank, labels, q, 3, k=k), knn.knn_predict(bank, labels, q, 3, k=k))

    def nets(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    online = nets(0)
    online.train()(torch.randn(16, 3, generator=g))  # moves the running stats and the batch counter
    mine, kit = nets(1), nets(1)
    R.ema_update(mine, online, 0.9)
    ema_update(kit, online, 0.9)
    for (name, a), b in zip(mine.state_dict().items(), kit.state_dict().values()):
        assert torch.allclose(a, b), name
    # The kit's stratified_subset draws differently but obeys the same rules the checker tests.
    from sslkit.exercises.check_eval import LABELS
    idx = sslkit.eval.stratified_subset(LABELS, 3, seed=0)
    assert torch.bincount(LABELS[idx]).tolist() == [3, 3, 3, 3] and len(idx.unique()) == 12
