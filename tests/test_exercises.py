"""Exercise checkers: reference solutions pass, stripped ones say "not implemented yet", and each
checker catches typical mistakes with a specific message (and a hint naming the mistake)."""
import json
import textwrap

import pytest
import torch
import torch.nn.functional as F

import sslkit.exercises as ex
from sslkit.exercises import reference as R


def _fails(name, fn, *fragments):
    res = ex.check(name, fn, verbose=False)
    assert not res and not res.passed
    text = res.report()
    for frag in fragments:
        assert frag in text, f"{frag!r} not in report:\n{text}"
    return res


@pytest.mark.parametrize("name", ex.names())
def test_reference_solutions_pass(name, capsys):
    res = ex.check(name, getattr(R, name))
    assert res and res.passed and len(res.cases) >= 2
    out = capsys.readouterr().out
    assert out.startswith(f"✅ {name}: all") and "❌" not in out
    assert repr(res).startswith(f"CheckResult({name!r}, passed=True")


@pytest.mark.parametrize("name", ex.names())
def test_partials_and_raise_error(name):
    fn = getattr(ex, f"check_{name}")
    assert fn(getattr(R, name), verbose=False)

    def broken(*args, **kwargs):
        raise NotImplementedError("Exercise: implement it")
    with pytest.raises(ex.ExerciseFailed, match="not implemented yet"):
        fn(broken, verbose=False, raise_error=True)


def test_check_bad_arguments():
    with pytest.raises(ValueError, match="name='nope'"):
        ex.check("nope", R.nt_xent)
    with pytest.raises(ValueError, match="must be a function"):
        ex.check("nt_xent", 3)


# ---- strip ---------------------------------------------------------------------------------------
SOLUTION_CELLS = {
    "nt_xent": '''
        import torch
        import torch.nn.functional as F

        def nt_xent(z1, z2, temperature=0.5):
            """NT-Xent."""
            ### BEGIN SOLUTION
            n = z1.shape[0]
            z = F.normalize(torch.cat([z1, z2]), dim=1)
            sim = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
            return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
            ### END SOLUTION
    ''',
    "ema_update": '''
        import torch

        @torch.no_grad()
        def ema_update(target, online, momentum):
            ### BEGIN SOLUTION
            for p_t, p_o in zip(target.parameters(), online.parameters()):
                p_t.mul_(momentum).add_(p_o, alpha=1 - momentum)
            ### END SOLUTION
    ''',
}


@pytest.mark.parametrize("name", list(SOLUTION_CELLS))
def test_stripped_solution_fails_and_full_solution_passes(name):
    src = textwrap.dedent(SOLUTION_CELLS[name])
    full, student = {}, {}
    exec(src, full)
    assert ex.check(name, full[name], verbose=False)
    stripped = ex.strip_source(src)
    assert "BEGIN SOLUTION" not in stripped and "F.normalize" not in stripped and "mul_" not in stripped
    assert f'raise NotImplementedError("Exercise: implement {name}")' in stripped
    exec(stripped, student)
    res = _fails(name, student[name], "not implemented yet")
    assert len(res.cases) == 1


def test_strip_source_keeps_indentation_and_other_lines():
    src = "x = 1\ndef f(a):\n    '''doc'''\n    ### BEGIN SOLUTION\n    return a\n    ### END SOLUTION\ny = 2\n"
    assert ex.strip_source(src) == ("x = 1\ndef f(a):\n    '''doc'''\n"
                                    "    raise NotImplementedError(\"Exercise: implement f\")\ny = 2\n")
    assert ex.strip_source("a = 1\n") == "a = 1\n"


@pytest.mark.parametrize("src, msg", [
    ("### BEGIN SOLUTION\nx\n", "never closed"),
    ("x\n### END SOLUTION\n", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "nested"),
])
def test_strip_source_unbalanced_markers(src, msg):
    with pytest.raises(ValueError, match=msg):
        ex.strip_source(src)


def _notebook(cells):
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"widgets": {"state": {}}},
            "cells": [{"cell_type": t, "metadata": {}, "source": s,
                       **({"outputs": [{"output_type": "stream", "name": "stdout", "text": "hi"}],
                           "execution_count": 3} if t == "code" else {})} for t, s in cells]}


