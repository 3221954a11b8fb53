"""The seven non-joint-embedding methods: a training step, learning on small data, embed, bad inputs.

Models are shrunk (narrow backbones, 1-block transformers) so each test takes seconds on a CPU.
"""

import pytest
import torch

import sslkit
from sslkit import backbones, data


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


@pytest.fixture(scope="module")
def corpus():
    return data.load("corpus")


@pytest.fixture(scope="module")
def waves():
    return data.load("waves")


@pytest.fixture(scope="module")
def clips():
    return data.load("moving_digits")


def small_convnet(ch=1):
    return backbones.create("convnet", in_channels=ch, widths=(8, 16, 32))


def build(name, ds):
    """(method, batch) at test size for method ``name``."""
    if name == "mae":
        vit = backbones.create("vit_tiny", image_size=8, in_channels=1, embed_dim=32, depth=1, num_heads=2)
        return sslkit.create("mae", data=ds, backbone=vit, decoder_dim=32, decoder_depth=1), \
            ds.batch(torch.arange(16))
    if name in ("autoencoder", "rotation", "jigsaw"):
        extra = {"decoder_width": 16} if name == "autoencoder" else {}
        extra.update({"head_hidden": 32} if name in ("rotation", "jigsaw") else {})
        return sslkit.create(name, data=ds, backbone=small_convnet(), **extra), ds.batch(torch.arange(32))
    if name == "mlm":
        txt = backbones.create("transformer", vocab_size=ds.vocab_size, max_len=ds.sample_shape[0],
                               embed_dim=32, depth=1, num_heads=2)
        return sslkit.create("mlm", data=ds, backbone=txt), ds.batch(torch.arange(8))[:, :32]
    if name == "cpc":
        enc = backbones.create("conv1d", in_channels=1, widths=(8, 16, 32))
        return sslkit.create("cpc", data=ds, backbone=enc, context_dim=32, num_queries=64), \
            ds.batch(torch.arange(16))[..., :64]
    if name == "next_frame":
        enc = backbones.create("frames", in_channels=1, widths=(4, 8, 16))
        return sslkit.create("next_frame", data=ds, backbone=enc, hidden_dim=32, decoder_width=8), \
            ds.batch(torch.arange(4))[:, :4]
    raise AssertionError(name)


CASES = [("mae", "digits"), ("autoencoder", "digits"), ("rotation", "digits"), ("jigsaw", "digits"),
         ("mlm", "corpus"), ("cpc", "waves"), ("next_frame", "clips")]
STEPS = 30


def test_registered():
    for name, _ in CASES:
        assert name in sslkit.method_names()


@pytest.mark.parametrize("name,ds_name", CASES)
def test_step_learns_and_embeds(name, ds_name, request):
    ds = request.getfixturevalue(ds_name)
    method, batch = build(name, ds)
    assert ds.kind in method.kinds
    opt = torch.optim.AdamW(method.parameters(), lr=method.default_lr * 3)
    history = []
    for _ in range(STEPS):
        out = method.training_step(batch)
        assert set(out) >= {"loss"} and len(out) >= 2, out.keys()   # the loss and logged terms
        assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values())
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        history.append(out["loss"].item())
    first, last = sum(history[:5]) / 5, sum(history[-5:]) / 5
    assert last < 0.9 * first, (name, history)
    feats = method.embed(batch)
    assert feats.shape == (batch.shape[0], method.embed_dim)
    assert torch.isfinite(feats).all() and not feats.requires_grad


