"""Methods on speech: wav2vec (masked contrastive prediction on raw waves), the two-view methods on
log-mel spectrograms (SpecAugment views picked by ``create``), CPC on spoken-digit waves."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import sslkit
from sslkit import backbones, losses
from sslkit.data import Dataset
from sslkit.pretext import audio as P
from sslkit.train import fit, load_method

# A wave_transformer small enough for milliseconds per step: 2,048-sample waves -> 24 frames.
TINY = dict(conv_width=16, embed_dim=32, depth=1, num_heads=2, pos_kernel=5, pos_groups=4)
TINY_CFG = dict(mask_span=3, num_distractors=5, proj_dim=16)


@pytest.fixture(scope="module")
def speech() -> Dataset:
    """64 spoken digits cut to their middle 2,048 samples (0.256 s), as a signal Dataset."""
    ds = sslkit.data.load("spoken_digits").subset(torch.arange(64))
    return Dataset(name="speech", split="train", kind="signal", x=ds.x[..., 1024:3072].contiguous(),
                   labels=ds.labels, classes=ds.classes)


def tiny_wav2vec(**config):
    torch.manual_seed(0)
    return sslkit.create("wav2vec", backbone=backbones.create("wave_transformer", **TINY),
                         **{**TINY_CFG, **config})


# -- the loss ---------------------------------------------------------------------------------------
def reference_loss(pred, targets, mask, distractors, temperature):
    """Loop over clips and masked frames: -log softmax of the true target among its distractors."""
    total, n = 0.0, 0
    for b in range(pred.shape[0]):
        for t in range(pred.shape[1]):
            if not mask[b, t]:
                continue
            cos = lambda u, v: float(u @ v) / (float(u.norm()) * float(v.norm()))
            logits = [cos(pred[b, t], targets[b, t]) / temperature]
            for j in distractors[b, t].tolist():
                if not torch.equal(targets[b, j], targets[b, t]):    # identical: not a negative
                    logits.append(cos(pred[b, t], targets[b, j]) / temperature)
            total += -logits[0] + math.log(sum(math.exp(v) for v in logits))
            n += 1
    return total / n


def test_masked_contrastive_matches_loop_reference():
    g = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 12, 8, generator=g, dtype=torch.float64)
    targets = torch.randn(3, 12, 8, generator=g, dtype=torch.float64)
    targets[1, 2:5] = targets[1, 6]                                     # identical frames (silence)
    mask = P.mask_spans(3, 12, mask_prob=0.2, span=3, generator=g)
    mask[1, 2:7] = True
    d = P.sample_distractors(mask, 6, generator=g)
    got = losses.masked_contrastive(pred, targets, mask, d, temperature=0.1)
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(reference_loss(pred, targets, mask, d, 0.1), rel=1e-9)
    # the true target scores best when pred points at it: the loss falls towards 0
    sharp = losses.masked_contrastive(targets * 5, targets, mask, d, temperature=0.01)
    assert float(sharp) < 1e-3
    terms = losses.masked_contrastive_terms(targets, targets, mask, d)
    assert float(terms["accuracy"]) == 1.0


def test_masked_contrastive_edges_and_errors():
    pred = torch.randn(2, 5, 4, requires_grad=True)
    targets = torch.randn(2, 5, 4)
    none = torch.zeros(2, 5, dtype=torch.bool)
    d = torch.zeros(2, 5, 3, dtype=torch.long)
    loss = losses.masked_contrastive(pred, targets, none, d)
    assert loss.item() == 0.0
    loss.backward()                                                     # still a graph: no crash
    # a clip whose only masked frame has no other: only the positive is left, loss 0
    one = none.clone()
    one[0, 2] = True
    assert losses.masked_contrastive(pred, targets, one, P.sample_distractors(one, 3)).item() == 0.0
    with pytest.raises(ValueError, match="mask has shape"):
        losses.masked_contrastive(pred, targets, none[:, :4], d)
    with pytest.raises(ValueError, match="distractors has shape"):
        losses.masked_contrastive(pred, targets, none, d[:1])
    with pytest.raises(ValueError, match="same shape"):
        losses.masked_contrastive(pred, targets[:, :4], none, d)
    with pytest.raises(ValueError, match="temperature"):
        losses.masked_contrastive(pred, targets, one, d, temperature=0.0)


# -- wav2vec ----------------------------------------------------------------------------------------
def test_wav2vec_loss_falls_and_embeds(speech):
    m = tiny_wav2vec()
    assert m.backbone.num_frames(2048) == 24 and speech.kind in m.kinds
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    batch = speech.batch(torch.arange(32))
    history = []
    for _ in range(60):
        out = m.training_step(batch)
        assert {"loss", "accuracy", "masked", "target_std"} <= set(out)
        assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append(out["loss"].item())
    # Guessing among the true latent and 5 distractors scores ln 6 = 1.79; the untrained model is
    # worse (confident at temperature 0.1). Learning means clearly below chance, not just calibrated.
    last = sum(history[-10:]) / 10
    assert last < math.log(6) - 0.1 and last < sum(history[:5]) / 5, history
    feats = m.embed(batch[:10])
    assert feats.shape == (10, m.embed_dim) == (10, 32) and torch.isfinite(feats).all()


def test_wav2vec_gradients_reach_encoder_context_and_both_projections(speech):
    m = tiny_wav2vec()
    m.training_step(speech.batch(torch.arange(8)))["loss"].backward()
    for name in ("backbone.feature_encoder.0.weight", "backbone.mask_embedding", "backbone.blocks.0.attn.qkv.weight",
                 "pred_proj.weight", "target_proj.weight"):
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_masked_frames_do_not_see_their_own_latents():
    """The context at a masked frame is the same whatever that frame's latent was."""
    net = backbones.create("wave_transformer", **TINY).eval()
    z = torch.randn(2, 11, 16)
    mask = torch.zeros(2, 11, dtype=torch.bool)
    mask[:, 4:7] = True
    other = z.clone()
    other[:, 4:7] = torch.randn(2, 3, 16)
    torch.testing.assert_close(net.context(z, mask), net.context(other, mask))
    assert not torch.allclose(net.context(z), net.context(other))