def test_strip_notebooks(tmp_path):
    src, dst = tmp_path / "nb", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    code = textwrap.dedent(SOLUTION_CELLS["nt_xent"])
    (src / "a.ipynb").write_text(json.dumps(_notebook([("markdown", "# A"), ("code", code)])))
    (src / "sub" / "b.ipynb").write_text(json.dumps(_notebook([("code", ["print(1)\n", "x = 2"])])))
    written = ex.strip(src, dst)
    assert sorted(p.relative_to(dst).as_posix() for p in written) == ["a.ipynb", "sub/b.ipynb"]
    a = json.loads((dst / "a.ipynb").read_text())
    assert a["cells"][0]["source"] == "# A"
    assert a["cells"][1]["outputs"] == [] and a["cells"][1]["execution_count"] is None
    assert "NotImplementedError" in a["cells"][1]["source"] and "widgets" not in a["metadata"]
    ns = {}
    exec(a["cells"][1]["source"], ns)
    assert not ex.check("nt_xent", ns["nt_xent"], verbose=False)
    b = json.loads((dst / "sub" / "b.ipynb").read_text())
    assert b["cells"][0]["source"] == "print(1)\nx = 2"
    # The source notebooks are untouched.
    assert "BEGIN SOLUTION" in json.loads((src / "a.ipynb").read_text())["cells"][1]["source"]
    # A single file works too.
    assert ex.strip(src / "a.ipynb", tmp_path / "one") == [tmp_path / "one" / "a.ipynb"]


def test_strip_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ex.strip(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="source folder"):
        ex.strip(tmp_path, tmp_path)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(ValueError, match="folder or an .ipynb"):
        ex.strip(tmp_path / "x.txt", tmp_path / "out")
    (tmp_path / "bad.ipynb").write_text(json.dumps(_notebook([("code", "### END SOLUTION\n")])))
    with pytest.raises(ValueError, match="bad.ipynb"):
        ex.strip(tmp_path, tmp_path / "out")


# ---- typical mistakes ----------------------------------------------------------------------------
def _nt_xent_variant(normalise=True, temp_mode="div", exclude_self=True):
    def fn(z1, z2, temperature=0.5):
        n = z1.shape[0]
        z = torch.cat([z1, z2])
        z = F.normalize(z, dim=1) if normalise else z
        t = {"div": temperature, "none": 1.0}[temp_mode]
        sim = z @ z.T / t
        if exclude_self:
            sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
        return F.cross_entropy(sim, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))
    return fn


def test_nt_xent_mistakes():
    _fails("nt_xent", _nt_xent_variant(normalise=False), "wrong value", "long unnormalised vectors",
           "not L2-normalised")
    _fails("nt_xent", _nt_xent_variant(temp_mode="none"), "low temperature", "temperature is missing")
    _fails("nt_xent", _nt_xent_variant(exclude_self=False), "mask the diagonal")
    _fails("nt_xent", lambda z1, z2, temperature=0.5: R.nt_xent(z1, z2, temperature).reshape(1),
           "wrong loss shape: expected (), got (1,)")
    _fails("nt_xent", lambda z1, z2, temperature=0.5: R.nt_xent(z1, z2, temperature).detach(),
           "carries no gradient")
    _fails("nt_xent", lambda z1, z2, temperature=0.5: R.nt_xent(z1.float(), z2.float(), temperature),
           "wrong dtype for loss: expected torch.float64, got torch.float32")


