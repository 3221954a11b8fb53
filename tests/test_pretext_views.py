"""Batched views: each op against torchvision on single images with the same parameters, per-sample
randomness, determinism, meta/CPU/CUDA, and every bad argument."""
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

import sslkit.pretext as P
from sslkit.pretext import _random
from sslkit.pretext import views as V


def gen(seed=0, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def images(b=6, c=3, h=16, w=16):
    return torch.rand(b, c, h, w, generator=gen(123))


OPS = {
    "random_resized_crop": lambda x, g: P.random_resized_crop(x, generator=g),
    "horizontal_flip": lambda x, g: P.horizontal_flip(x, generator=g),
    "color_jitter": lambda x, g: P.color_jitter(x, p=1.0, generator=g),
    "random_grayscale": lambda x, g: P.random_grayscale(x, p=0.5, generator=g),
    "gaussian_blur": lambda x, g: P.gaussian_blur(x, p=1.0, generator=g),
    "solarize": lambda x, g: P.solarize(x, p=0.5, generator=g),
    "gaussian_noise": lambda x, g: P.gaussian_noise(x, generator=g),
    "cutout": lambda x, g: P.cutout(x, p=1.0, generator=g),
    "simclr": lambda x, g: P.simclr_views(x, generator=g)[0],
    "byol": lambda x, g: P.byol_views(x, generator=g)[1],
    "weak": lambda x, g: P.weak_views(x, generator=g)[0],
}


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_range_determinism(name, channels):
    x = images(c=channels)
    a, b = OPS[name](x, gen(1)), OPS[name](x, gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)  # same seed, same views
    if not (name == "random_grayscale" and channels == 1):  # grey stays grey
        assert not torch.equal(a, OPS[name](x, gen(2)))  # other seed, other views


@pytest.mark.parametrize("name", OPS)
def test_does_not_modify_input(name):
    x = images()
    before = x.clone()
    OPS[name](x, gen(0))
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", ["random_resized_crop", "color_jitter", "gaussian_blur", "gaussian_noise",
                                  "cutout", "simclr", "byol"])
def test_identical_images_get_different_views(name):
    x = images(b=1).expand(8, -1, -1, -1).contiguous()  # the same image 8 times
    out = OPS[name](x, gen(0))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8


@pytest.mark.parametrize("name", OPS)
def test_meta_device_shapes(name):
    x = torch.empty(4, 3, 16, 16, device="meta")
    assert OPS[name](x, gen(0)).shape == (4, 3, 16, 16)


def test_crop_boxes_and_crop_match_torchvision():
    x = images(b=32, h=20, w=24)
    out = P.random_resized_crop(x, size=12, generator=gen(5))
    boxes = V.crop_boxes(32, 20, 24, (0.08, 1.0), (3 / 4, 4 / 3), gen(5), x.device)  # same draws
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 20).all() and (left + w <= 24).all()
    assert ((h * w) >= 0.08 * 480 - 24).all()  # rounding allowance
    for i in range(32):
        ref = TF.resized_crop(x[i], int(top[i]), int(left[i]), int(h[i]), int(w[i]), [12, 12], antialias=False)
        # interpolate clamps at the crop's edge, grid_sample reads the neighbouring pixel: edges may differ
        # when upsampling, interiors always agree.
        torch.testing.assert_close(out[i, :, 1:-1, 1:-1], ref[:, 1:-1, 1:-1], atol=1e-5, rtol=0)
        if h[i] >= 12 and w[i] >= 12:
            torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_crop_fallback_is_central():
    boxes = V.crop_boxes(4, 10, 40, (1.0, 1.0), (1.0, 1.0), gen(0), torch.device("cpu"))
    # a 10x40 image cannot hold a square of area 400: central crop with ratio clamped to 1
    assert boxes.tolist() == [[0, 15, 10, 10]] * 4


def test_crop_flip_is_one_grid_sample_of_crop_then_flip():
    x = images(b=8)
    boxes = V.crop_boxes(8, 16, 16, (0.2, 1.0), (3 / 4, 4 / 3), gen(0), x.device)
    flip = torch.tensor([True, False] * 4)
    both = V.crop_flip(x, boxes, flip, (16, 16))
    plain = V.crop_flip(x, boxes, None, (16, 16))
    torch.testing.assert_close(both[flip], plain[flip].flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(both[~flip], plain[~flip])


def test_flip_per_sample():
    x = images(b=64)
    out = P.horizontal_flip(x, p=0.5, generator=gen(0))
    flipped = [torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)]
    kept = [torch.equal(o, xi) for o, xi in zip(out, x)]
    assert all(f or k for f, k in zip(flipped, kept)) and 10 < sum(flipped) < 54


def _jitter_draws(seed, b, p):
    g = gen(seed)
    apply = torch.rand(b, generator=g) < p  # same draw order as views.color_jitter_
    f = [torch.rand(b, generator=g) for _ in range(4)]
    return apply, f


