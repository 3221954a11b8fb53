"""SwAV: Sinkhorn-Knopp codes against a loop reference (and across 2 processes), the swapped
prediction loss, the prototype freeze, the queue, training, resume and the notebook helpers."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

import sslkit
from sslkit import backbones, distributed, losses
from sslkit.train import fit

SMALL = dict(proj_hidden=32, proj_dim=16, n_prototypes=12)


def official_sinkhorn(scores: torch.Tensor, epsilon: float, iterations: int) -> list[list[float]]:
    """The official code's steps in its K x B notation, element by element in Python floats."""
    b, k = scores.shape
    q = [[math.exp(float(scores[j, i]) / epsilon) for j in range(b)] for i in range(k)]   # K x B
    total = sum(sum(row) for row in q)
    q = [[v / total for v in row] for row in q]
    for _ in range(iterations):
        for i in range(k):                       # each prototype (row) gets 1 / K
            s = sum(q[i])
            q[i] = [v / s / k for v in q[i]]
        for j in range(b):                       # each sample (column) gets 1 / B
            s = sum(q[i][j] for i in range(k))
            for i in range(k):
                q[i][j] = q[i][j] / s / b
    return [[q[i][j] * b for i in range(k)] for j in range(b)]   # back to B x K


def cosine_scores(b: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.nn.functional.normalize(torch.randn(b, 8, generator=g, dtype=torch.float64), dim=1)
    c = torch.nn.functional.normalize(torch.randn(k, 8, generator=g, dtype=torch.float64), dim=1)
    return z @ c.T                                                        # (B, K) in [-1, 1]


# --- sinkhorn ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("b, k, eps, iters", [(10, 4, 0.05, 3), (7, 9, 0.1, 1), (12, 3, 0.5, 5)])
def test_sinkhorn_matches_the_official_steps_written_as_loops(b, k, eps, iters):
    s = cosine_scores(b, k)
    ref = torch.tensor(official_sinkhorn(s, eps, iters), dtype=torch.float64)
    torch.testing.assert_close(losses.sinkhorn(s, eps, iters), ref, rtol=1e-10, atol=1e-12)
    out32 = losses.sinkhorn(s.float(), eps, iters)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, ref.float(), rtol=1e-4, atol=1e-6)