def test_random_masking_mistakes():
    def inverted(tokens, ratio, generator=None):
        m = R.random_masking(tokens, ratio, generator)
        return m._replace(mask=~m.mask)

    def no_inverse(tokens, ratio, generator=None):
        B, N, D = tokens.shape
        ids_shuffle = torch.rand(B, N, generator=generator).argsort(1)
        m = R.random_masking(tokens, ratio, generator)
        return m._replace(ids_restore=ids_shuffle)

    def same_for_batch(tokens, ratio, generator=None):
        B, N, D = tokens.shape
        noise = torch.rand(1, N, generator=generator).expand(B, N)
        keep = int(N * (1 - ratio))
        ids_shuffle = noise.argsort(1)
        ids_restore = ids_shuffle.argsort(1)
        ids_keep = ids_shuffle[:, :keep]
        mask = torch.ones(B, N, dtype=torch.bool)
        mask[:, :keep] = False
        return (tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D)), mask.gather(1, ids_restore),
                ids_keep, ids_restore)

    def round_instead_of_floor(tokens, ratio, generator=None):
        return R.random_masking(tokens, ratio - 0.1 if ratio > 0.1 else ratio, generator)

    _fails("random_masking", inverted, "mask is True at the kept positions", "inverted")
    _fails("random_masking", no_inverse, "ids_restore unshuffles", "inverse permutation")
    _fails("random_masking", same_for_batch, "all 64 samples got the same mask", "per sample")
    _fails("random_masking", round_instead_of_floor, "wrong kept shape: expected (4, 4, 3), got (4, 6, 3)")
    _fails("random_masking", lambda t, r, generator=None: R.random_masking(t, r),
           "uses the generator")

    def int_floor(tokens, ratio, generator=None):
        B, N, D = tokens.shape
        keep = int(N * (1 - ratio))
        ids_shuffle = torch.rand(B, N, generator=generator).argsort(1)
        ids_restore = ids_shuffle.argsort(1)
        ids_keep = ids_shuffle[:, :keep]
        return (tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, D)), ids_restore >= keep,
                ids_keep, ids_restore)
    _fails("random_masking", int_floor, "N=10, mask_ratio=0.9 keeps 1", "float rounding")


def test_ema_update_mistakes():
    @torch.no_grad()
    def swapped(target, online, m):
        for p_t, p_o in zip(target.parameters(), online.parameters()):
            p_t.mul_(1 - m).add_(p_o, alpha=m)

    @torch.no_grad()
    def updates_online(target, online, m):
        R.ema_update(online, target, m)

    def not_in_place(target, online, m):
        return [m * a + (1 - m) * b for a, b in zip(target.parameters(), online.parameters())]

    def with_grad(target, online, m):
        for p_t, p_o in zip(target.parameters(), online.parameters()):
            p_t.data = m * p_t + (1 - m) * p_o  # builds a graph through p_t

    _fails("ema_update", swapped, "momentum=0.9", "swapped")
    _fails("ema_update", updates_online, "the online network changed")
    _fails("ema_update", not_in_place, "did not change", "in place")
    res = ex.check("ema_update", with_grad, verbose=False)
    assert res  # .data assignment detaches: that is a correct (if old-fashioned) update


def test_patchify_mistakes():
    def channel_first(x, p):
        B, C, H, W = x.shape
        return x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, p * p * C)

    _fails("patchify", channel_first, "RGB 8x8", "(row, column, channel)")
    _fails("patchify", lambda x, p: x.reshape(x.shape[0], -1, p * p * x.shape[1]), "plain reshape")
    _fails("patchify", lambda x, p: R.patchify(x, p).transpose(1, 2), "wrong patches shape")


def test_masked_mse_mistakes():
    _fails("masked_mse", lambda p, t, m, norm_pix=False: (p - t).pow(2).mean(), "ALL patches")
    _fails("masked_mse", lambda p, t, m, norm_pix=False: R.masked_mse(p, t, ~m, norm_pix), "wrong way round")
    _fails("masked_mse", lambda p, t, m, norm_pix=False: R.masked_mse(p, t, m, False), "norm_pix=True",
           "own mean and std")


def test_knn_predict_mistakes():
    def dot(bank, labels, q, c, k=20, temperature=0.07):
        top, idx = (q @ bank.T).topk(k, dim=1)  # raw dot products, not cosine
        votes = torch.zeros(len(q), c).scatter_add_(1, labels[idx], (top / temperature).exp())
        return votes.argmax(1)

    def unweighted(bank, labels, q, c, k=20, temperature=0.07):
        return R.knn_predict(bank, labels, q, c, k, 1e9)

    def whole_bank(bank, labels, q, c, k=20, temperature=0.07):
        return R.knn_predict(bank, labels, q, c, len(bank), temperature)

    _fails("knn_predict", dot, "cosine, not dot product")
    _fails("knn_predict", unweighted, "votes weighted", "exp(similarity / temperature)")
    _fails("knn_predict", whole_bank, "only the k nearest", "torch.topk")
    _fails("knn_predict", lambda b, l, q, c, k=20, temperature=0.07: R.knn_predict(b, l, q, c, k, temperature).float(),
           "wrong dtype for predictions")


