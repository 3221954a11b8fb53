"""SimCLR and BYOL with ResNet-18 (CIFAR stem) on CIFAR-10: kNN accuracy and wall time per epoch.

    python benchmarks/cifar10.py --epochs 200                      # a real user's run (GPU, data/cifar10)
    python benchmarks/cifar10.py --stand-in --epochs 2             # timing only, no CIFAR files needed

sslkit makes the views on the GPU from a uint8 dataset that lives on the GPU whole. The reference
is the usual per-sample pipeline: torchvision PIL transforms in a DataLoader (workers = CPU cores)
feeding the same model and loss; its epoch time is extrapolated from ``--baseline-batches`` batches.
``--stand-in`` replaces CIFAR-10 by 50,000 procedurally drawn 32x32 RGB images (``shapes``) of the
same size and count: wall times are comparable, accuracies are not CIFAR-10's.
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import sslkit
from sslkit import losses


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


def baseline_epoch_time(method, train, batch_size: int, n_batches: int, dev: torch.device) -> float:
    """Seconds per epoch of the per-sample PIL + DataLoader pipeline feeding the same SimCLR step."""
    import numpy as np
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    aug = T.Compose([  # the SimCLR recipe, per sample, as in the usual CIFAR SimCLR code
        T.RandomResizedCrop(32, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5), T.ToTensor()])
    images = train.images.permute(0, 2, 3, 1).numpy()  # (N, H, W, C) uint8

    class Pairs(Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            img = Image.fromarray(np.ascontiguousarray(images[i]))
            return aug(img), aug(img)

    loader = DataLoader(Pairs(), batch_size=batch_size, shuffle=True, drop_last=True,
                        num_workers=os.cpu_count() or 1, pin_memory=dev.type == "cuda",
                        persistent_workers=True)
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3)
    method.train()
    it = iter(loader)
    next(it)  # start the workers before timing
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for _ in range(n_batches):
        v1, v2 = (v.to(dev, non_blocking=True) for v in next(it))
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            z = method.projector(method.backbone.forward_features(torch.cat([v1, v2])))
            loss = losses.nt_xent(*z.float().chunk(2), temperature=0.5)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync()
    per_batch = (time.perf_counter() - t0) / n_batches
    return per_batch * (len(train) // batch_size)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--methods", default="simclr,byol")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--root", default="data")
    p.add_argument("--stand-in", action="store_true", help="50k procedural 32x32 images instead of CIFAR-10")
    p.add_argument("--stand-in-train", type=int, default=50_000, help="stand-in train size (CIFAR-10: 50k)")
    p.add_argument("--stand-in-test", type=int, default=10_000, help="stand-in test size (CIFAR-10: 10k)")
    p.add_argument("--backbone", default="resnet18_cifar", help="the issue's target uses resnet18_cifar")
    p.add_argument("--baseline-batches", type=int, default=20, help="0 skips the per-sample baseline")
    p.add_argument("--compile", action="store_true")
    args = p.parse_args()

    dev = sslkit.device()
    train, test = load(args)
    gpu = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"device: {dev} ({gpu}); train {tuple(train.x.shape)}, test {tuple(test.x.shape)}"
          f"{' [stand-in]' if args.stand_in else ''}")
    rows = []
    for name in args.methods.split(","):
        torch.manual_seed(0)
        method = sslkit.create(name, data=train, backbone=args.backbone).to(dev)
        t0 = time.perf_counter()
        hist = sslkit.fit(method, train, epochs=args.epochs, batch_size=args.batch_size,
                          device=dev, compile=args.compile, progress=False)
        wall = time.perf_counter() - t0
        # Epoch time from the step clock, skipping the first epoch (compilation, cudnn autotuning).
        steps_per_epoch = len(train) // args.batch_size
        t = hist.time
        epoch_s = ((t[-1] - t[steps_per_epoch - 1]) / (args.epochs - 1) if args.epochs > 1
                   else t[-1])
        k20, k200 = knn(method, train.to(dev), test.to(dev))
        rows.append((name, epoch_s, wall, k20, k200, hist.last_loss))
        print(f"{name}: {args.epochs} epochs in {wall:.0f}s, {epoch_s:.2f} s/epoch, "
              f"kNN@20 {k20:.3f}, kNN@200 {k200:.3f}, final loss {hist.last_loss:.3f}", flush=True)

    base = None
    if args.baseline_batches > 0:
        torch.manual_seed(0)
        method = sslkit.create("simclr", data=train, backbone=args.backbone).to(dev)
        base = baseline_epoch_time(method, train, args.batch_size, args.baseline_batches, dev)

    print(f"\n| method | epochs | s/epoch (sslkit) | kNN@20 | kNN@200 |\n|---|---|---|---|---|")
    for name, epoch_s, _, k20, k200, _ in rows:
        print(f"| {name} | {args.epochs} | {epoch_s:.2f} | {k20:.3f} | {k200:.3f} |")
    if base is not None:
        simclr = next((r[1] for r in rows if r[0] == "simclr"), None)
        ratio = f", sslkit is {base / simclr:.1f}x faster" if simclr else ""
        print(f"\nper-sample PIL DataLoader pipeline (SimCLR step, {os.cpu_count()} workers): "
              f"{base:.2f} s/epoch{ratio}")


if __name__ == "__main__":
    main()