def test_sinkhorn_codes_are_distributions_and_balanced():
    b, k = 256, 16
    s = cosine_scores(b, k, seed=1).float()
    s[:, 0] += 0.5                                          # one prototype everybody prefers
    q = losses.sinkhorn(s)                                  # paper setting: epsilon 0.05, 3 rounds
    torch.testing.assert_close(q.sum(1), torch.ones(b), rtol=0, atol=1e-5)
    assert (q >= 0).all()
    # Columns: B / K each. After the paper's 3 rounds within 40% here (0.40), while the plain softmax
    # gives the preferred prototype 6x its share and others a fifth of theirs.
    share = q.sum(0) / (b / k)
    plain = torch.softmax(s / 0.05, dim=1).sum(0) / (b / k)
    assert (share - 1).abs().max() < 0.45 and plain[0] > 5 and plain.min() < 0.25
    # ...and exactly balanced in the limit: the imbalance shrinks with every round.
    errors = [(losses.sinkhorn(s.double(), 0.05, n).sum(0) - b / k).abs().max().item() for n in (1, 3, 10, 100)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6


def test_sinkhorn_properties():
    s = cosine_scores(20, 5).float().requires_grad_()
    q = losses.sinkhorn(s)
    assert not q.requires_grad                              # codes are targets: no gradient
    perm = torch.randperm(20)
    torch.testing.assert_close(losses.sinkhorn(s.detach()[perm]), q[perm])     # equivariant over samples
    torch.testing.assert_close(losses.sinkhorn(s.detach() + 3.0), q)           # a common shift cancels
    hard = losses.sinkhorn(s.detach(), epsilon=0.001)       # exp(1 / 0.001) overflows float32; log Q does not
    assert torch.isfinite(hard).all()
    torch.testing.assert_close(hard.sum(1), torch.ones(20))
    if tdist.is_available():
        assert distributed.all_reduce_sum(torch.tensor(2.0)).item() == 2.0     # one process: no-op
        assert distributed.all_reduce_max(torch.tensor(2.0)).item() == 2.0


@pytest.mark.parametrize("kw, match", [
    (dict(scores=torch.rand(4)), "rank 2"), (dict(scores=torch.ones(4, 3, dtype=torch.long)), "floating"),
    (dict(scores=torch.rand(0, 3)), "B, K >= 1"), (dict(scores=torch.rand(4, 3), epsilon=0), "epsilon"),
    (dict(scores=torch.rand(4, 3), iterations=0), "iterations"),
])
def test_sinkhorn_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        losses.sinkhorn(**kw)


def _sinkhorn_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        s = cosine_scores(16, 6, seed=3).float()
        torch.save(losses.sinkhorn(distributed.shard(s)), os.path.join(out_dir, f"codes{rank}.pt"))
        # the prototype freeze under DDP (as fit wraps it): no gradient, no change, then training
        torch.manual_seed(0)
        method = tiny(freeze_prototypes=2)
        ddp = torch.nn.parallel.DistributedDataParallel(method, find_unused_parameters=method.find_unused_parameters)
        opt = torch.optim.AdamW(method.parameters(), lr=1e-2, weight_decay=0.1)
        start, log = method.prototypes.weight.detach().clone(), []
        torch.manual_seed(rank)
        for k in (1, 2, 3):
            out = ddp(torch.rand(8, 1, 8, 8))
            opt.zero_grad()
            out["loss"].backward()
            grad = method.prototypes.weight.grad
            opt.step()
            method.on_step_end(k, 3)
            log.append((grad is None, torch.equal(method.prototypes.weight, start)))
        torch.save(log, os.path.join(out_dir, f"freeze{rank}.pt"))
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_distributed_sinkhorn_and_freeze_match_one_process(tmp_path):
    mp.spawn(_sinkhorn_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"codes{r}.pt", weights_only=True) for r in range(2)]
    whole = losses.sinkhorn(cosine_scores(16, 6, seed=3).float())
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-7)
    # the local rows alone would give other codes: the all-reduce matters
    assert not torch.allclose(losses.sinkhorn(cosine_scores(16, 6, seed=3).float()[:8]), parts[0])
    for r in range(2):   # frozen for 2 steps under DDP too: gradient None, weights unchanged; then trained
        assert torch.load(tmp_path / f"freeze{r}.pt") == [(True, True), (True, True), (False, False)]


# --- swav_loss ---------------------------------------------------------------------------------------
def loop_swav_loss(scores, codes, t):
    total = 0.0
    for i in range(codes.shape[0]):
        sub = 0.0
        for v in range(scores.shape[0]):
            if v == i:
                continue
            for b in range(scores.shape[1]):
                logp = torch.log_softmax(scores[v, b] / t, dim=0)
                sub -= float((codes[i, b] * logp).sum()) / scores.shape[1]
        total += sub / (scores.shape[0] - 1)
    return total / codes.shape[0]


@pytest.mark.parametrize("n_views, n_coded", [(2, 2), (6, 2), (3, 1)])
def test_swav_loss_matches_a_loop_reference(n_views, n_coded):
    g = torch.Generator().manual_seed(n_views)
    scores = torch.randn(n_views, 5, 7, generator=g, dtype=torch.float64)
    codes = torch.softmax(torch.randn(n_coded, 5, 7, generator=g, dtype=torch.float64), dim=-1)
    value = losses.swav_loss(scores, codes, temperature=0.1)
    assert value.item() == pytest.approx(loop_swav_loss(scores, codes, 0.1), rel=1e-10)
    assert losses.swav_loss(list(scores), list(codes), 0.1).item() == pytest.approx(value.item(), rel=1e-12)


def test_swav_loss_sends_no_gradient_into_the_codes():
    scores = torch.randn(2, 4, 3, requires_grad=True)
    codes = torch.softmax(torch.randn(2, 4, 3), -1).requires_grad_()
    losses.swav_loss(scores, codes).backward()
    assert codes.grad is None and scores.grad is not None and scores.grad.abs().sum() > 0


