"""Methods as their papers, at any image size: DINO's crops and fp32 logits, MAE's fixed sin-cos
positions, betas and norm_pix, a ViT patch size for every image size, and clear errors at ``create``."""

import math

import pytest
import torch
import torch.nn.functional as F

import sslkit
from sslkit import backbones, data, heads, losses
from sslkit.backbones.vit import default_patch_size, sincos_2d
from sslkit.data.base import Dataset
from sslkit.methods import base


def images(size: int, n: int = 4, channels: int = 3) -> Dataset:
    x = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(size))
    return Dataset(name=f"noise{size}", split="train", kind="image", x=x,
                   labels=torch.zeros(n, dtype=torch.long), classes=["noise"])


def tiny_vit(size: int, channels: int = 3, **kw):
    return backbones.create("vit_tiny", image_size=size, in_channels=channels, embed_dim=32, depth=1,
                            num_heads=2, **kw)


# --- ViT patch sizes ---------------------------------------------------------------------------
def test_default_patch_size_divides_every_image_size():
    assert [default_patch_size(s) for s in (8, 16, 32, 64, 96)] == [2, 2, 4, 8, 12]   # unchanged
    assert default_patch_size(28) == 4 and default_patch_size(7) == 7                  # MNIST: 7x7 grid
    for size in range(2, 129):
        p = default_patch_size(size)
        assert size % p == 0 and p >= 2
    assert backbones.create("vit_tiny", image_size=28, in_channels=1, depth=1).patch_size == 4
    with pytest.raises(ValueError, match="image_size=30 is not a multiple of patch_size=4.*1, 2, 3, 5"):
        backbones.create("vit_tiny", image_size=30, patch_size=4)


def test_vit_patch_size_must_divide_the_data_at_create():
    vit = tiny_vit(16, patch_size=8)
    with pytest.raises(ValueError, match="12 px, not a multiple of patch_size=8"):
        sslkit.create("simclr", data=images(12), backbone=vit)
    sslkit.create("simclr", data=images(24), backbone=vit)    # 24 = 3 patches: fine (positions resized)


# --- DINO at every size ------------------------------------------------------------------------
def test_dino_crops_are_whole_vit_patches():
    m = sslkit.create("dino", data=images(32), backbone=tiny_vit(32), out_dim=64, hidden_dim=32,
                      bottleneck_dim=16)
    assert m.patch_size == 4
    assert m.crop_sizes(32, 32) == ((32, 32), (12, 12))      # local 32 * 96/224 = 13.7 -> 3 patches
    crops = m.crops(images(32).batch(torch.arange(2)))
    assert [c.shape[-1] for c in crops] == [32, 32, 12, 12, 12, 12]
    out = m.training_step(images(32).batch(torch.arange(2)))
    assert torch.isfinite(out["loss"])
    conv = sslkit.create("dino", data=images(32), backbone=backbones.create("convnet", widths=(8, 16)))
    assert conv.crop_sizes(32, 32) == ((32, 32), (14, 14))   # no patches: the paper's ratio as is


def test_dino_crop_size_not_a_multiple_of_the_patch_is_refused_at_create():
    with pytest.raises(ValueError, match="local_size=14 is not a multiple of the backbone's patch_size=4; "
                                         "use 12 or 16"):
        sslkit.create("dino", data=images(32), backbone=tiny_vit(32), local_size=14)
    with pytest.raises(ValueError, match="global_size=30"):
        sslkit.create("dino", data=images(32), backbone=tiny_vit(32), global_size=30)