def test_mae_reconstruct_and_masking(digits):
    method, batch = build("mae", digits)
    masked, rec, mask = method.reconstruct(batch[:3], mask_ratio=0.5)
    assert masked.shape == rec.shape == (3, 1, 8, 8) and mask.shape == (3, 1, 8, 8)
    assert mask.float().mean().item() == pytest.approx(0.5)       # exactly half the patches
    assert (masked[mask] == 0).all() and torch.equal(masked[~mask], batch[:3][~mask])
    assert rec.min() >= 0 and rec.max() <= 1
    # the encoder never sees removed patches: changing them leaves the loss's latent unchanged
    g = torch.Generator().manual_seed(3)
    _, _, m = method.reconstruct(batch[:2], generator=g)
    changed = batch[:2].masked_fill(m, 1.0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(method._forward(batch[:2], 0.75, g1)[0], method._forward(changed, 0.75, g2)[0])


def test_mae_norm_pix(digits):
    vit = backbones.create("vit_tiny", image_size=8, in_channels=1, embed_dim=32, depth=1, num_heads=2)
    method = sslkit.create("mae", data=digits, backbone=vit, decoder_dim=32, decoder_depth=1, norm_pix=True)
    out = method.training_step(digits.batch(torch.arange(8)))
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("corruption", ["gaussian", "salt_pepper", "inpaint", "none"])
def test_autoencoder_corruptions(digits, corruption):
    method = sslkit.create("autoencoder", data=digits, backbone=small_convnet(), corruption=corruption,
                           decoder_width=8)
    x = digits.batch(torch.arange(8))
    corrupted, rec = method.reconstruct(x)
    assert corrupted.shape == rec.shape == x.shape
    assert (rec >= 0).all() and (rec <= 1).all()
    assert torch.equal(corrupted, x) == (corruption == "none")
    out = method.training_step(x)
    assert ("hole_mse" in out) == (corruption == "inpaint")


def test_rotation_all_and_random(digits):
    x = digits.batch(torch.arange(8))
    for all_rot in (True, False):
        m = sslkit.create("rotation", data=digits, backbone=small_convnet(), all_rotations=all_rot, head_hidden=0)
        assert torch.isfinite(m.training_step(x)["loss"])


def test_jigsaw_grid_defaults(digits):
    m = sslkit.create("jigsaw", data=digits, backbone=small_convnet())
    assert m.grid == 2 and m.permutations.shape == (24, 4)
    m = sslkit.create("jigsaw", backbone=small_convnet(3), image_size=32, num_permutations=10)
    assert m.grid == 3 and m.permutations.shape == (10, 9) and m.tile_size == 9
    assert torch.isfinite(m.training_step(torch.rand(4, 3, 32, 32))["loss"])


def test_mlm_predict_masked(corpus):
    method, _ = build("mlm", corpus)
    guesses = method.predict_masked("the [MASK] of a [MASK] .", top_k=3)
    assert len(guesses) == 2 and all(len(g) == 3 for g in guesses)
    specials = set(corpus.tokenizer.SPECIALS)
    for g in guesses:
        probs = [p for _, p in g]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert not specials & {t for t, _ in g}
    with pytest.raises(ValueError, match="no \\[MASK\\]"):
        method.predict_masked("nothing hidden")


def test_next_frame_predict(clips):
    method, batch = build("next_frame", clips)
    nxt = method.predict_next(batch[:1])
    assert nxt.shape == (1, 1, 32, 32) and (nxt >= 0).all() and (nxt <= 1).all()


def test_default_backbones(digits, corpus, waves):
    assert type(sslkit.create("mae", data=digits).backbone).__name__ == "ViT"
    assert type(sslkit.create("autoencoder", data=digits).backbone).__name__ == "ConvNet"
    assert type(sslkit.create("cpc", data=waves).backbone).__name__ == "Conv1dEncoder"
    assert type(sslkit.create("next_frame").backbone).__name__ == "FrameEncoder"


def test_bad_inputs(digits, corpus, waves):
    ae, _ = build("autoencoder", digits)
    with pytest.raises(ValueError, match="rank 4"):
        ae.training_step(torch.rand(8, 8))
    with pytest.raises(ValueError, match="floating"):
        ae.training_step(digits.x[:4])                                     # uint8, not Dataset.batch
    with pytest.raises(ValueError, match="built for"):
        ae.training_step(torch.rand(4, 1, 16, 16))
    mae, _ = build("mae", digits)
    with pytest.raises(ValueError, match="built for"):
        mae.training_step(torch.rand(4, 3, 8, 8))
    rot, _ = build("rotation", digits)
    with pytest.raises(ValueError, match="square"):
        rot.training_step(torch.rand(4, 1, 8, 12))
    with pytest.raises(ValueError, match="at least 2"):
        rot.training_step(torch.rand(1, 1, 8, 8))
    mlm, _ = build("mlm", corpus)
    with pytest.raises(ValueError, match="integer"):
        mlm.training_step(torch.rand(4, 64))
    cpc, _ = build("cpc", waves)
    with pytest.raises(ValueError, match="more steps"):
        cpc.training_step(torch.randn(4, 1, 12))
    with pytest.raises(ValueError, match="channels"):
        cpc.training_step(torch.randn(4, 2, 128))
    nf = sslkit.create("next_frame", backbone=backbones.create("frames", widths=(4, 8, 8)), hidden_dim=8,
                       decoder_width=4)
    with pytest.raises(ValueError, match="T >= 2"):
        nf.training_step(torch.rand(2, 1, 1, 32, 32))
    with pytest.raises(ValueError, match="rank 5"):
        nf.training_step(torch.rand(2, 1, 32, 32))


def test_bad_configs(digits, corpus, waves):
    with pytest.raises(ValueError, match="mask_ratio"):
        sslkit.create("mae", data=digits, mask_ratio=1.0)
    with pytest.raises(ValueError, match="corruption"):
        sslkit.create("autoencoder", data=digits, corruption="blur")
    with pytest.raises(ValueError, match="not a setting"):
        sslkit.create("rotation", data=digits, rotations=8)
    with pytest.raises(ValueError, match="grid"):
        sslkit.create("jigsaw", data=digits, grid=1)
    with pytest.raises(ValueError, match="num_permutations"):
        sslkit.create("jigsaw", data=digits, grid=2, num_permutations=30)
    with pytest.raises(ValueError, match="needs data"):
        sslkit.create("mlm")
    with pytest.raises(ValueError, match="text data"):
        sslkit.create("mlm", data=digits)
    with pytest.raises(ValueError, match="ViT backbone"):
        sslkit.create("mae", data=digits, backbone=small_convnet())
    with pytest.raises(ValueError, match="encodes image data; cpc trains on signal data"):
        sslkit.create("cpc", data=waves, backbone=small_convnet())

    class Pooled(torch.nn.Module):     # a signal encoder without per-step features (and no input_kind)
        embed_dim = 4

        def forward_features(self, x):
            return x.mean(-1).repeat(1, 4)
    with pytest.raises(ValueError, match="forward_sequence"):
        sslkit.create("cpc", data=waves, backbone=Pooled())
    with pytest.raises(ValueError, match="temperature"):
        sslkit.create("cpc", data=waves, temperature=0)
    with pytest.raises(ValueError, match="encodes image data; next_frame trains on clip data: use one of frames"):
        sslkit.create("next_frame", backbone=small_convnet())
    with pytest.raises(ValueError, match="encode_frames"):
        sslkit.create("next_frame", backbone=Pooled())
    with pytest.raises(ValueError, match="signal data"):
        sslkit.create("cpc", data=digits)


@pytest.mark.cuda
@pytest.mark.parametrize("name,ds_name", CASES)
def test_runs_on_cuda(name, ds_name, request):
    ds = request.getfixturevalue(ds_name)
    method, batch = build(name, ds)
    method, batch = method.cuda(), batch.cuda()
    out = method.training_step(batch)
    out["loss"].backward()
    assert out["loss"].device.type == "cuda" and torch.isfinite(out["loss"])
    assert method.embed(batch).device.type == "cuda"


@pytest.mark.cuda
def test_losses_on_cuda_match_cpu():
    from sslkit import losses
    z1, z2 = torch.randn(8, 5), torch.randn(8, 5)
    for fn in (losses.nt_xent, losses.info_nce, losses.barlow_twins, losses.vicreg):
        torch.testing.assert_close(fn(z1.cuda(), z2.cuda()).cpu(), fn(z1, z2), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name, ds_name", [("jigsaw", "digits"), ("mlm", "corpus")])
def test_training_step_makes_no_host_device_sync(name, ds_name, request):
    """A step on "meta" (standing in for an accelerator) reads nothing back and uploads nothing:
    jigsaw checked its permutations once in __init__, mlm passes its special ids as Python ints."""
    from devguard import DeviceGuard
    method, batch = build(name, request.getfixturevalue(ds_name))
    method = method.to("meta")
    batch = torch.empty(batch.shape, dtype=batch.dtype, device="meta")
    method.training_step(batch)  # warm the per-device caches
    with DeviceGuard() as g:
        out = method.training_step(batch)
    assert out["loss"].shape == ()
    assert not g.reads and not g.uploads, (g.reads, g.uploads)


def test_jigsaw_checks_its_permutations_once(digits, monkeypatch):
    from sslkit.pretext import tasks
    calls = []
    real = tasks.check_permutations

    def spy(*args, **kwargs):
        calls.append(kwargs.get("values", True))
        return real(*args, **kwargs)
    monkeypatch.setattr(tasks, "check_permutations", spy)
    monkeypatch.setattr(sslkit.pretext, "check_permutations", spy)
    method, batch = build("jigsaw", digits)
    assert calls == [True]  # the value check, once, in __init__
    method.training_step(batch)
    method.training_step(batch)
    assert calls == [True, False, False]  # steps check shapes only


def test_mae_encoder_is_the_vit_on_the_visible_patches():
    """With nothing removed, MAE's own encoder pass is the backbone ViT's up to the patch order:
    the CLS output equals forward_features, the patch outputs are forward_tokens' in ids_keep order."""
    torch.manual_seed(0)
    mae = sslkit.create("mae", backbone=backbones.create("vit_tiny", image_size=16, in_channels=3,
                                                         embed_dim=32, depth=2, num_heads=2), mask_ratio=0.5)
    x = torch.rand(3, 3, 16, 16)
    latent, m = mae.forward_encoder(x, 0.0, torch.Generator().manual_seed(1))
    tokens = mae.backbone.forward_tokens(x)                                  # (B, 1+N, D)
    torch.testing.assert_close(latent[:, 0], mae.backbone.forward_features(x), atol=1e-5, rtol=1e-5)
    kept = tokens[:, 1:].gather(1, m.ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
    torch.testing.assert_close(latent[:, 1:], kept, atol=1e-5, rtol=1e-5)
    n = mae.backbone.num_patches                                             # 64 patches of 2 px
    assert m.ids_keep.shape == (3, n) and not torch.equal(m.ids_keep, torch.arange(n).expand(3, -1))
    latent, m = mae.forward_encoder(x, 0.75)
    assert latent.shape == (3, 1 + n // 4, 32) and m.mask.sum().item() == 3 * (n - n // 4)