@pytest.mark.parametrize("scores, codes, match", [
    (torch.randn(1, 4, 3), torch.rand(1, 4, 3), "V >= 2"), (torch.randn(2, 4, 3), torch.rand(3, 4, 3), "at most"),
    (torch.randn(2, 4, 3), torch.rand(2, 4, 5), r"\(B, K\)"), (torch.randn(4, 3), torch.rand(2, 4, 3), "rank 3"),
    ([], torch.rand(2, 4, 3), "empty"),
])
def test_swav_loss_rejects_bad_input(scores, codes, match):
    with pytest.raises(ValueError, match=match):
        losses.swav_loss(scores, codes)


# --- the method --------------------------------------------------------------------------------------
def tiny(**config) -> sslkit.methods.Method:
    net = backbones.create("convnet", in_channels=1, widths=(8, 16))
    return sslkit.create("swav", backbone=net, **{**SMALL, **config})


def identity_views(x, generator=None):
    return x.clone()


@pytest.fixture(scope="module")
def digits():
    return sslkit.data.load("digits")


def step(method, opt, x, k):
    out = method.training_step(x)
    opt.zero_grad()
    out["loss"].backward()
    opt.step()
    method.on_step_end(k, 100)
    return out


def test_loss_falls_and_embed(digits):
    torch.manual_seed(0)
    method = tiny(freeze_prototypes=5)
    x = digits.batch(torch.arange(64))
    opt = torch.optim.AdamW(method.parameters(), lr=3e-3)
    hist = [step(method, opt, x, k + 1) for k in range(40)]
    assert all(torch.isfinite(v) and v.ndim == 0 for o in hist for v in o.values())
    first, last = (sum(o["loss"].item() for o in part) / 5 for part in (hist[:5], hist[-5:]))
    assert last < 0.9 * first, [o["loss"].item() for o in hist]
    feats = method.embed(x)
    assert feats.shape == (64, method.embed_dim) == (64, 16)
    assert torch.isfinite(feats).all() and not feats.requires_grad
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(12))   # re-normalised


def test_prototypes_are_frozen_during_the_first_steps(digits):
    method = tiny(freeze_prototypes=2)
    x = digits.batch(torch.arange(32))
    opt = torch.optim.AdamW(method.parameters(), lr=1e-2, weight_decay=0.1)
    start = method.prototypes.weight.detach().clone()
    for k in (1, 2):
        step(method, opt, x, k)
        assert method.prototypes.weight.grad is None                # dropped, as the official code
        assert torch.equal(method.prototypes.weight, start)         # no update, no weight decay
        assert method.prototypes.weight not in opt.state            # the optimiser never saw it
    step(method, opt, x, 3)
    assert method.prototypes.weight.grad is not None
    assert not torch.equal(method.prototypes.weight, start)
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(12))
    # without a freeze the very first step moves them
    free = tiny(freeze_prototypes=0)
    opt = torch.optim.AdamW(free.parameters(), lr=1e-2)
    w0 = free.prototypes.weight.detach().clone()
    step(free, opt, x, 1)
    assert not torch.equal(free.prototypes.weight, w0)


def test_queue_fills_after_queue_start_and_joins_sinkhorn_once_full(digits, monkeypatch):
    method = tiny(queue_length=48, queue_start=1, views=identity_views, freeze_prototypes=0)
    x = digits.batch(torch.arange(16))
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3)
    rows, projections = [], []
    real_sinkhorn, real_project = losses.sinkhorn, method.project

    def spy_sinkhorn(scores, *args):
        rows.append(scores.shape[0])
        return real_sinkhorn(scores, *args)

    def spy_project(crops):
        z = real_project(crops)
        projections.append(z.detach().clone())
        return z
    monkeypatch.setattr(losses, "sinkhorn", spy_sinkhorn)
    monkeypatch.setattr(method, "project", spy_project)
    fills, used = [], []
    for k in range(1, 7):
        out = step(method, opt, x, k)
        fills.append(int(method.queue_fill))
        used.append(out["queue"].item())
    # step 1 runs before queue_start=1 step is done: nothing queued; then 16 rows per step up to 48
    assert fills == [0, 16, 32, 48, 48, 48]
    assert used == [0, 0, 0, 0, 1, 1]                        # used only once full (as the official code)
    assert rows == [16] * 8 + [48 + 16] * 4                  # two global crops per step
    # newest first: the last step's projections, then the step before's
    for i in (0, 1):
        torch.testing.assert_close(method.queue[i, :16], projections[-1][i])
        torch.testing.assert_close(method.queue[i, 16:32], projections[-2][i])
    # evaluation passes leave the queue alone
    before = method.queue.clone()
    method.eval()
    method.training_step(x)
    assert torch.equal(method.queue, before)