@pytest.mark.parametrize("channels", [1, 3])
def test_color_jitter_matches_torchvision(channels):
    x = images(b=16, c=channels)
    s = dict(brightness=0.4, contrast=0.5, saturation=0.6, hue=0.2)
    out = P.color_jitter(x, **s, p=0.7, generator=gen(9))
    apply, (ub, uc, us, uh) = _jitter_draws(9, 16, 0.7)
    for i in range(16):
        y = x[i]
        if apply[i]:
            y = TF.adjust_brightness(y, float(0.6 + 0.8 * ub[i]))
            y = TF.adjust_contrast(y, float(0.5 + 1.0 * uc[i]))
            y = TF.adjust_saturation(y, float(0.4 + 1.2 * us[i]))
            y = TF.adjust_hue(y, float(-0.2 + 0.4 * uh[i]))
        torch.testing.assert_close(out[i], y, atol=1e-5, rtol=0)


def test_hue_shift_matches_torchvision_on_all_sectors():
    x = images(b=8, h=32, w=32)
    x[:, :, :4] = x[:, :1, :4]  # grey pixels (chroma 0) too
    shifts = torch.linspace(-0.5, 0.5, 8)
    out = V._shift_hue_(x.clone(), shifts)
    for i in range(8):
        torch.testing.assert_close(out[i], TF.adjust_hue(x[i], float(shifts[i])), atol=1e-5, rtol=0)


def test_grayscale_matches_torchvision():
    x = images(b=32)
    out = P.random_grayscale(x, p=0.5, generator=gen(3))
    apply = torch.rand(32, generator=gen(3)) < 0.5
    for i in range(32):
        ref = TF.rgb_to_grayscale(x[i], num_output_channels=3) if apply[i] else x[i]
        torch.testing.assert_close(out[i], ref, atol=1e-6, rtol=0)
    assert torch.equal(P.random_grayscale(x[:, :1], p=1.0), x[:, :1])  # 1 channel: already grey


@pytest.mark.parametrize("kernel_size", [3, 9])  # shifted-sum path and grouped-conv path
def test_blur_matches_torchvision(kernel_size):
    x = images(b=10, h=12, w=14)
    out = P.gaussian_blur(x, sigma=(0.3, 3.0), p=0.6, kernel_size=kernel_size, generator=gen(4))
    g = gen(4)
    apply = torch.rand(10, generator=g) < 0.6
    sig = 0.3 + 2.7 * torch.rand(10, generator=g)
    for i in range(10):
        ref = TF.gaussian_blur(x[i], [kernel_size] * 2, [float(sig[i])] * 2) if apply[i] else x[i]
        torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)


def test_blur_default_kernel_is_ten_percent():
    assert [V.default_kernel_size(s, s) for s in (8, 32, 96, 224)] == [3, 3, 9, 23]


def test_solarize_matches_torchvision():
    x = images(b=16)
    out = P.solarize(x, threshold=0.4, p=0.5, generator=gen(2))
    apply = torch.rand(16, generator=gen(2)) < 0.5
    for i in range(16):
        ref = TF.solarize(x[i], 0.4) if apply[i] else x[i]
        torch.testing.assert_close(out[i], ref, atol=1e-6, rtol=0)


def test_noise_statistics_and_clipping():
    x = torch.full((64, 3, 16, 16), 0.5)
    out = P.gaussian_noise(x, std=0.05, generator=gen(0))
    assert abs((out - x).std().item() - 0.05) < 0.003
    assert torch.equal(P.gaussian_noise(x, std=0.05, p=0.0), x)
    assert P.gaussian_noise(torch.ones(2, 1, 4, 4), std=1.0).max() <= 1.0


def test_cutout_matches_loop_reference():
    x = images(b=20, h=16, w=16)
    out = P.cutout(x, size=0.25, p=1.0, generator=gen(7))
    g = gen(7)
    torch.rand(20, generator=g)  # the apply draw (p = 1 draws nothing, but keep order explicit)
    g = gen(7)
    cy = (torch.rand(20, generator=g, dtype=torch.float32) * 16).long()
    cx = (torch.rand(20, generator=g, dtype=torch.float32) * 16).long()
    for i in range(20):
        ref = x[i].clone()
        for r in range(16):
            for c in range(16):
                if cy[i] - 2 <= r < cy[i] + 2 and cx[i] - 2 <= c < cx[i] + 2:
                    ref[:, r, c] = 0
        assert torch.equal(out[i], ref)


