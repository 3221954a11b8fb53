"""View recipes by image size, ``method.view_recipe``, the [0, 1] range check and channels-last views.

Issue 10 item 3: "auto" must keep colour jitter and grayscale for small images (the colour-shortcut
lesson depends on it), use SimCLR's CIFAR-10 setting at 32 px (colour strength 0.5, no blur) for the
two-view methods, and show the recipe a method trains with. Issue 14 item 8: [0, 255] floats are
rejected instead of clamped. Issue 10 (GPU step): the views keep the batch's channels-last layout.
"""
from __future__ import annotations

import json

import pytest
import torch

import sslkit
from sslkit import pretext
from sslkit.methods import base
from sslkit.pretext import recipes

JOINT = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino")
TWO_VIEW = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg")
SMALL = {"simclr": dict(proj_hidden=16, proj_dim=8), "moco": dict(proj_hidden=16, proj_dim=8, queue_size=64),
         "byol": dict(proj_hidden=16, proj_dim=8, pred_hidden=16),
         "simsiam": dict(proj_hidden=16, proj_dim=16, pred_hidden=8),
         "barlow_twins": dict(proj_hidden=16, proj_dim=16), "vicreg": dict(proj_hidden=16, proj_dim=16),
         "dino": dict(out_dim=64, hidden_dim=32, bottleneck_dim=16), "autoencoder": dict(decoder_width=8),
         "rotation": dict(head_hidden=16), "jigsaw": dict(grid=2, head_hidden=16)}


@pytest.fixture(scope="module")
def shapes():
    """32x32 RGB images with their dataset (loaded once)."""
    return sslkit.data.load("shapes").subset(torch.arange(64))


def tiny(c: int = 3) -> torch.nn.Module:
    return sslkit.backbones.create("convnet", in_channels=c, widths=(8, 16))


def images(b: int, size: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed))


def seen_by_backbone(m: base.Method, x: torch.Tensor) -> list[torch.Tensor]:
    """The tensors ``m.training_step(x)`` hands to its backbone."""
    seen = []
    fwd = m.backbone.forward_features
    m.backbone.forward_features = lambda v, *a, **k: (seen.append(v.detach().clone()), fwd(v, *a, **k))[1]
    m.training_step(x)
    return seen


# --- which recipe "auto" means --------------------------------------------------------------------
@pytest.mark.parametrize("size", [8, 16])
def test_small_image_simclr_sees_colour_jitter_and_grayscale(size):
    """A small-image SimCLR still sees colour: pure-red images come out grey or hue-shifted in some views
    (the old weak recipe left them red: no saturation, hue or grayscale)."""
    torch.manual_seed(0)
    m = sslkit.create("simclr", backbone=tiny(), **SMALL["simclr"])
    red = torch.zeros(128, 3, size, size)
    red[:, 0] = 0.9
    views = torch.cat(seen_by_backbone(m, red))                              # (2B, 3, s, s)
    r, g, b = views.mean(dim=(2, 3)).unbind(1)                               # (2B,) mean of each channel
    gray = ((r - g).abs() < 0.02) & ((r - b).abs() < 0.02) & (r > 0.1)
    shifted = ~gray & (torch.maximum(g, b) > 0.2)                            # hue moved off pure red
    assert gray.float().mean() > 0.05, "no grayscale views"
    assert shifted.float().mean() > 0.05, "no hue/saturation jitter"
    assert recipes.WEAK.jitter_p > 0 and recipes.WEAK.gray_p > 0 and recipes.WEAK.hue > 0


@pytest.mark.parametrize("name", TWO_VIEW)
def test_32px_recipe_is_simclr_cifar_setting(name, shapes):
    m = sslkit.create(name, data=shapes, backbone=tiny(), **SMALL.get(name, {}))   # 32x32 RGB
    r = m.view_recipe
    assert isinstance(r, pretext.ViewRecipe)                                 # one recipe for both views
    # colour strength s = 0.5: 0.8 s for brightness, contrast, saturation and 0.2 s for hue; no blur
    assert (r.brightness, r.contrast, r.saturation, r.hue) == (0.4, 0.4, 0.4, 0.1)
    assert r.blur_p == 0.0 and r.jitter_p == 0.8 and r.gray_p == 0.2 and r.solarize_p == 0.0
    assert r == recipes.CIFAR


