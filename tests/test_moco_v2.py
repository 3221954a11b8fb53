"""MoCo v2 as published: shuffle/split BatchNorm in the key encoder (never SyncBatchNorm), an MLP head
without BatchNorm, and the symmetric loss option (issue 10 item 4)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslkit
from sslkit import backbones, losses
from sslkit.methods import base
from sslkit.methods.moco import SplitBatchNorm, split_batchnorm


def make(**config) -> nn.Module:
    torch.manual_seed(0)
    net = backbones.create("convnet", in_channels=1, widths=(8, 16))
    return sslkit.create("moco", backbone=net, **{"proj_hidden": 32, "proj_dim": 16, "queue_size": 64, **config})


def digits(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0))


# --- SplitBatchNorm against a loop over groups ----------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 4, 3, 3), (12, 5)])
def test_split_batchnorm_normalises_each_group_with_its_own_statistics(shape):
    splits = 4
    bn = nn.BatchNorm2d(shape[1]) if len(shape) == 4 else nn.BatchNorm1d(shape[1])
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    bn = bn.double()
    split = SplitBatchNorm(bn, splits).double()
    y = split(x)
    # Reference: group s = samples s, s + S, s + 2S, ...; each normalised by its own mean and
    # biased variance; running stats move towards the mean over groups of (mean, unbiased var).
    want = torch.empty_like(x)
    new_mean, new_var = [], []
    dims = [0] + list(range(2, x.ndim))
    for s in range(splits):
        g = x[s::splits]
        mu = g.mean(dims, keepdim=True)
        var = g.var(dims, unbiased=False, keepdim=True)
        shp = (1, -1) + (1,) * (x.ndim - 2)
        want[s::splits] = (g - mu) / torch.sqrt(var + bn.eps) * bn.weight.view(shp) + bn.bias.view(shp)
        new_mean.append(mu.flatten())
        new_var.append(g.var(dims, unbiased=True))
    torch.testing.assert_close(y, want)
    m = bn.momentum
    torch.testing.assert_close(split.running_mean, (1 - m) * bn.running_mean + m * torch.stack(new_mean).mean(0))
    torch.testing.assert_close(split.running_var, (1 - m) * bn.running_var + m * torch.stack(new_var).mean(0))
    assert int(split.num_batches_tracked) == 1
    # Not plain BatchNorm: the whole-batch statistics give a different output.
    assert not torch.allclose(y, F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.1, bn.eps))
    split.eval()                                     # eval: the running statistics, as BatchNorm
    bn.eval()
    bn.load_state_dict(split.state_dict())
    torch.testing.assert_close(split(x), bn(x))


def test_split_batchnorm_rejects_batches_that_do_not_split():
    split = SplitBatchNorm(nn.BatchNorm1d(3), 4)
    with pytest.raises(ValueError, match="key_bn_splits=4"):
        split(torch.randn(6, 3))
    with pytest.raises(ValueError, match="key_bn_splits=4"):
        split(torch.randn(4, 3))                     # groups of one sample have no variance


def test_key_encoder_uses_split_batchnorm_and_same_state_as_online():
    m = make(key_bn_splits=4)
    kinds = [type(x) for x in m.key_backbone.modules() if isinstance(x, nn.modules.batchnorm._BatchNorm)]
    assert kinds and all(k is SplitBatchNorm for k in kinds)
    assert not any(isinstance(x, SplitBatchNorm) for x in m.backbone.modules())   # the query side is plain
    assert m.key_backbone.state_dict().keys() == m.backbone.state_dict().keys()
    with pytest.raises(ValueError, match="key_bn_splits"):
        make(key_bn_splits=0)


# --- the keys: shuffled, split, unshuffled ------------------------------------------------------------
def test_keys_come_back_in_batch_order():
    """With one BN group the shuffle must not change anything: keys == the key encoder on v in order."""
    m = make(key_bn_splits=1)
    v = digits(16)
    want = F.normalize(m.key_projector(m.key_backbone.forward_features(v)), dim=1)
    torch.testing.assert_close(m.keys(v), want)


def test_keys_see_per_group_statistics_of_a_shuffled_batch():
    """With S groups, each key equals the encoder applied to its group (a loop reference over the
    groups of the shuffled batch, with plain BatchNorm in training mode)."""
    m = make(key_bn_splits=4)
    v = digits(16)
    torch.manual_seed(5)
    got = m.keys(v)
    torch.manual_seed(5)
    perm = torch.randperm(16)                         # the order keys() drew
    ref_backbone = base.frozen_copy(m.backbone)       # plain BN, same weights (the EMA copy at init)
    ref_backbone.load_state_dict(m.key_backbone.state_dict())
    shuffled = v[perm]
    want = torch.empty(16, got.shape[1])
    for s in range(4):
        rows = torch.arange(s, 16, 4)                 # group s of the shuffled batch
        k = F.normalize(m.key_projector(ref_backbone.forward_features(shuffled[rows])), dim=1)
        want[perm[rows]] = k                          # back to the original order
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# --- never SyncBatchNorm ---------------------------------------------------------------------------------
def test_sync_batchnorm_leaves_the_key_encoder_alone():
    m = make()
    params = {id(p) for p in m.parameters()}
    out = base.sync_batchnorm(m)
    assert out is m
    assert any(isinstance(x, nn.SyncBatchNorm) for x in m.backbone.modules())
    for name in m.local_batchnorm:
        mods = list(m.get_submodule(name).modules())
        assert not any(isinstance(x, nn.SyncBatchNorm) for x in mods), name
    assert any(isinstance(x, SplitBatchNorm) for x in m.key_backbone.modules())
    assert {id(p) for p in m.parameters()} == params                  # the same parameter tensors
    # the EMA pairs still line up (the conversion replaced the BN modules: the cached lists refresh)
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.key_backbone.parameters()]
    m.on_step_end(1, 10)
    for old, new, o in zip(before, m.key_backbone.parameters(), m.backbone.parameters()):
        torch.testing.assert_close(new, 0.99 * old + 0.01 * o)


def test_sync_batchnorm_on_other_methods_and_bad_names():
    simclr = sslkit.create("simclr", backbone=backbones.create("convnet", in_channels=1, widths=(8, 16)))
    base.sync_batchnorm(simclr)
    assert not any(type(x) in (nn.BatchNorm1d, nn.BatchNorm2d) for x in simclr.modules())
    m = make()
    m.local_batchnorm = ("key_encoder",)                                # a typo
    with pytest.raises(ValueError, match="key_encoder"):
        base.sync_batchnorm(m)


# --- the v2 head and the symmetric loss -------------------------------------------------------------------
def test_v2_head_has_no_batchnorm():
    m = make()
    for head in (m.projector, m.key_projector):
        assert not any(isinstance(x, nn.modules.batchnorm._BatchNorm) for x in head.modules())
        assert [type(x) for x in head] == [nn.Linear, nn.ReLU, nn.Linear]   # fc - ReLU - fc


def test_symmetric_loss_is_the_mean_of_both_directions():
    x = digits(16)
    flipped = x.flip(-1)
    calls = []

    def views(batch, generator=None):                 # view 1 = x, view 2 = mirrored x
        calls.append(len(calls))
        return x.clone() if len(calls) % 2 == 1 else flipped.clone()

    m = make(symmetric=True, views=views, key_bn_splits=1)
    negatives = m.queue.clone()
    l12, _, k2 = m.contrast(x, flipped, negatives)
    l21, _, k1 = m.contrast(flipped, x, negatives)
    out = m.training_step(x)
    torch.testing.assert_close(out["loss"], 0.5 * (l12 + l21), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(l12, l21)               # the two directions really differ
    # both directions' keys are enqueued: 2B new entries
    assert int(m.queue_ptr) == 32
    torch.testing.assert_close(m.queue[:32], torch.cat([k2, k1]), rtol=1e-4, atol=1e-5)
    # asymmetric (default): one direction only
    m = make(views=views, key_bn_splits=1)
    calls.clear()
    negatives = m.queue.clone()
    want, _, _ = m.contrast(x, flipped, negatives)
    calls.clear()
    torch.testing.assert_close(m.training_step(x)["loss"], want, rtol=1e-5, atol=1e-6)
    assert int(m.queue_ptr) == 16
    with pytest.raises(ValueError, match="symmetric"):
        make(symmetric="yes")


def test_contrast_is_info_nce_against_the_queue():
    m = make(key_bn_splits=1)
    x = digits(16)
    negatives = m.queue.clone()
    loss, q, k = m.contrast(x, x.flip(-1), negatives)
    assert q.requires_grad and not k.requires_grad
    torch.testing.assert_close(loss, losses.info_nce(q, k, negatives, temperature=m.config.temperature))


# --- shuffle-BN across processes (the official DDP version), 2 gloo processes ------------------------------
def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    import os

    import torch.distributed as tdist

    from sslkit import distributed
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        m = make(key_bn_splits=4)                    # same weights on both ranks (same seed)
        torch.manual_seed(5 + rank)                  # different streams: rank 0's order must win
        keys = m.keys(distributed.shard(digits(16)))
        torch.save({"keys": keys, "splits": [x.num_splits for x in m.key_backbone.modules()
                                             if isinstance(x, SplitBatchNorm)]},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        tdist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_shuffle_bn_across_processes(tmp_path):
    """Under DDP the global batch is shuffled with rank 0's order, each process encodes its slice of
    the shuffled batch in key_bn_splits / world groups, and gets its own samples' keys back."""
    import torch.multiprocessing as mp
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    m = make(key_bn_splits=4)
    torch.manual_seed(5)
    perm = torch.randperm(16)                        # rank 0's draw
    ref = base.frozen_copy(m.backbone)               # plain BatchNorm with the key encoder's weights
    ref.load_state_dict(m.key_backbone.state_dict())
    v, want = digits(16), torch.empty(16, 16)
    for r in range(2):
        mine = perm.view(2, -1)[r]                   # rank r's slice of the shuffled global batch
        for s in range(2):                           # 4 groups over 2 processes: 2 per process
            rows = mine[s::2]
            want[rows] = F.normalize(m.key_projector(ref.forward_features(v[rows])), dim=1)
    for r in range(2):
        assert set(got[r]["splits"]) == {2}
        torch.testing.assert_close(got[r]["keys"], want[8 * r:8 * (r + 1)], rtol=1e-4, atol=1e-5)