def test_alignment_uniformity_pca_mistakes():
    _fails("alignment", lambda a, b: (a - b).norm(dim=1).pow(2).mean(), "normalise both")
    _fails("alignment", lambda a, b: (F.normalize(a, dim=1) - F.normalize(b, dim=1)).norm(dim=1).mean(),
           "squared")
    _fails("uniformity", lambda z: torch.cdist(F.normalize(z, dim=1), F.normalize(z, dim=1)).pow(2)
           .mul(-2).exp().mean().log(), "i == j")
    _fails("uniformity", lambda z: torch.pdist(F.normalize(z, dim=1)).pow(2).mul(-2).exp().mean(), "log")
    _fails("pca", lambda x, k: x @ torch.linalg.svd(x, full_matrices=False)[2][:k].T, "centre the data")
    _fails("pca", lambda x, k: R.pca(x, k)[:, :1], "wrong projection shape")
    # A sign flip of a component is not a mistake.
    assert ex.check("pca", lambda x, k: -R.pca(x, k), verbose=False)


def test_references_equal_the_kit():
    """The references the checkers use are the kit's own conventions."""
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    losses = pytest.importorskip("sslkit.losses")
    assert torch.allclose(R.nt_xent(z1, z2, 0.3), losses.nt_xent(z1, z2, 0.3))
    pred, target = torch.randn(2, 6, 12, generator=g), torch.randn(2, 6, 12, generator=g)
    mask = torch.rand(2, 6, generator=g) < 0.5
    mask[:, 0] = True
    for norm_pix in (False, True):
        assert torch.allclose(R.masked_mse(pred, target, mask, norm_pix),
                              losses.masked_mse(pred, target, mask, norm_pix=norm_pix))
    diag = pytest.importorskip("sslkit.eval.diagnostics")
    assert abs(R.alignment(z1, z2).item() - diag.alignment(z1, z2)) < 1e-5
    assert abs(R.uniformity(z1).item() - diag.uniformity(z1)) < 1e-5
    knn = pytest.importorskip("sslkit.eval.knn")
    bank, labels, q = torch.randn(40, 6, generator=g), torch.arange(40) % 3, torch.randn(9, 6, generator=g)
    assert torch.equal(R.knn_predict(bank, labels, q, 3, k=5), knn.knn_predict(bank, labels, q, 3, k=5))
    pretext = pytest.importorskip("sslkit.pretext")
    if hasattr(pretext, "patchify"):
        x = torch.randn(2, 3, 8, 12, generator=g)
        assert torch.equal(R.patchify(x, 4), pretext.patchify(x, 4))
    if hasattr(pretext, "random_masking"):
        tokens = torch.randn(3, 10, 4, generator=g)
        mine = R.random_masking(tokens, 0.7, torch.Generator().manual_seed(1))
        kit = pretext.random_masking(tokens, 0.7, generator=torch.Generator().manual_seed(1))
        assert mine.kept.shape == kit.kept.shape and mine.mask.sum() == kit.mask.sum()
        assert torch.equal(mine.mask, kit.mask) and torch.equal(mine.ids_restore, kit.ids_restore)
        assert ex.check("random_masking", lambda t, r, generator=None: pretext.random_masking(t, r, generator=generator),
                        verbose=False)


def test_references_equal_the_kit_on_edge_cases():
    """Empty MAE mask -> 0, k > N clipped to N, EMA of float buffers: as the kit's own functions."""
    from torch import nn

    from sslkit import losses
    from sslkit.eval import knn
    from sslkit.methods.base import ema_update
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 5, 12, generator=g), torch.randn(2, 5, 12, generator=g)
    for mask in (torch.zeros(2, 5, dtype=torch.bool), torch.rand(2, 5, generator=g) < 0.5):
        for norm_pix in (False, True):
            mine = R.masked_mse(pred, target, mask, norm_pix)
            kit = losses.masked_mse(pred, target, mask, norm_pix=norm_pix)
            assert torch.isfinite(mine) and torch.allclose(mine, kit)
    assert R.masked_mse(pred, target, torch.zeros(2, 5, dtype=torch.bool)).item() == 0.0
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
    assert not torch.equal(mine[1].running_mean, nets(1)[1].running_mean)  # the buffers did move