def test_large_images_get_the_paper_recipe():
    for name, want in (("simclr", recipes.SIMCLR), ("moco", recipes.SIMCLR), ("simsiam", recipes.SIMCLR),
                       ("byol", [recipes.BYOL_1, recipes.BYOL_2]), ("vicreg", [recipes.BYOL_1, recipes.BYOL_2])):
        m = sslkit.create(name, backbone=tiny(1), **SMALL.get(name, {}))
        m.image_size = 64                                                     # e.g. STL-10 at 64-96 px
        assert m.view_recipe == want
    assert recipes.SIMCLR.blur_p == 0.5 and recipes.SIMCLR.brightness == 0.8   # strength 1, blur


def test_one_place_decides_auto():
    for size, paper, want in ((8, "simclr", "weak"), (16, "byol", "weak"), (17, "simclr", "cifar"),
                              (32, "byol", "cifar"), (33, "byol", "byol"), (224, "simclr", "simclr"),
                              (16, "multicrop", "weak"), (32, "multicrop", "multicrop")):
        assert pretext.auto_views(size, paper) == want
        assert base.resolve_views("auto", size, paper) == want
    with pytest.raises(ValueError, match="paper"):
        pretext.auto_views(32, "swav")


def test_two_views_uses_the_auto_recipe():
    """two_views(x, "auto") at 32 px draws exactly what the CIFAR recipe draws."""
    x = images(6, 32)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    v1, v2 = base.two_views(x, "auto", paper="byol", generator=g1)
    assert torch.equal(v1, recipes.CIFAR(x, g2)) and torch.equal(v2, recipes.CIFAR(x, g2))


def test_dino_auto_uses_the_shared_choice():
    m = sslkit.create("dino", backbone=tiny(), **SMALL["dino"])
    assert len(m.crops(images(4, 16))) == 2 and len(m.crops(images(4, 32))) == 6
    m.image_size = 16
    assert m.view_recipe == recipes.WEAK
    m.image_size = 32
    r = m.view_recipe
    assert isinstance(r, list) and len(r) == 6 and [v.size for v in r] == [(32, 32)] * 2 + [(14, 14)] * 4


# --- method.view_recipe -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", JOINT)
def test_every_joint_method_exposes_its_view_recipe(name):
    ds = sslkit.data.load("digits")                                          # 8x8: the weak recipe
    m = sslkit.create(name, data=ds, backbone=tiny(1), **SMALL.get(name, {}))
    assert m.image_size == 8
    r = m.view_recipe
    assert r == recipes.WEAK
    assert "ViewRecipe(" in repr(r) and "flip_p=0.0" in repr(r)            # readable: what differs
    json.dumps(recipes.to_config(r))                                          # JSON for the run config
    assert recipes.to_config(r)["scale"] == [0.64, 1.0]
    # created without data: the size is unknown, the recipe is described
    m = sslkit.create(name, backbone=tiny(1), **SMALL.get(name, {}))
    assert isinstance(m.view_recipe, str) and "auto" in m.view_recipe
    # an explicit recipe is reported as given
    mine = pretext.ViewRecipe(blur_p=0.0)
    m = sslkit.create(name, data=ds, backbone=tiny(1), views=mine, **SMALL.get(name, {}))
    assert m.view_recipe is mine or m.view_recipe == mine


def test_view_recipe_to_config_forms():
    pair = [recipes.BYOL_1, recipes.BYOL_2]
    cfg = recipes.to_config(pair)
    assert [c["blur_p"] for c in cfg] == [1.0, 0.1] and json.dumps(cfg)
    assert recipes.to_config(None) is None and recipes.to_config("auto") == "auto"
    assert isinstance(recipes.to_config(lambda x, generator=None: x), str)
    assert recipes.to_config(recipes.CIFAR)["brightness"] == 0.4
    assert repr(pretext.ViewRecipe()) == "ViewRecipe()"                      # the defaults: SimCLR ImageNet