def test_recipes():
    x = images(b=4, h=32, w=32)
    v1, v2 = P.simclr_views(x, size=24, generator=gen(0))
    assert v1.shape == v2.shape == (4, 3, 24, 24) and not torch.equal(v1, v2)
    crops = P.multicrop(x, n_global=2, n_local=3, generator=gen(0))
    assert [c.shape[-1] for c in crops] == [32, 32, 14, 14, 14]
    digits = torch.rand(5, 1, 8, 8)
    w1, w2 = P.weak_views(digits, generator=gen(0))
    assert w1.shape == (5, 1, 8, 8)
    from sslkit.pretext.recipes import BYOL_1, BYOL_2, WEAK
    assert (BYOL_1.blur_p, BYOL_1.solarize_p, BYOL_2.blur_p, BYOL_2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert WEAK.flip_p == 0.0


def test_recipe_equals_its_ops_in_sequence():
    """The recipe is crop+flip, then the ops in order, drawing from one generator."""
    x = images(b=8)
    r = P.ViewRecipe(blur_p=0.5, solarize_p=0.3, noise_std=0.02, cutout_p=0.5)
    out = r(x, gen(11))
    g = gen(11)
    boxes = V.crop_boxes(8, 16, 16, r.scale, r.ratio, g, x.device)
    flip = _random.bernoulli(8, r.flip_p, g, x.device)
    v = V.crop_flip(x, boxes, flip, (16, 16))
    v = V.color_jitter_(v, r.brightness, r.contrast, r.saturation, r.hue, r.jitter_p, g)
    v = V.random_grayscale_(v, r.gray_p, g)
    v = V.gaussian_blur_(v, r.blur_sigma, r.blur_p, None, g)
    v = V.solarize_(v, r.solarize_threshold, r.solarize_p, g)
    v = V.gaussian_noise_(v, r.noise_std, r.noise_p, g)
    v = V.cutout_(v, r.cutout_size, r.cutout_p, g, 0.0)
    assert torch.equal(out, v)


BAD = [
    (lambda: P.random_resized_crop(torch.rand(3, 8, 8)), "rank 4"),
    (lambda: P.random_resized_crop(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)), "floating-point"),
    (lambda: P.random_resized_crop(torch.rand(2, 4, 8, 8)), "channels"),
    (lambda: P.random_resized_crop(torch.rand(2, 3, 8, 8), scale=(0.5, 1.5)), r"scale\[1\]=1.5"),
    (lambda: P.random_resized_crop(torch.rand(2, 3, 8, 8), scale=(0.0, 1.0)), r"scale\[0\]"),
    (lambda: P.random_resized_crop(torch.rand(2, 3, 8, 8), ratio=(2.0, 1.0)), "low must be <= high"),
    (lambda: P.random_resized_crop(torch.rand(2, 3, 8, 8), size=0), "size=0"),
    (lambda: P.horizontal_flip(torch.rand(2, 3, 8, 8), p=1.5), r"p=1.5 .*\[0, 1\]"),
    (lambda: P.color_jitter(torch.rand(2, 3, 8, 8), hue=0.7), "hue=0.7"),
    (lambda: P.color_jitter(torch.rand(2, 3, 8, 8), brightness=-1), "brightness"),
    (lambda: P.random_grayscale(torch.rand(2, 3, 8, 8), p=-0.1), "p=-0.1"),
    (lambda: P.gaussian_blur(torch.rand(2, 3, 8, 8), kernel_size=4), "odd"),
    (lambda: P.gaussian_blur(torch.rand(2, 3, 8, 8), kernel_size=31), "kernel_size=31"),
    (lambda: P.gaussian_blur(torch.rand(2, 3, 8, 8), sigma=(0.0, 1.0)), r"sigma\[0\]"),
    (lambda: P.solarize(torch.rand(2, 3, 8, 8), threshold=2), "threshold=2"),
    (lambda: P.gaussian_noise(torch.rand(2, 3, 8, 8), std=-1), "std=-1"),
    (lambda: P.cutout(torch.rand(2, 3, 8, 8), size=1.5), "size=1.5"),
    (lambda: P.simclr_views(torch.rand(2, 3, 8, 8), generator="seed"), "torch.Generator"),
    (lambda: P.ViewRecipe(jitter_p=2.0), "jitter_p=2.0"),
    (lambda: P.ViewRecipe(blur_kernel=4), "odd"),
    (lambda: P.simclr_views(torch.rand(2, 3, 8, 8), colour=1), "setting='colour'"),
    (lambda: P.multicrop(torch.rand(2, 3, 8, 8), n_global=0), "n_global=0"),
]


@pytest.mark.parametrize("call,match", BAD)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_generator_on_other_device_is_rejected():
    with pytest.raises(ValueError, match="generator is on device 'cpu' but the data is on 'cuda"):
        _random.check_generator(torch.Generator(), torch.device("cuda:0"))


@pytest.mark.cuda
def test_cuda_views_with_cuda_generator():
    x = images(b=16).cuda()
    a = P.simclr_views(x, generator=gen(0, "cuda"))
    b = P.simclr_views(x, generator=gen(0, "cuda"))
    assert a[0].device.type == "cuda" and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match="generator"):
        P.simclr_views(x, generator=gen(0))
    out = P.color_jitter(x, p=1.0, generator=gen(1, "cuda"))  # same maths as on the CPU
    g = gen(1, "cuda")
    torch.testing.assert_close(out.cpu(), V.color_jitter_(x.clone(), 0.4, 0.4, 0.4, 0.1, 1.0, g).cpu())
    assert math.isfinite(out.sum().item())
