"""Joint-embedding methods: SimCLR, MoCo v2, BYOL, SimSiam, Barlow Twins, VICReg, DINO.

Checks the mechanics each paper depends on (no gradient into EMA targets, EMA and queue updates as
specified, a real stop-gradient, DINO's centre EMA), that every method trains (loss falls over a short
run), and that bad settings fail with a ValueError naming the setting.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sslkit
from sslkit import backbones
from sslkit.methods import base

JOINT = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino")
# Small heads so a CPU step takes milliseconds.
SMALL = {
    "simclr": dict(proj_hidden=32, proj_dim=16),
    "moco": dict(proj_hidden=32, proj_dim=16, queue_size=64),
    "byol": dict(proj_hidden=32, proj_dim=16, pred_hidden=32),
    "simsiam": dict(proj_hidden=32, proj_dim=32, pred_hidden=8),
    "barlow_twins": dict(proj_hidden=32, proj_dim=32),
    "vicreg": dict(proj_hidden=32, proj_dim=32),
    "dino": dict(out_dim=64, hidden_dim=32, bottleneck_dim=16, n_local=2),
}
# Targets that must never receive gradients.
TARGETS = {"moco": ("key_backbone", "key_projector"), "byol": ("target_backbone", "target_projector"),
           "dino": ("teacher_backbone", "teacher_head")}


def tiny_backbone(in_channels: int = 1) -> nn.Module:
    return backbones.create("convnet", in_channels=in_channels, widths=(8, 16))


def make(name: str, **config) -> base.Method:
    return sslkit.create(name, backbone=tiny_backbone(), **{**SMALL[name], **config})


def identity_views(x: torch.Tensor, generator=None) -> torch.Tensor:
    return x.clone()


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """128 digit images (B, 1, 8, 8) in [0, 1]; synthetic blobs if the dataset is unavailable."""
    try:
        ds = sslkit.data.load("digits")
        return ds.batch(torch.arange(128))
    except (ModuleNotFoundError, ValueError):
        g = torch.Generator().manual_seed(0)
        return torch.rand(128, 1, 8, 8, generator=g)


# --- gradients ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_no_gradient_reaches_ema_target(name, digits):
    m = make(name)
    m.training_step(digits[:16])["loss"].backward()
    for attr in TARGETS[name]:
        params = list(getattr(m, attr).parameters())
        assert params
        for p in params:
            assert p.requires_grad is False
            assert p.grad is None
    # ...while the online network does learn.
    assert all(p.grad is not None for p in m.backbone.parameters())


def test_simsiam_stop_gradient_is_real(digits):
    x = digits[:16]
    grads = {}
    for stop in (True, False):
        torch.manual_seed(0)
        m = make("simsiam", views=identity_views, stop_gradient=stop)
        m.training_step(x)["loss"].backward()
        grads[stop] = [p.grad.clone() for p in m.projector.parameters()]
    # Reference, written as a loop over samples: the target side is a constant (detached) vector.
    torch.manual_seed(0)
    m = make("simsiam", views=identity_views)
    z = m.projector(m.backbone.forward_features(torch.cat([x, x])))        # (2B, P), same BN batch
    p = m.predictor(z)
    z_const = z.detach()
    b = len(x)
    loss = 0.0
    for i in range(b):
        loss = loss - 0.5 * (F.cosine_similarity(p[i], z_const[b + i], dim=0)
                             + F.cosine_similarity(p[b + i], z_const[i], dim=0)) / b
    loss.backward()
    ref = [p_.grad for p_ in m.projector.parameters()]
    for got, want in zip(grads[True], ref):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # Without the stop-gradient the target branch contributes: the gradients differ.
    assert any(not torch.allclose(a, c, atol=1e-6) for a, c in zip(grads[True], grads[False]))


# --- EMA targets ---------------------------------------------------------------------------------
def _perturb(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p))


@pytest.mark.parametrize("name,pairs", [
    ("byol", [("target_backbone", "backbone"), ("target_projector", "projector")]),
    ("dino", [("teacher_backbone", "backbone"), ("teacher_head", "head")]),
])
def test_ema_follows_cosine_momentum(name, pairs, digits):
    base_m, step, total = 0.9, 4, 10                 # the engine's step: 4 optimiser steps done
    m = make(name, base_momentum=base_m)
    for _, online in pairs:
        _perturb(getattr(m, online))
    before = {t: [p.clone() for p in getattr(m, t).parameters()] for t, _ in pairs}
    m.on_step_end(step, total)
    k = step - 1                                     # the 4th update is update k = 3 (0-based)
    tau = 1 - (1 - base_m) * (math.cos(math.pi * k / total) + 1) / 2
    assert m.tau == pytest.approx(tau)
    for t, online in pairs:
        for old, new, o in zip(before[t], getattr(m, t).parameters(), getattr(m, online).parameters()):
            torch.testing.assert_close(new, tau * old + (1 - tau) * o)


def test_moco_key_encoder_constant_momentum():
    m = make("moco", momentum=0.8)
    _perturb(m.backbone)
    before = [p.clone() for p in m.key_backbone.parameters()]
    m.on_step_end(5, 100)
    for old, new, o in zip(before, m.key_backbone.parameters(), m.backbone.parameters()):
        torch.testing.assert_close(new, 0.8 * old + 0.2 * o)


def test_ema_update_buffers_and_edges():
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = base.frozen_copy(online)
    online(torch.randn(8, 3))                                  # changes BN running stats
    base.ema_update(target, online, 0.0)                       # momentum 0 copies everything
    for a, b in zip(list(target.parameters()) + list(target.buffers()),
                    list(online.parameters()) + list(online.buffers())):
        torch.testing.assert_close(a, b)
    snapshot = [p.clone() for p in target.parameters()]
    _perturb(online)
    base.ema_update(target, online, 1.0)                       # momentum 1 keeps the target
    for a, b in zip(snapshot, target.parameters()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="momentum"):
        base.ema_update(target, online, 1.5)
    with pytest.raises(ValueError, match="same architecture"):
        base.ema_update(target, nn.Linear(3, 4), 0.5)


def test_ema_update_matches_a_loop_reference_over_steps():
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    target = base.frozen_copy(online)
    ref = base.frozen_copy(online)
    for m in (0.9, 0.5, 0.99, 0.0):
        _perturb(online)
        online(torch.randn(8, 3))                               # BN statistics move too
        base.ema_update(target, online, m)
        with torch.no_grad():                                   # one tensor at a time
            for t, o in zip(ref.parameters(), online.parameters()):
                t.copy_(m * t + (1 - m) * o)
            for t, o in zip(ref.buffers(), online.buffers()):
                t.copy_(m * t + (1 - m) * o if t.is_floating_point() else o)
        for a, b in zip(list(target.parameters()) + list(target.buffers()),
                        list(ref.parameters()) + list(ref.buffers())):
            torch.testing.assert_close(a, b)
    assert int(target[1].num_batches_tracked) == 4               # integer buffers are copied


def test_ema_lists_are_cached_and_rebuilt_when_tensors_change(monkeypatch):
    builds = []
    original = base.EMA._build
    monkeypatch.setattr(base.EMA, "_build", lambda self, t, o: (builds.append(1), original(self, t, o))[1])
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    target = base.frozen_copy(online)
    for _ in range(3):
        base.ema_update(target, online, 0.9)
    assert len(builds) == 1                                     # built once, then reused
    # .to(dtype) replaces every buffer: the lists are rebuilt and reach the new tensors
    online.double()
    target.double()
    online(torch.randn(8, 3, dtype=torch.float64))
    base.ema_update(target, online, 0.0)
    assert len(builds) == 2
    torch.testing.assert_close(target[1].running_mean, online[1].running_mean)
    # a replaced submodule: rebuilt too
    target[1] = nn.BatchNorm1d(4).double()
    base.ema_update(target, online, 0.0)
    assert len(builds) == 3
    torch.testing.assert_close(target[1].running_var, online[1].running_var)
    # another online network for the same target: rebuilt, and its architecture checked again
    with pytest.raises(ValueError, match="same architecture"):
        base.ema_update(target, nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5)).double(), 0.5)


def test_cosine_momentum_schedule():
    assert base.cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert base.cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert base.cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert base.cosine_momentum(500, 100, 0.99) == pytest.approx(1.0)   # clamped past the end
    with pytest.raises(ValueError, match="total_steps"):
        base.cosine_momentum(0, 0, 0.99)


# --- MoCo queue ----------------------------------------------------------------------------------
def test_moco_queue_ring_buffer():
    m = make("moco", queue_size=10)
    batches = [F.normalize(torch.randn(4, 16), dim=1) for _ in range(3)]
    for b in batches:
        m.enqueue(b)
    assert int(m.queue_ptr) == 12 % 10                          # the pointer wraps
    torch.testing.assert_close(m.queue[4:8], batches[1])
    torch.testing.assert_close(m.queue[[8, 9, 0, 1]], batches[2])   # the newest keys, wrapped
    m.enqueue(torch.randn(25, 16))                              # more than fits: the newest 10 stay
    assert int(m.queue_ptr) == (2 + 10) % 10


def test_moco_training_step_enqueues_its_keys(digits, monkeypatch):
    m = make("moco", queue_size=40)
    keys = []
    original = m.keys
    monkeypatch.setattr(m, "keys", lambda v: keys.append(original(v)) or keys[-1])
    m.training_step(digits[:16])
    m.training_step(digits[16:32])
    assert int(m.queue_ptr) == 32
    torch.testing.assert_close(m.queue[:16], keys[0])
    torch.testing.assert_close(m.queue[16:32], keys[1])
    m.eval()                                                    # evaluation passes leave the queue
    queue = m.queue.clone()
    m.training_step(digits[:16])
    assert torch.equal(m.queue, queue) and int(m.queue_ptr) == 32


# --- DINO centre ---------------------------------------------------------------------------------
def test_dino_centre_is_ema_of_teacher_outputs(digits):
    m = make("dino", center_momentum=0.7)
    outs = []
    m.teacher_head.register_forward_hook(lambda mod, inp, out: outs.append(out.detach()))
    with torch.no_grad():
        m.center.normal_()
    old = m.center.clone()
    m.training_step(digits[:16])
    torch.testing.assert_close(m.center, old)                   # updated in on_step_end only
    m.on_step_end(1, 10)
    teacher_mean = torch.cat(outs).mean(0, keepdim=True)        # all global crops, all samples
    torch.testing.assert_close(m.center, 0.7 * old + 0.3 * teacher_mean)


def test_dino_teacher_temperature_warmup():
    m = make("dino", warmup_teacher_temp=0.02, teacher_temp=0.06, teacher_temp_warmup=0.5)
    assert m.teacher_temp == pytest.approx(0.02)
    m.on_step_end(1, 8)                                         # 1 of 4 warm-up steps done
    assert m.teacher_temp == pytest.approx(0.03)
    m.on_step_end(2, 8)                                         # 2 of 4
    assert m.teacher_temp == pytest.approx(0.04)
    m.on_step_end(4, 8)                                         # warm-up over
    assert m.teacher_temp == pytest.approx(0.06)
    m.on_step_end(6, 8)
    assert m.teacher_temp == pytest.approx(0.06)


# --- every method trains and embeds ------------------------------------------------------------
@pytest.mark.parametrize("name", JOINT)
def test_loss_decreases_and_embed(name, digits):
    torch.manual_seed(0)
    m = make(name)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    steps, history = 40, []
    for step in range(steps):
        out = m.training_step(digits[torch.randperm(len(digits))[:64]])
        assert set(out) >= {"loss", "std"}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.on_step_end(step + 1, steps)                          # the engine's count: steps done
        # DINO's loss = teacher entropy (moved by centring/sharpening) + KL(teacher || student):
        # the KL is the part the student's optimiser drives down.
        history.append(out["kl" if name == "dino" else "loss"].item())
    assert all(math.isfinite(v) for v in history)
    if name == "moco":   # MoCo's first loss is against the initial queue of random vectors: easy
        history = history[1:]
    first, last = sum(history[:8]) / 8, sum(history[-8:]) / 8
    assert last < first, (name, history)
    feats = m.embed(digits[:10])
    assert feats.shape == (10, m.embed_dim) == (10, 16)
    assert torch.isfinite(feats).all()


@pytest.mark.parametrize("name", JOINT)
def test_default_backbone_from_data(name, digits):
    ds = sslkit.data.load("digits")
    m = sslkit.create(name, data=ds, **SMALL[name])
    assert isinstance(m.backbone, backbones.ConvNet)
    assert m.embed(digits[:4]).shape == (4, m.embed_dim)


# --- views and backbones -----------------------------------------------------------------------
def test_views_auto_by_image_size():
    assert base.resolve_views("auto", 8, "byol") == "weak"
    assert base.resolve_views("auto", 16, "simclr") == "weak"
    assert base.resolve_views("auto", 32, "byol") == "cifar"
    assert base.resolve_views("auto", 32, "simclr") == "cifar"
    assert base.resolve_views("auto", 33, "byol") == "byol"
    assert base.resolve_views("auto", 96, "simclr") == "simclr"
    assert base.resolve_views("auto", 32, "multicrop") == "multicrop"
    assert base.resolve_views("auto", 16, "multicrop") == "weak"
    assert base.resolve_views("simclr", 8) == "simclr"
    x = torch.rand(4, 3, 32, 32)
    v1, v2 = base.two_views(x, "auto")
    assert v1.shape == v2.shape == x.shape and not torch.equal(v1, v2)
    v1, v2 = base.two_views(x, identity_views)
    assert torch.equal(v1, x) and torch.equal(v2, x)


def test_default_backbone_choices():
    assert isinstance(base.default_backbone(None, None), backbones.ConvNet)
    net = base.default_backbone(None, "resnet18_cifar")
    assert net.embed_dim == 512
    mine = tiny_backbone()
    assert base.default_backbone(None, mine) is mine
    with pytest.raises(ValueError, match="forward_features"):
        base.default_backbone(None, nn.Linear(3, 4))
    with pytest.raises(ValueError, match="backbone"):
        base.default_backbone(None, "resnet1000")
    with pytest.raises(ValueError, match="backbone"):
        base.default_backbone(None, 3)
    with pytest.raises(ValueError, match="text"):
        base.default_backbone(None, None, kind="text")


# --- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,key,value", [
    ("simclr", "temperature", 0.0), ("simclr", "proj_dim", 0), ("simclr", "views", "strong"),
    ("moco", "queue_size", 0), ("moco", "momentum", 1.5), ("moco", "temperature", -1.0),
    ("byol", "base_momentum", -0.1), ("byol", "pred_hidden", 2.5),
    ("simsiam", "stop_gradient", "yes"), ("simsiam", "pred_hidden", 0),
    ("barlow_twins", "lambda_", -1.0), ("vicreg", "var_weight", -1.0), ("vicreg", "cov_weight", "1"),
    ("dino", "n_local", -1), ("dino", "teacher_temp", 0.0), ("dino", "center_momentum", 2.0),
    ("dino", "teacher_temp_warmup", 1.5), ("dino", "local_size", 0), ("dino", "views", "strong"),
    ("dino", "head_bn", "yes"), ("dino", "freeze_last_layer", -1), ("dino", "out_dim", 0),
    ("simclr", "temprature", 0.5),                              # a typo: unknown setting
])
def test_bad_config_raises_value_error_naming_it(name, key, value):
    with pytest.raises(ValueError, match=key):
        sslkit.create(name, backbone=tiny_backbone(), **{key: value})


@pytest.mark.parametrize("name", JOINT)
def test_bad_batch_and_backbone(name):
    m = make(name)
    with pytest.raises(ValueError, match="batch"):
        m.training_step(torch.rand(4, 8, 8))                    # no channel axis
    with pytest.raises(ValueError, match="batch"):
        m.training_step(torch.randint(0, 255, (4, 1, 8, 8)))    # uint8-like ints, not floats
    with pytest.raises(ValueError, match="backbone"):
        sslkit.create(name, backbone=nn.Conv2d(1, 4, 3))
    corpus = sslkit.data.load("corpus")
    with pytest.raises(ValueError, match="image"):
        sslkit.create(name, data=corpus)


# --- step numbering: the engine passes the number of steps done (1..total) ------------------------
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_on_step_end_counts_steps_done(name):
    m = make(name, **({} if name == "moco" else {"base_momentum": 0.9}))
    with pytest.raises(ValueError, match="step"):
        m.on_step_end(0, 10)                                    # no step done yet: not a valid call
    m.on_step_end(1, 10)                                        # after the first step
    if name != "moco":
        assert m.tau == pytest.approx(0.9)                      # the first update uses the base value
        m.on_step_end(10, 10)                                   # the last update still moves the target
        assert 0.9 < m.tau < 1.0


# --- DINO: views, frozen last layer, and no collapse -------------------------------------------
def test_dino_views_by_image_size():
    m = make("dino", n_local=None)
    assert [c.shape[-1] for c in m.crops(torch.rand(4, 1, 8, 8))] == [8, 8]     # tiny: 2 weak views
    assert [c.shape[-1] for c in m.crops(torch.rand(4, 3, 32, 32))] == [32, 32, 14, 14, 14, 14]
    assert len(make("dino", n_local=3).crops(torch.rand(4, 1, 8, 8))) == 5       # asked for: local crops
    assert len(make("dino", n_local=0, views="multicrop").crops(torch.rand(4, 3, 32, 32))) == 2
    with pytest.raises(ValueError, match="n_local"):
        make("dino", n_local=2, views="weak")


def test_dino_freeze_last_layer(digits):
    m = make("dino", freeze_last_layer=2)
    for steps_done in range(4):
        m.zero_grad()
        m.steps_done = steps_done
        m.training_step(digits[:16])["loss"].backward()
        frozen = not m.head.weight_v.grad.any()
        assert frozen == (steps_done < 2), steps_done
        assert m.head.mlp[0].weight.grad.any()                  # the rest of the head learns


def test_dino_does_not_collapse():
    """DINO's failure mode is collapse: uniform teacher outputs (entropy -> log K) or one prototype
    for every image (entropy -> 0), with the student's outputs the same for all images (std -> 0).
    The KL term falls in both cases, so the loss alone cannot tell; these statistics can. (The
    paper's head without BatchNorm, head_bn=False, reaches entropy 0.86 log K and std 0.07 / sqrt(K)
    here: uniform collapse. The effective rank below is only a sanity check: it does not separate.)"""
    ds = sslkit.data.load("digits")
    torch.manual_seed(0)
    out_dim = 128
    m = sslkit.create("dino", backbone=tiny_backbone(), out_dim=out_dim, hidden_dim=64, bottleneck_dim=32)
    hist = sslkit.fit(m, ds, steps=40, batch_size=128, progress=False, monitor_collapse=False)
    entropy = sum(hist.terms["teacher_entropy"][-10:]) / 10
    std = sum(hist.terms["std"][-10:]) / 10
    assert 0.1 * math.log(out_dim) < entropy < 0.8 * math.log(out_dim), hist.terms["teacher_entropy"]
    assert std > 0.4 / math.sqrt(out_dim), hist.terms["std"]   # ~1/sqrt(K) when well spread
    feats, _ = sslkit.eval.extract_features(m, ds.subset(torch.arange(512)))
    assert sslkit.eval.effective_rank(feats) > 4                # the teacher's features, not a point


# --- checkpoints of a method built with a named backbone ----------------------------------------
def test_named_backbone_is_recorded_and_reloads(tmp_path):
    ds = sslkit.data.load("digits")
    m = sslkit.create("simclr", data=ds, backbone="convnet", proj_hidden=32, proj_dim=16)
    assert m.backbone_name == "convnet"
    assert make("simclr").backbone_name is None                 # a module passed in: no name
    sslkit.fit(m, ds, steps=2, batch_size=64, checkpoint=tmp_path / "c.pt", progress=False,
               monitor_collapse=False)
    loaded = sslkit.train.load_method(tmp_path / "c.pt", data=ds)
    assert loaded.backbone_name == "convnet"
    x = ds.batch(torch.arange(16))
    m.eval()
    torch.testing.assert_close(loaded.embed(x.to(next(loaded.parameters()).device)).cpu(),
                               m.embed(x.to(next(m.parameters()).device)).cpu())


def test_ema_update_rejects_mismatched_shapes():
    from torch import nn
    from sslkit.methods.base import ema_update
    with pytest.raises(ValueError, match=r"shape \(3, 4\) in target vs \(3, 5\) in online"):
        ema_update(nn.Linear(4, 3), nn.Linear(5, 3), 0.9)


from interrupts import RaiseAt  # noqa: E402 (a Ctrl-C after a step)


def test_dino_resume_is_exact_across_the_freeze_and_the_temperature_warmup(tmp_path):
    # The step count (last-layer freeze) and the teacher temperature (warm-up) are training state:
    # a run interrupted at step 3 and resumed must end exactly where the uninterrupted run does.
    data = sslkit.data.load("digits").subset(torch.arange(96))
    kw = dict(batch_size=16, device="cpu", progress=False, monitor_collapse=False, seed=1)
    config = dict(freeze_last_layer=4, warmup_teacher_temp=0.02, teacher_temp=0.06, teacher_temp_warmup=0.75)
    torch.manual_seed(0)
    full = make("dino", **config)
    h_full = sslkit.fit(full, data, steps=8, **kw)
    torch.manual_seed(0)
    part = make("dino", **config)
    sslkit.fit(part, data, steps=8, checkpoint=tmp_path / "c.pt", callbacks=[RaiseAt(3)], **kw)  # saves, stops
    torch.manual_seed(0)
    resumed = make("dino", **config)
    h = sslkit.fit(resumed, data, steps=8, resume=tmp_path / "c.pt", **kw)
    assert h.loss == h_full.loss
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert resumed.steps_done == 8 and resumed.teacher_temp == pytest.approx(0.06)