# --- [0, 1] range (issue 14 item 8) ----------------------------------------------------------------
VIEW_FUNCTIONS = {
    "random_resized_crop": lambda x: pretext.random_resized_crop(x),
    "horizontal_flip": lambda x: pretext.horizontal_flip(x),
    "color_jitter": lambda x: pretext.color_jitter(x),
    "random_grayscale": lambda x: pretext.random_grayscale(x),
    "gaussian_blur": lambda x: pretext.gaussian_blur(x),
    "solarize": lambda x: pretext.solarize(x),
    "gaussian_noise": lambda x: pretext.gaussian_noise(x),
    "cutout": lambda x: pretext.cutout(x),
    "simclr_views": lambda x: pretext.simclr_views(x),
    "cifar_views": lambda x: pretext.cifar_views(x),
    "byol_views": lambda x: pretext.byol_views(x),
    "weak_views": lambda x: pretext.weak_views(x),
    "multicrop": lambda x: pretext.multicrop(x),
    "recipe": lambda x: pretext.ViewRecipe()(x),
    "salt_and_pepper": lambda x: pretext.salt_and_pepper(x, 0.1),
    "inpaint_holes": lambda x: pretext.inpaint_holes(x),
    "gaussian_corrupt": lambda x: pretext.gaussian_corrupt(x, 0.1),
}


@pytest.mark.parametrize("name", VIEW_FUNCTIONS)
def test_views_reject_0_255_images(name):
    x = images(4, 16) * 255                                                   # floats in [0, 255]
    with pytest.raises(ValueError, match=r"divide by 255") as err:
        VIEW_FUNCTIONS[name](x)
    assert "[0, 1]" in str(err.value) and "x has values in" in str(err.value)
    with pytest.raises(ValueError, match="normalisation"):                  # mean/std-normalised
        VIEW_FUNCTIONS[name]((images(4, 16) - 0.5) / 0.25)
    VIEW_FUNCTIONS[name](images(4, 16))                                       # [0, 1] passes
    VIEW_FUNCTIONS[name](images(4, 16) * 1.02 - 0.01)                         # a little overshoot too


def test_methods_reject_0_255_batches_on_cpu():
    m = sslkit.create("simclr", backbone=tiny(), **SMALL["simclr"])
    with pytest.raises(ValueError, match="divide by 255"):
        m.training_step(images(8, 16) * 255)


def test_geometric_tasks_accept_any_values():
    x = images(4, 16) * 255
    pretext.rotate(x)
    pretext.jigsaw(x, pretext.jigsaw_permutations(4, 2), grid=2)
    pretext.gaussian_corrupt(x, 0.1, clip=False)


# --- channels-last views ---------------------------------------------------------------------------
IMAGE_METHODS = ("simclr", "moco", "byol", "simsiam", "barlow_twins", "vicreg", "dino", "autoencoder",
                 "rotation", "jigsaw")


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_backbone_sees_channels_last_views(name, shapes):
    m = sslkit.create(name, data=shapes, backbone=tiny(),
                      **{**SMALL.get(name, {}), **({"n_local": 2} if name == "dino" else {})})
    x = shapes.batch(torch.arange(16)).contiguous(memory_format=torch.channels_last)
    seen = seen_by_backbone(m, x)
    assert seen
    for v in seen:
        assert v.ndim == 4 and v.shape[1] == 3
        assert v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous(), name
    # ...and an ordinary batch gives ordinary views
    for v in seen_by_backbone(m, shapes.batch(torch.arange(16))):
        assert v.is_contiguous(), name


def test_recipe_keeps_the_layout_and_the_values():
    x = images(6, 16)
    a = recipes.CIFAR(x, torch.Generator().manual_seed(1))
    b = recipes.CIFAR(x.contiguous(memory_format=torch.channels_last), torch.Generator().manual_seed(1))
    assert b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(a, b)                                          # same views, other layout


def test_auto_views_gives_multicrop_at_every_size_when_local_crops_are_asked_for():
    for size in (8, 16, 32, 96):
        assert pretext.auto_views(size, "multicrop", n_local=2) == "multicrop"
        assert pretext.auto_views(size, "multicrop", n_local=0) == pretext.auto_views(size, "multicrop")
    assert pretext.auto_views(8, "simclr", n_local=2) == "weak"   # two-view methods: no local crops
