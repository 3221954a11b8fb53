"""Spoken digits: what self-supervised features learn from unlabelled speech, speaker held out.

    python benchmarks/spoken_digits.py                                   # defaults below, ~1 h on 1 busy core
    python benchmarks/spoken_digits.py --methods wav2vec --steps 300     # one method

Trains each method with ``sslkit.fit`` for a fixed number of steps on the *train speakers* of
``spoken_digits`` (holdout="speaker": 4 speakers, 2,000 clips, no labels used), then:

* digit probe: linear probe (``sslkit.eval.label_efficiency``) on 1, 5, 10 and all labels per class
  of the train speakers, tested on the 2 held-out speakers (1,000 clips); mean ± std over seeds;
* speaker probe: linear probe of the speaker (6 classes) on the random split (every speaker in
  train and test; 20% of each digit x speaker cell in test), all labels.

Rows: raw inputs (wave samples, log-mel, MFCC), each architecture at random init, each trained
method. Prints the s/step of every run (1 thread). Results: benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch
import torch.nn.functional as F

import sslkit
from sslkit.data import audio
from sslkit.eval import baselines, extract_features, label_efficiency, linear_probe

# name -> (method, representation, batch, create() settings, backbone factory or None = the default:
# wave_transformer for wav2vec, spec_convnet (16-32-64, 8 frequency bands) for spectrograms)
RUNS = {
    "wav2vec": ("wav2vec", "wave", 32, {}, None),
    "simclr": ("simclr", "log_mel", 64, {}, None),
    "byol": ("byol", "log_mel", 64, {}, None),
    # CPC on 10 ms steps: conv1d with strides 5*4*4 = 80 samples (the default 4-sample steps make
    # 1,024 GRU steps per 0.5 s clip: ~9 s a step on one core)
    "cpc": ("cpc", "wave", 32, {}, lambda: sslkit.backbones.create("conv1d", strides=(5, 4, 4))),
}


def data(representation: str, holdout: str) -> tuple[sslkit.data.Dataset, sslkit.data.Dataset]:
    return tuple(sslkit.data.load("spoken_digits", split=s, representation=representation,
                                  holdout=holdout) for s in ("train", "test"))


@torch.no_grad()
def calibrate_batchnorm(net: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> torch.nn.Module:
    """BatchNorm running statistics = the averages over ``x`` (a fair random-init baseline: fresh
    layers' statistics are mean 0, variance 1, not those of the data)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None                                # cumulative average over the batches
    net.train()
    for chunk in x.split(batch):
        net(chunk)
    return net.eval()


def binned(net: torch.nn.Module, bins: int = 10):
    """Features that keep time order: the per-frame sequence averaged into ``bins`` bins, flattened."""
    return lambda x: F.adaptive_avg_pool1d(net.forward_sequence(x).transpose(1, 2), bins).flatten(1)


def speaker_probe(model, representation: str) -> float:
    train, test = data(representation, "random")
    tr, _ = extract_features(model, train)
    te, _ = extract_features(model, test)
    return linear_probe(tr, train.factors["speaker"], te, test.factors["speaker"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=list(RUNS), choices=list(RUNS))
    p.add_argument("--steps", type=int, nargs="+", default=[300], help="one per method, or one for all")
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    steps = dict(zip(args.methods, args.steps * len(args.methods) if len(args.steps) == 1 else args.steps))
    print(f"# spoken_digits benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} thread, load average {os.getloadavg()[0]:.1f}", flush=True)
    seeds = range(args.seeds)
    rows: dict[str, dict[str, object]] = {"wave": {}, "log_mel": {}}
    speakers: dict[str, float] = {}

    # raw inputs: the wave samples, the log-mel spectrogram, 13 MFCCs per frame (all flattened)
    for rep in ("wave", "log_mel"):
        tr, te = data(rep, "speaker")
        rows[rep][f"raw {rep}"] = (tr.x.flatten(1), te.x.flatten(1))
        if rep == "log_mel":
            rows[rep]["MFCC (13 x 52)"] = (audio.mfcc(tr.x).flatten(1), audio.mfcc(te.x).flatten(1))
            rtr, rte = data(rep, "random")
            for name, f in (("raw log_mel", lambda x: x.flatten(1)), ("MFCC (13 x 52)", lambda x: audio.mfcc(x).flatten(1))):
                speakers[name] = linear_probe(f(rtr.x), rtr.factors["speaker"], f(rte.x), rte.factors["speaker"])

    for key in args.methods:
        name, rep, batch, settings, make_backbone = RUNS[key]
        train, _ = data(rep, "speaker")
        torch.manual_seed(0)
        method = sslkit.create(name, data=train, backbone=make_backbone() if make_backbone else None, **settings)
        arch = f"{type(method.backbone).__name__}"
        rand = calibrate_batchnorm(baselines.random_init(method, seed=0), train.x)
        if f"random {arch}" not in rows[rep]:
            rows[rep][f"random {arch}"] = rand
            speakers[f"random {arch}"] = speaker_probe(rand, rep)
            if key == "wav2vec":
                rows[rep][f"random {arch}, 10 time bins"] = binned(rand)
        t0 = time.time()
        hist = sslkit.fit(method, train, steps=steps[key], batch_size=batch, device="cpu", progress=False,
                          monitor_collapse=False)
        secs = time.time() - t0
        label = f"{key} {steps[key]} steps"
        print(f"{label}: batch {batch}, {secs / steps[key]:.2f} s/step, loss {hist.loss[0]:.3f} -> "
              f"{hist.loss[-1]:.3f}", flush=True)
        rows[rep][label] = method
        speakers[label] = speaker_probe(method, rep)
        if key == "wav2vec":
            rows[rep][f"{label}, 10 time bins"] = binned(method.backbone)
            rows[rep][f"{label}, encoder latents"] = lambda x, m=method: m.backbone.latents(x).mean(1)

    for rep, encoders in rows.items():
        if len(encoders) < 2:
            continue
        train, test = data(rep, "speaker")
        res = label_efficiency(encoders, train, test, seeds=seeds, probe="linear", baselines=())
        print(f"\n## digit, linear probe, speakers {test.meta['test_speakers']} held out ({rep} input)")
        print(res.table())
    print("\n## speaker (6 classes), linear probe, random split, all labels")
    for name, acc in speakers.items():
        print(f"{name:<28} {100 * acc:5.1f}")


if __name__ == "__main__":
    main()
