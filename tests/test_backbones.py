"""Backbones: shapes, feature sizes, attention maps, hooks for MAE/MLM/CPC, bad inputs."""
import pytest
import torch

from sslkit import backbones

# (name, kwargs, example input)
CASES = [
    ("convnet", {"in_channels": 1}, lambda: torch.rand(3, 1, 8, 8)),
    ("convnet", {"in_channels": 3}, lambda: torch.rand(3, 3, 32, 32)),
    ("resnet18_cifar", {}, lambda: torch.rand(2, 3, 16, 16)),
    ("resnet18", {"in_channels": 1}, lambda: torch.rand(2, 1, 32, 32)),
    ("vit_tiny", {"image_size": 16, "depth": 2}, lambda: torch.rand(3, 3, 16, 16)),
    ("transformer", {"vocab_size": 30, "max_len": 12, "depth": 2}, lambda: torch.randint(0, 30, (3, 12))),
    ("conv1d", {"in_channels": 2}, lambda: torch.randn(3, 2, 40)),
    ("frames", {"in_channels": 1}, lambda: torch.rand(3, 4, 1, 16, 16)),
    ("wave_transformer", {"depth": 1}, lambda: torch.randn(3, 1, 800)),
    ("spec_convnet", {}, lambda: torch.randn(3, 1, 40, 52)),
]
DIMS = {"convnet": 128, "resnet18_cifar": 512, "resnet18": 512, "vit_tiny": 192, "transformer": 128,
        "conv1d": 128, "frames": 128, "wave_transformer": 128, "spec_convnet": 512}


def test_names():
    assert backbones.names() == list(DIMS)


@pytest.mark.parametrize("name,kw,make", CASES)
def test_shapes_and_embed_dim(name, kw, make):
    net = backbones.create(name, **kw).eval()
    x = make()
    f = net.forward_features(x)
    assert f.shape == (x.shape[0], DIMS[name]) == (x.shape[0], net.embed_dim)
    assert torch.isfinite(f).all()
    assert torch.equal(net(x), f)          # forward = forward_features


@pytest.mark.parametrize("name,kw,make", CASES)
def test_samples_are_independent_in_eval(name, kw, make):
    net = backbones.create(name, **kw).eval()
    x = make()
    with torch.no_grad():
        torch.testing.assert_close(net(x)[:1], net(x[:1]), atol=1e-5, rtol=1e-4)


def test_resnet18_cifar_stem():
    net = backbones.create("resnet18_cifar")
    assert net.net.conv1.kernel_size == (3, 3) and net.net.conv1.stride == (1, 1)
    assert isinstance(net.net.maxpool, torch.nn.Identity)


def test_vit_attention_maps_sum_to_one():
    net = backbones.create("vit_tiny", image_size=16, patch_size=4, depth=2).eval()
    x = torch.rand(2, 3, 16, 16)
    f, attn = net.forward_features(x, return_attention=True)
    assert attn.shape == (2, 3, 17, 17)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 3, 17))
    torch.testing.assert_close(f, net.forward_features(x), atol=1e-5, rtol=1e-5)  # explicit == fused path


def test_vit_forward_tokens_with_ids_keep_matches_gather():
    net = backbones.create("vit_tiny", image_size=16, patch_size=4, depth=1).eval()
    x = torch.rand(2, 3, 16, 16)
    ids_keep = torch.stack([torch.randperm(16)[:5] for _ in range(2)])
    out = net.forward_tokens(x, ids_keep)
    assert out.shape == (2, 6, 192)
    # reference: zero out nothing, but run the blocks on the gathered tokens by hand
    t = net.patch_tokens(x)
    kept = torch.stack([t[b, ids_keep[b]] for b in range(2)])
    cls = (net.cls_token + net.pos_embed[:, :1]).expand(2, -1, -1)
    h = torch.cat([cls, kept], 1)
    for blk in net.blocks:
        h, _ = blk(h)
    torch.testing.assert_close(out, net.norm(h))
    assert net.forward_tokens(x).shape == (2, 17, 192)