def test_wav2vec_default_backbone_and_data(speech):
    ds = sslkit.data.load("spoken_digits")
    m = sslkit.create("wav2vec", data=ds)
    assert isinstance(m.backbone, backbones.WaveTransformer) and m.backbone_name == "wave_transformer"
    assert m.backbone.num_frames(4096) == 50 and m.embed_dim == 128
    with pytest.raises(ValueError, match="spectrogram"):
        sslkit.create("wav2vec", data=sslkit.data.load("spoken_digits", representation="log_mel"))


def test_wav2vec_bad_input():
    m = tiny_wav2vec()
    with pytest.raises(ValueError, match="rank 3"):
        m.training_step(torch.randn(4, 1024))
    with pytest.raises(ValueError, match="floating"):
        m.training_step(torch.zeros(4, 1, 1024, dtype=torch.long))
    with pytest.raises(ValueError, match="channels"):
        m.training_step(torch.randn(4, 2, 1024))
    with pytest.raises(ValueError, match="T >= 160"):
        m.training_step(torch.randn(4, 1, 100))
    with pytest.raises(ValueError, match="too short for mask_span=3"):
        m.training_step(torch.randn(4, 1, 200))                          # 1 latent frame
    for key, value in (("mask_prob", 1.5), ("mask_span", 0), ("num_distractors", 0), ("temperature", 0.0),
                       ("min_spans", 0), ("proj_dim", 2.5), ("quantizer", True)):
        with pytest.raises(ValueError, match=key):
            sslkit.create("wav2vec", backbone=backbones.create("wave_transformer", **TINY), **{key: value})
    with pytest.raises(ValueError, match="latents"):
        sslkit.create("wav2vec", backbone=backbones.create("conv1d"))
    with pytest.raises(ValueError, match="signal"):
        sslkit.create("wav2vec", data=sslkit.data.load("digits"))
    with pytest.raises(ValueError, match="embed_dim=30 must be divisible by num_heads=4"):
        backbones.create("wave_transformer", embed_dim=30)
    with pytest.raises(ValueError, match="pos_kernel"):
        backbones.create("wave_transformer", pos_kernel=4)


from interrupts import RaiseAt  # noqa: E402 (a Ctrl-C after a step)


def test_wav2vec_resume_is_exact(speech, tmp_path):
    kw = dict(steps=6, batch_size=16, device="cpu", progress=False, monitor_collapse=False, seed=2)
    full = tiny_wav2vec()
    h_full = fit(full, speech, **kw)
    part = tiny_wav2vec()
    h1 = fit(part, speech, checkpoint=tmp_path / "w.pt", callbacks=[RaiseAt(3)], **kw)
    assert h1.interrupted and len(h1) == 3
    torch.manual_seed(99)
    resumed = tiny_wav2vec()
    h2 = fit(resumed, speech, resume=tmp_path / "w.pt", **kw)
    assert h2.loss == h_full.loss
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_wav2vec_checkpoint_reloads_with_named_backbone(tmp_path):
    ds = sslkit.data.load("spoken_digits").subset(torch.arange(32))
    torch.manual_seed(0)
    m = sslkit.create("wav2vec", data=ds, num_distractors=4, proj_dim=8)
    fit(m, ds, steps=1, batch_size=8, device="cpu", progress=False, monitor_collapse=False,
        checkpoint=tmp_path / "w.pt")
    loaded = load_method(tmp_path / "w.pt", data=ds)
    m.eval()
    x = ds.batch(torch.arange(4))
    torch.testing.assert_close(loaded.embed(x), m.embed(x), rtol=0, atol=0)