def test_dino_head_logits_are_fp32_under_bf16_autocast():
    head = heads.DINOHead(16, out_dim=64, hidden_dim=32, bottleneck_dim=8)
    x = torch.randn(6, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(x)
        h = head.mlp(x)                                       # the bottleneck, bf16 under autocast
    assert h.dtype == torch.bfloat16 and logits.dtype == torch.float32
    w = head.weight_g * F.normalize(head.weight_v, dim=1)
    ref = F.normalize(h.float(), dim=-1) @ w.T                # the last layer in fp32, by hand
    torch.testing.assert_close(logits, ref, rtol=0, atol=1e-6)
    # what bf16 logits would have cost once sharpened by the teacher temperature 0.04
    bf16 = (F.normalize(h, dim=-1) @ w.bfloat16().T).float()
    assert (torch.softmax(bf16 / 0.04, -1) - torch.softmax(ref / 0.04, -1)).abs().max() > 1e-3


def test_dino_step_under_bf16_autocast_uses_fp32_logits():
    m = sslkit.create("dino", data=images(16, channels=1), backbone=tiny_vit(16, channels=1), out_dim=64,
                      hidden_dim=32, bottleneck_dim=16)
    seen = []
    for head in (m.head, m.teacher_head):
        head.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m.training_step(images(16, channels=1).batch(torch.arange(4)))
    assert seen and set(seen) == {torch.float32}
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    m.on_step_end(1, 10)
    assert m.center.dtype == torch.float32


# --- MAE as the paper --------------------------------------------------------------------------
def ref_sincos(dim, gh, gw):
    """MAE's 2-D sin-cos embedding written with loops: rows in the first half, columns in the second."""
    out = torch.zeros(gh * gw, dim, dtype=torch.float64)
    q = dim // 4
    for i in range(gh):
        for j in range(gw):
            for k in range(q):
                w = 1.0 / 10000 ** (k / q)
                out[i * gw + j, k] = math.sin(i * w)
                out[i * gw + j, q + k] = math.cos(i * w)
                out[i * gw + j, 2 * q + k] = math.sin(j * w)
                out[i * gw + j, 3 * q + k] = math.cos(j * w)
    return out.float()


def test_sincos_matches_reference():
    torch.testing.assert_close(sincos_2d(16, 3, 5), ref_sincos(16, 3, 5))
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_2d(18, 2, 2)


def test_mae_positions_are_fixed_sincos_and_never_trained():
    digits = data.load("digits")
    by_name = sslkit.create("mae", data=digits).backbone       # the default, as load_method rebuilds it
    assert by_name.positions == "sincos" and by_name.sslkit_kwargs["positions"] == "sincos"
    assert sslkit.create("mae", data=digits, backbone="vit_tiny").backbone.positions == "sincos"
    m = sslkit.create("mae", data=digits, backbone=tiny_vit(8, 1, positions="sincos"), decoder_dim=32,
                      decoder_depth=1)
    vit = m.backbone
    trained = dict(m.named_parameters())
    assert "backbone.pos_embed" not in trained and "decoder_pos" not in trained
    n, grid = vit.num_patches, vit.image_size // vit.patch_size
    torch.testing.assert_close(vit.pos_embed[0, 1:], ref_sincos(vit.embed_dim, grid, grid))
    torch.testing.assert_close(m.decoder_pos[0, 1:], ref_sincos(32, grid, grid))
    assert vit.pos_embed.shape == (1, 1 + n, vit.embed_dim) and (vit.pos_embed[0, 0] == 0).all()
    before = (vit.pos_embed.clone(), m.decoder_pos.clone())
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, betas=m.adam_betas)
    for _ in range(2):
        opt.zero_grad()
        m.training_step(digits.batch(torch.arange(8)))["loss"].backward()
        opt.step()
    assert torch.equal(vit.pos_embed, before[0]) and torch.equal(m.decoder_pos, before[1])
    assert "backbone.pos_embed" in m.state_dict()             # saved with the weights
    # a ViT module passed in keeps its own positions
    assert sslkit.create("mae", data=digits, backbone=tiny_vit(8, 1)).backbone.positions == "learned"


def test_adam_betas():
    assert base.Method.adam_betas == (0.9, 0.999)
    assert sslkit.create("mae").adam_betas == (0.9, 0.95)    # MAE appendix A.1
    assert sslkit.create("simclr").adam_betas == (0.9, 0.999)


def test_mae_loss_and_reconstruct_share_norm_pix():
    """A decoder that predicts exactly the normalised target: zero loss, and reconstruct() undoes the
    same normalisation to give the image back."""
    ds = images(8, n=4, channels=1)
    m = sslkit.create("mae", data=ds, backbone=tiny_vit(8, 1), decoder_dim=32, decoder_depth=1,
                      norm_pix=True)
    x = ds.batch(torch.arange(4))

    def perfect(x, ratio, generator=None):
        target = sslkit.pretext.patchify(x, m.backbone.patch_size)
        mask = sslkit.pretext.random_masking(target, ratio, generator=generator).mask
        return losses.norm_pix(target)[0], target, mask
    m._forward = perfect
    assert m.training_step(x)["loss"].item() < 1e-10
    _, rec, _ = m.reconstruct(x)
    torch.testing.assert_close(rec, x, atol=1e-5, rtol=0)


def test_mae_refuses_non_vit_and_too_few_patches():
    with pytest.raises(ValueError, match="mae needs a ViT backbone.*backbone='resnet18'"):
        sslkit.create("mae", data=images(32), backbone="resnet18")
    with pytest.raises(ValueError, match="removes all 4 patches"):
        sslkit.create("mae", backbone=tiny_vit(4, patch_size=2), mask_ratio=0.9)


# --- data and backbones that cannot work: refused at create --------------------------------------
def test_data_kind_must_match_the_method():
    with pytest.raises(ValueError, match="simclr trains on image or spectrogram data, but data='corpus' holds "
                                         "text data; methods for text data: mlm, gpt, word2vec"):
        sslkit.create("simclr", data=data.load("corpus"))
    with pytest.raises(ValueError, match="cpc trains on signal data, but data='digits' holds image data"):
        sslkit.create("cpc", data=data.load("digits"))
    assert sslkit.methods.registry.kinds("next_frame") == ("clip",)


def test_backbone_for_another_kind_is_refused():
    with pytest.raises(ValueError, match="backbone='convnet' encodes image data; cpc trains on signal "
                                         "data: use one of conv1d, wave_transformer"):
        sslkit.create("cpc", backbone="convnet")
    with pytest.raises(ValueError, match="backbone=Conv1dEncoder encodes signal data; rotation"):
        sslkit.create("rotation", backbone=backbones.create("conv1d"))
    assert backbones.names("signal") == ["conv1d", "wave_transformer"] and backbones.input_kind("frames") == "clip"