def test_helpers_for_notebooks(digits):
    method = tiny()
    x = digits.batch(torch.arange(48))
    method.train()
    scores = method.scores(x)
    assert method.training and scores.shape == (48, 12)
    assert scores.abs().max() <= 1 + 1e-5                    # cosines
    balanced, plain = method.codes(x), method.codes(x, sinkhorn=False)
    torch.testing.assert_close(balanced.sum(1), torch.ones(48))
    torch.testing.assert_close(plain.sum(1), torch.ones(48))
    assert balanced.sum(0).std() < plain.sum(0).std()        # Sinkhorn spreads the batch out
    assert torch.equal(method.assign(x), scores.argmax(1))
    assert torch.equal(method.assign(x, sinkhorn=True), balanced.argmax(1))
    assert method.assign(x).dtype == torch.long
    with pytest.raises(ValueError, match="sinkhorn"):
        method.codes(x, sinkhorn="yes")


def test_bad_inputs_and_settings(digits):
    method = tiny()
    with pytest.raises(ValueError, match="rank 4"):
        method.training_step(torch.rand(8, 8))
    with pytest.raises(ValueError, match="floating"):
        method.training_step(digits.x[:4])
    with pytest.raises(ValueError, match="at least 2"):
        method.training_step(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="rank 4"):
        method.assign(torch.rand(8, 8))
    for kw, match in [(dict(n_prototypes=0), "n_prototypes"), (dict(epsilon=0), "epsilon"),
                      (dict(temperature=-1), "temperature"), (dict(queue_length=-1), "queue_length"),
                      (dict(sinkhorn_iterations=0), "sinkhorn_iterations"), (dict(prototypes=3), "not a setting"),
                      (dict(views="weak", n_local=2), "n_local"), (dict(local_scale=(0, 0.1)), "local_scale")]:
        with pytest.raises(ValueError, match=match):
            sslkit.create("swav", **kw)
    with pytest.raises(ValueError, match="image data"):
        sslkit.create("swav", data=sslkit.data.load("corpus"))


def test_multicrop_codes_come_from_the_global_crops_only(monkeypatch):
    method = tiny(n_local=2, local_scale=(0.1, 0.3))
    x = torch.rand(8, 1, 32, 32)
    shapes = []
    real = losses.swav_loss
    monkeypatch.setattr(losses, "swav_loss", lambda s, q, t: shapes.append((s.shape, q.shape)) or real(s, q, t))
    method.training_step(x)
    assert shapes == [((4, 8, 12), (2, 8, 12))]             # 2 global + 2 local crops, codes for 2


from interrupts import RaiseAt  # noqa: E402 (a Ctrl-C after a step)


def test_resume_is_exact_across_the_freeze_and_the_queue(tmp_path, digits):
    data = digits.subset(torch.arange(96))
    kw = dict(batch_size=16, device="cpu", progress=False, monitor_collapse=False, seed=1)
    config = dict(freeze_prototypes=4, queue_length=32, queue_start=2)
    torch.manual_seed(0)
    full = tiny(**config)
    h_full = fit(full, data, steps=8, **kw)
    torch.manual_seed(0)
    part = tiny(**config)
    fit(part, data, steps=8, checkpoint=tmp_path / "c.pt", callbacks=[RaiseAt(3)], **kw)
    torch.manual_seed(0)
    resumed = tiny(**config)
    h = fit(resumed, data, steps=8, resume=tmp_path / "c.pt", **kw)
    assert h.loss == h_full.loss and h.terms["queue"] == h_full.terms["queue"]
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert resumed._steps == 8 and resumed._fill == 32
