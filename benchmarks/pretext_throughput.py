"""Views per second: sslkit's batched SimCLR recipe vs the usual per-sample torchvision pipeline.

    python benchmarks/pretext_throughput.py                  # CPU, both pipelines side by side
    python benchmarks/pretext_throughput.py --device cuda    # + augmentation share of a ResNet-18 step

Same operations on the same 32x32 RGB images (``sslkit.data.load("shapes")``), two views per
image, batch 256:
- sslkit: ``simclr_views`` on the whole batch (per-sample parameters as tensors), uint8 -> float
  conversion included;
- baseline: PIL images through torchvision.transforms (RandomResizedCrop, RandomHorizontalFlip,
  ColorJitter p=0.8, RandomGrayscale p=0.2, GaussianBlur p=0.5, ToTensor) in a DataLoader with
  num_workers = CPU cores (worker start-up excluded: timing starts after the first batch).
With CUDA it also times a ResNet-18 (CIFAR stem) training step at batch 512 (forward + backward +
SGD, bf16 autocast) and prints the augmentation time as a share of it.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
import torch.nn as nn
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import sslkit.pretext as P
from sslkit.pretext.views import default_kernel_size

BATCH = 256  # the usual SimCLR-on-CIFAR batch
TRAIN_BATCH = 512  # the GPU comparison: SimCLR's CIFAR batch size


def load_images(n: int) -> torch.Tensor:
    """(n, 3, 32, 32) uint8: the shapes dataset, or random images if it is not available."""
    try:
        import sslkit.data
        return sslkit.data.load("shapes", n=n).images
    except Exception as err:  # noqa: BLE001 - the benchmark still runs without the dataset
        print(f"(shapes dataset unavailable: {err}; using random images)")
        return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)


class TwoViews(Dataset):
    """Per-sample pipeline: PIL image -> two torchvision-augmented tensors."""

    def __init__(self, images: torch.Tensor):
        self.images = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in images]
        k = default_kernel_size(32, 32)  # same kernel as sslkit's blur (3 px at 32 px)
        self.transform = T.Compose([
            T.RandomResizedCrop(32, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.8, 0.8, 0.8, 0.2)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomApply([T.GaussianBlur(k, sigma=(0.1, 2.0))], p=0.5),
            T.ToTensor(),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        im = self.images[i]
        return self.transform(im), self.transform(im)


def bench_torchvision(images: torch.Tensor, batches: int, workers: int) -> float:
    loader = DataLoader(TwoViews(images), batch_size=BATCH, shuffle=True, num_workers=workers,
                        drop_last=True, persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # start the workers, first batch not timed
    done, t0 = 0, time.perf_counter()
    while done < batches:
        try:
            v1, v2 = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        done += 1
    return 2 * BATCH * batches / (time.perf_counter() - t0)


def cpu_views_per_second_torchvision(images: torch.Tensor, n: int = 512) -> float:
    """Views per CPU-second of the per-sample pipeline in this process (what each worker does).

    CPU time, not wall time, so it stays meaningful on a machine shared with other jobs."""
    ds = TwoViews(images[:n])
    ds[0]
    t0 = time.process_time()
    for i in range(len(ds)):
        ds[i]
    return 2 * len(ds) / (time.process_time() - t0)


def cpu_views_per_second_sslkit(images: torch.Tensor, batches: int) -> float:
    """Views per CPU-second (all threads) of simclr_views on the CPU."""
    t0 = time.process_time()
    bench_sslkit(images, batches, torch.device("cpu"))
    return 2 * BATCH * (batches + 3) / (time.process_time() - t0)


def bench_sslkit(images: torch.Tensor, batches: int, device: torch.device, batch: int = BATCH) -> float:
    data = images.to(device)
    g = torch.Generator(device=device).manual_seed(0)

    def step(i: int):
        idx = torch.randint(0, data.shape[0], (batch,), generator=g, device=device)
        x = data[idx].float().div_(255)  # (B, 3, 32, 32) in [0, 1]
        return P.simclr_views(x, generator=g)

    for i in range(3):  # warm-up
        step(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(batches):
        step(i)
    sync(device)
    return 2 * batch * batches / (time.perf_counter() - t0)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resnet18_cifar() -> nn.Module:
    try:
        from sslkit.backbones import create
        return create("resnet18_cifar")
    except Exception:  # noqa: BLE001 - fall back to a local copy of the same network
        import torchvision
        net = torchvision.models.resnet18(num_classes=10)
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # CIFAR stem: 3x3 stride 1 ...
        net.maxpool = nn.Identity()  # ... and no max-pool
        return net


def bench_train_step(device: torch.device, steps: int) -> float:
    """Seconds per ResNet-18 training step at batch 512 (bf16 autocast, SGD)."""
    net = resnet18_cifar().to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(TRAIN_BATCH, 3, 32, 32, device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = net(x).float().pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):  # warm-up (cuDNN autotuning, allocator)
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument("--batches", type=int, default=20, help="timed batches per pipeline")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="DataLoader workers (baseline)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for sslkit (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    images = load_images(4 * BATCH)
    print(f"SimCLR views of 32x32 RGB, batch {BATCH}, {args.batches} batches, {os.cpu_count()} CPU cores, "
          f"torch threads {torch.get_num_threads()}")

    ssl_cpu = bench_sslkit(images, args.batches, torch.device("cpu"))
    tv = bench_torchvision(images, args.batches, args.workers)
    print(f"{'pipeline':<44}{'views/s':>12}{'ratio':>8}")
    print(f"{f'torchvision PIL, DataLoader({args.workers} workers)':<44}{tv:>12,.0f}{1.0:>8.1f}")
    print(f"{'sslkit simclr_views, cpu':<44}{ssl_cpu:>12,.0f}{ssl_cpu / tv:>8.1f}")
    tv_cpu, ssl_cpu_s = cpu_views_per_second_torchvision(images), cpu_views_per_second_sslkit(images, args.batches)
    print(f"{'per CPU-second (robust to a busy machine):':<44}{'views/cpu-s':>12}")
    print(f"{'torchvision PIL, per sample':<44}{tv_cpu:>12,.0f}{1.0:>8.1f}")
    print(f"{'sslkit simclr_views, cpu':<44}{ssl_cpu_s:>12,.0f}{ssl_cpu_s / tv_cpu:>8.1f}")
    if device.type == "cuda":
        ssl_gpu = bench_sslkit(images, max(args.batches, 50), device)
        print(f"{'sslkit simclr_views, ' + torch.cuda.get_device_name(device):<44}{ssl_gpu:>12,.0f}"
              f"{ssl_gpu / tv:>8.1f}")
        aug = 2 * TRAIN_BATCH / bench_sslkit(images, 50, device, batch=TRAIN_BATCH)  # s per 2 views of 512
        train = bench_train_step(device, 20)
        print(f"ResNet-18 (CIFAR stem) train step, batch {TRAIN_BATCH}, bf16: {train * 1e3:.1f} ms; "
              f"SimCLR views for it (2 x {TRAIN_BATCH}): {aug * 1e3:.2f} ms = {100 * aug / train:.1f}% of the step")


if __name__ == "__main__":
    main()
