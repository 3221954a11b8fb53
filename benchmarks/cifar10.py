"""SimCLR and BYOL with ResNet-18 (CIFAR stem) on CIFAR-10: kNN accuracy and wall time per epoch.

    python benchmarks/cifar10.py --epochs 200                      # a real user's run (GPU, data/cifar10)
    python benchmarks/cifar10.py --stand-in --epochs 2             # timing only, no CIFAR files needed

sslkit makes the views on the GPU from a uint8 dataset that lives on the GPU whole. The reference
is the usual per-sample pipeline: torchvision PIL transforms in a DataLoader (workers = CPU cores).
Everything but the data pipeline is the same on both sides, so the printed ratio measures the data
pipeline alone: the baseline's transforms follow the SimCLR model's own ``ViewRecipe`` (crop
scale and ratio, flip, jitter strengths and probability, grayscale, blur kernel and sigma,
solarize), and its views go through the very same training step (``sslkit.train.step.TrainStep``:
model, channels_last layout on CUDA, fused AdamW with the same betas, bf16/fp16 autocast, compile)
as ``sslkit.fit``. Its epoch time is extrapolated from ``--baseline-batches`` batches.
``--stand-in`` replaces CIFAR-10 by 50,000 procedurally drawn 32x32 RGB images (``shapes``) of the
same size and count: wall times are comparable, accuracies are not CIFAR-10's.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import sslkit
from sslkit.train import Callback


def load(args: argparse.Namespace):
    if args.stand_in:
        train = sslkit.data.load("shapes", split="train", n=args.stand_in_train)
        test = sslkit.data.load("shapes", split="test", n=args.stand_in_test)
    else:
        train = sslkit.data.load("cifar10", split="train", root=args.root)
        test = sslkit.data.load("cifar10", split="test", root=args.root)
    return train, test


def knn(method, train, test) -> tuple[float, float]:
    ftr, ltr = sslkit.eval.extract_features(method, train)
    fte, lte = sslkit.eval.extract_features(method, test)
    return (sslkit.eval.knn_accuracy(ftr, ltr, fte, lte, k=20),
            sslkit.eval.knn_accuracy(ftr, ltr, fte, lte, k=200))


class EpochClock(Callback):
    """Wall time at every epoch boundary (one device sync per epoch, outside the timed steps)."""

    def __init__(self, steps_per_epoch: int) -> None:
        self.steps_per_epoch, self.times = steps_per_epoch, []

    def on_step_end(self, state) -> None:
        if state.step % self.steps_per_epoch == 0:
            if state.data.device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())


def view_recipe(method):
    """The recipe the sslkit method trains with (a ViewRecipe)."""
    from sslkit.methods.base import resolve_views
    from sslkit.pretext.recipes import BYOL_1, SIMCLR, WEAK, ViewRecipe

    recipe = getattr(method, "view_recipe", None)
    if isinstance(recipe, (list, tuple)):
        recipe = recipe[0]
    if recipe is None:  # methods without the attribute: resolve the config's "views" setting
        name = resolve_views(method.config.views, 32, paper="simclr")
        recipe = name if callable(name) else {"simclr": SIMCLR, "byol": BYOL_1, "weak": WEAK}[name]
    if not isinstance(recipe, ViewRecipe):
        raise SystemExit(f"the baseline needs a ViewRecipe to copy; the method uses {recipe!r}")
    return recipe


def torchvision_views(recipe, image_size: int):
    """The same augmentations, per sample on PIL images, as the usual CIFAR SimCLR code does."""
    from torchvision import transforms as T

    from sslkit.pretext.views import default_kernel_size

    size = recipe.size or image_size
    ops = [T.RandomResizedCrop(size, scale=recipe.scale, ratio=recipe.ratio)]
    if recipe.flip_p > 0:
        ops.append(T.RandomHorizontalFlip(recipe.flip_p))
    if recipe.jitter_p > 0:
        ops.append(T.RandomApply([T.ColorJitter(recipe.brightness, recipe.contrast,
                                                recipe.saturation, recipe.hue)], p=recipe.jitter_p))
    if recipe.gray_p > 0:
        ops.append(T.RandomGrayscale(recipe.gray_p))
    if recipe.blur_p > 0:
        side = size if isinstance(size, int) else min(size)
        kernel = recipe.blur_kernel or default_kernel_size(side, side)
        ops.append(T.RandomApply([T.GaussianBlur(kernel, sigma=recipe.blur_sigma)], p=recipe.blur_p))
    if recipe.solarize_p > 0:
        ops.append(T.RandomSolarize(round(255 * recipe.solarize_threshold), p=recipe.solarize_p))
    ops.append(T.ToTensor())
    if recipe.noise_p > 0 and recipe.noise_std > 0:
        ops.append(T.RandomApply([T.Lambda(lambda v: (v + recipe.noise_std * torch.randn_like(v))
                                           .clamp(0, 1))], p=recipe.noise_p))
    if recipe.cutout_p > 0:
        ops.append(T.RandomErasing(p=recipe.cutout_p, scale=(recipe.cutout_size ** 2,) * 2, ratio=(1, 1)))
    return T.Compose(ops)


class Feed:
    """A ``views`` callable that hands out pre-made views: view 1, then view 2, per batch."""

    def __init__(self) -> None:
        self.pending: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        return self.pending.pop(0)


def baseline_epoch_time(args, train, dev: torch.device, n_batches: int) -> float:
    """Seconds per epoch of the per-sample PIL + DataLoader pipeline feeding sslkit's own step."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from sslkit.train.fit import build_optimizer, place
    from sslkit.train.run import Settings
    from sslkit.train.step import TrainStep, resolve_precision

    torch.manual_seed(0)
    feed = Feed()
    method = sslkit.create("simclr", data=train, backbone=args.backbone)
    aug = torchvision_views(view_recipe(method), train.sample_shape[-1])  # the recipe sslkit trains with
    method = sslkit.create("simclr", data=train, backbone=args.backbone, views=feed)
    precision = resolve_precision(None, dev)
    compile = dev.type == "cuda" if not args.compile else True
    s = Settings(epochs=None, steps=n_batches, minutes=None, batch_size=args.batch_size,
                 lr=method.default_lr * args.batch_size / 256, weight_decay=0.05, warmup=0.0,
                 optimizer="adamw", seed=0, checkpoint=None, checkpoint_every=None, on_nan="stop",
                 log_every=None, precision=precision, compile=compile, progress=False)
    method, _ = place(method, train.subset(slice(0, 2)), dev)      # channels_last on CUDA
    opt, _ = build_optimizer(method, s, dev)                          # fused AdamW, same betas
    step = TrainStep(method, method, opt, dev, precision, compile)
    images = train.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8

    class Pairs(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            img = Image.fromarray(np.ascontiguousarray(images[i]))
            return aug(img), aug(img)

    loader = DataLoader(Pairs(), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=os.cpu_count() or 1, pin_memory=dev.type == "cuda",
                        persistent_workers=True)
    layout = torch.channels_last if dev.type == "cuda" else torch.contiguous_format
    method.train()
    it = iter(loader)

    def one_step() -> None:
        v1, v2 = (v.to(dev, non_blocking=True).contiguous(memory_format=layout) for v in next(it))
        feed.pending = [v1, v2]
        step(v1, s.lr)  # training_step(v1): its views callable returns v1, then v2

    one_step()  # workers started, model compiled, cuDNN tuned: not timed (as sslkit's first epoch)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n_batches):
        one_step()
    sync()
    per_batch = (time.perf_counter() - t0) / n_batches
    return per_batch * (len(train) // args.batch_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="simclr,byol", help="comma-separated; empty: baseline only")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--root", default="data")
    p.add_argument("--stand-in", action="store_true", help="50k procedural 32x32 images instead of CIFAR-10")
    p.add_argument("--stand-in-train", type=int, default=50_000, help="stand-in train size (CIFAR-10: 50k)")
    p.add_argument("--stand-in-test", type=int, default=10_000, help="stand-in test size (CIFAR-10: 10k)")
    p.add_argument("--backbone", default="resnet18_cifar", help="the issue's target uses resnet18_cifar")
    p.add_argument("--baseline-batches", type=int, default=20, help="0 skips the per-sample baseline")
    p.add_argument("--compile", action="store_true", help="compile on the CPU too (always on with CUDA)")
    args = p.parse_args()

    dev = sslkit.device()
    train, test = load(args)
    gpu = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    from sslkit.train.step import resolve_precision
    precision = resolve_precision(None, dev)
    print(f"device: {dev} ({gpu}), precision {precision}; train {tuple(train.x.shape)}, test "
          f"{tuple(test.x.shape)}{' [stand-in]' if args.stand_in else ''}")
    rows = []
    steps_per_epoch = len(train) // args.batch_size
    for name in [m for m in args.methods.split(",") if m]:
        torch.manual_seed(0)
        method = sslkit.create(name, data=train, backbone=args.backbone)
        clock = EpochClock(steps_per_epoch)
        t0 = time.perf_counter()
        hist = sslkit.fit(method, train, epochs=args.epochs, batch_size=args.batch_size, device=dev,
                          compile=True if args.compile else None, progress=False, callbacks=[clock])
        wall = time.perf_counter() - t0
        # Epoch time from the epoch clock, skipping the first epoch (compilation, cuDNN autotuning).
        t = clock.times
        epoch_s = (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else wall
        k20, k200 = knn(method, train.to(dev), test.to(dev))
        rows.append((name, epoch_s, wall, k20, k200, hist.last_loss))
        print(f"{name}: {args.epochs} epochs in {wall:.0f}s, {epoch_s:.2f} s/epoch, "
              f"kNN@20 {k20:.3f}, kNN@200 {k200:.3f}, final loss {hist.last_loss:.3f}", flush=True)

    base = None
    if args.baseline_batches > 0:
        base = baseline_epoch_time(args, train, dev, args.baseline_batches)

    print(f"\n| method | epochs | s/epoch (sslkit) | kNN@20 | kNN@200 |\n|---|---|---|---|---|")
    for name, epoch_s, _, k20, k200, _ in rows:
        print(f"| {name} | {args.epochs} | {epoch_s:.2f} | {k20:.3f} | {k200:.3f} |")
    if base is not None:
        simclr = next((r[1] for r in rows if r[0] == "simclr"), None)
        ratio = f", sslkit is {base / simclr:.1f}x faster" if simclr else ""
        print(f"\nper-sample PIL DataLoader pipeline, same recipe, model, layout and precision "
              f"(SimCLR step, {os.cpu_count()} workers): {base:.2f} s/epoch{ratio}")


if __name__ == "__main__":
    main()