# -- image-style methods on log-mel spectrograms ------------------------------------------------------
@pytest.fixture(scope="module")
def log_mel() -> Dataset:
    return sslkit.data.load("spoken_digits", representation="log_mel").subset(torch.arange(128))


@pytest.mark.parametrize("name", ["simclr", "byol", "moco", "simsiam", "barlow_twins", "vicreg"])
def test_two_view_methods_pick_spectrogram_views(name, log_mel):
    small = {"moco": dict(queue_size=64)}.get(name, {})
    m = sslkit.create(name, data=log_mel, backbone=backbones.create("convnet", in_channels=1, widths=(8, 16)),
                      **small)
    assert m.config.views == "spectrogram" and "spectrogram" in m.kinds
    out = m.training_step(log_mel.batch(torch.arange(16)))
    assert torch.isfinite(out["loss"])
    assert sslkit.create(name, data=log_mel, views="simclr", **small).config.views == "simclr"   # asked for


def test_spectrogram_backbone_keeps_frequency():
    net = backbones.create("spec_convnet", widths=(4, 8, 8), freq_bands=5).eval()
    assert net.embed_dim == 40
    x = torch.full((2, 1, 40, 52), -60.0)
    x[0, 0, 2:6] = 20.0                                                  # a low band sounds
    x[1, 0, 30:34] = 20.0                                                # a high band sounds
    f = net(x).view(2, 8, 5)                                             # (B, channels, bands)
    # the low sound moves the lowest band's features more than the highest band's, and vice versa
    base = net(torch.full((1, 1, 40, 52), -60.0)).view(8, 5)
    moved = (f - base).abs().sum(dim=1)                                  # (B, bands)
    assert moved[0, 0] > moved[0, 4] and moved[1, 4] > moved[1, 0]
    assert net(torch.randn(2, 1, 23, 17)).shape == (2, 40)              # any F, T


def test_simclr_on_spectrograms_uses_audio_views(log_mel, monkeypatch):
    calls = []
    real = P.SpectrogramViews.__call__

    def spy(self, x, generator=None):
        calls.append(tuple(x.shape))
        return real(self, x, generator)

    monkeypatch.setattr(P.SpectrogramViews, "__call__", spy)
    m = sslkit.create("simclr", data=log_mel)
    assert isinstance(m.backbone, backbones.SpectrogramConvNet) and m.backbone.in_channels == 1
    m.training_step(log_mel.batch(torch.arange(8)))
    assert calls == [(8, 1, 40, 52)] * 2                 # one spectrogram view each, no image recipe


def test_simclr_trains_on_spectrograms(log_mel):
    torch.manual_seed(0)
    m = sslkit.create("simclr", data=log_mel, backbone=backbones.create("convnet", in_channels=1, widths=(8, 16)),
                      proj_hidden=32, proj_dim=16)
    h = fit(m, log_mel, steps=12, batch_size=32, device="cpu", progress=False, monitor_collapse=False, lr=3e-3)
    assert sum(h.loss[-3:]) < sum(h.loss[:3]), h.loss


def test_a_spectrogram_run_reloads_with_its_views(log_mel, tmp_path):
    m = sslkit.create("simclr", data=log_mel, backbone="spec_convnet", proj_hidden=32, proj_dim=16)
    fit(m, log_mel, steps=1, batch_size=8, device="cpu", progress=False, monitor_collapse=False,
        checkpoint=tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True)["config"]["method_config"]["views"] == "spectrogram"
    loaded = load_method(tmp_path / "s.pt", data=log_mel)
    assert loaded.config.views == "spectrogram"
    x = log_mel.batch(torch.arange(4))
    m.eval()
    torch.testing.assert_close(loaded.embed(x), m.embed(x))


def test_methods_for_images_refuse_spectrograms(log_mel):
    for name in ("rotation", "dino"):
        with pytest.raises(ValueError, match="trains on image data, but data='spoken_digits' holds spectrogram"):
            sslkit.create(name, data=log_mel)


# -- CPC on spoken-digit waves -------------------------------------------------------------------------
def test_cpc_runs_on_spoken_digit_waves():
    ds = sslkit.data.load("spoken_digits").subset(torch.arange(16))
    # 80-sample steps (10 ms, as the paper's 160 samples at 16 kHz): 51 steps per clip
    enc = backbones.create("conv1d", widths=(16, 32, 32), strides=(5, 4, 4))
    m = sslkit.create("cpc", data=ds, backbone=enc, context_dim=32)
    out = m.training_step(ds.batch(torch.arange(8)))
    assert torch.isfinite(out["loss"]) and out["loss"] > 0
    assert m.embed(ds.batch(torch.arange(4))).shape == (4, 32)
    assert F.mse_loss(m.embed(ds.batch(torch.arange(4))), m.embed(ds.batch(torch.arange(4)))) == 0