def test_vit_other_image_size_interpolates_positions():
    net = backbones.create("vit_tiny", image_size=16, patch_size=4, depth=1)
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 192)
    assert backbones.create("vit_tiny", image_size=32, depth=1).patch_size == 4
    assert backbones.create("vit_tiny", image_size=8, in_channels=1, depth=1).patch_size == 2


def test_transformer_tokens_and_padding():
    net = backbones.create("transformer", vocab_size=20, max_len=8, depth=2, pad_id=0).eval()
    ids = torch.randint(1, 20, (2, 8))
    assert net.forward_tokens(ids).shape == (2, 8, 128)
    # padding is ignored: CLS features do not depend on what follows under padding positions' embeddings
    padded = ids.clone()
    padded[:, 5:] = 0
    short = net.forward_features(padded)
    net.tok_embed.weight.data[0] += 5.0          # change the [PAD] embedding
    torch.testing.assert_close(net.forward_features(padded), short, atol=1e-5, rtol=1e-5)


def test_conv1d_sequence_and_frames():
    net = backbones.create("conv1d", in_channels=1)
    x = torch.randn(2, 1, 128)
    seq = net.forward_sequence(x)
    assert seq.shape == (2, 32, 128)                 # strides 2, 2, 1 -> T / 4
    torch.testing.assert_close(net(x), seq.mean(1))
    fr = backbones.create("frames", in_channels=1).eval()
    clips = torch.rand(2, 5, 1, 16, 16)
    per = fr.encode_frames(clips)
    assert per.shape == (2, 5, 128)
    torch.testing.assert_close(per[:, 2], fr.frame(clips[:, 2]), atol=1e-5, rtol=1e-5)


def test_bad_inputs():
    conv = backbones.create("convnet", in_channels=3)
    with pytest.raises(ValueError, match="channels"):
        conv(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="rank 4"):
        conv(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="floating"):
        conv(torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    vit = backbones.create("vit_tiny", image_size=16, patch_size=4, depth=1)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        vit(torch.rand(2, 3, 10, 10))
    with pytest.raises(ValueError, match="image_size=10 is not a multiple of patch_size=4"):
        backbones.create("vit_tiny", image_size=10, patch_size=4)
    with pytest.raises(ValueError, match="ids_keep"):
        vit.forward_tokens(torch.rand(2, 3, 16, 16), torch.zeros(3, 4, dtype=torch.long))
    txt = backbones.create("transformer", vocab_size=10, max_len=6, depth=1)
    with pytest.raises(ValueError, match="integer"):
        txt(torch.rand(2, 6))
    with pytest.raises(ValueError, match="max_len"):
        txt(torch.zeros(2, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="vocab_size"):
        txt(torch.full((2, 6), 10))
    with pytest.raises(ValueError, match="channels"):
        backbones.create("conv1d", in_channels=1)(torch.randn(2, 3, 20))
    with pytest.raises(ValueError, match="rank 5"):
        backbones.create("frames")(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="name"):
        backbones.create("resnet50")
    with pytest.raises(ValueError, match="keywords: in_channels"):
        backbones.create("convnet", colour=True)
    with pytest.raises(ValueError, match="in_channels"):
        backbones.create("convnet", in_channels=0)
    with pytest.raises(ValueError, match="vocab_size"):
        backbones.create("transformer")          # the vocabulary size is required


def test_transformer_checks_token_values_on_cpu_only():
    """On an accelerator the id range check would sync every step; "meta" stands in for one."""
    from devguard import DeviceGuard
    txt = backbones.create("transformer", vocab_size=10, max_len=6, depth=1)
    with pytest.raises(ValueError, match="vocab_size"):
        txt(torch.full((2, 6), 10))  # CPU: checked
    txt = txt.to("meta")
    ids = torch.empty(2, 6, dtype=torch.long, device="meta")
    with DeviceGuard() as g:
        out = txt(ids)
    assert out.shape == (2, txt.embed_dim)
    assert not g.reads and not g.uploads, (g.reads, g.uploads)
