"""Pretext ops for sound, batched on the device with per-sample random parameters.

Spectrogram views (``x`` float (B, C, F, T), e.g. log-mel in dB from ``sslkit.data.audio.log_mel``):

    >>> v = freq_mask(x, max_width=8, n_masks=2)       # SpecAugment: hide bands of frequencies
    >>> v = time_mask(x, max_width=10, n_masks=2)      # SpecAugment: hide stretches of time
    >>> v = time_shift(x, max_shift=10)                # move the sound earlier / later
    >>> v = gain(x, db=6.0)                            # louder / quieter (dB added everywhere)
    >>> v1, v2 = spectrogram_views(x)                  # all four: the "spectrogram" view recipe

Masked prediction on latent frames (wav2vec 2.0):

    >>> mask = mask_spans(B, S, mask_prob=0.065, span=10)     # (B, S) bool, spans of 10 frames
    >>> idx = sample_distractors(mask, num=20)               # (B, S, K) other masked frames

Image views do not apply to spectrograms: the two axes are frequency and time, not space, so a
flip reverses time, a rotation swaps pitch and time, and colour has no meaning. SpecAugment (Park
et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic Speech Recognition")
masks instead; masked values are set to each spectrogram's own mean, as in the paper (it masks
zeros on mean-normalised features).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sslkit import checks
from sslkit.pretext import _random


def _spectrograms(name: str, x: torch.Tensor) -> torch.Tensor:
    checks.tensor(name, x, ndim=4, dtypes="float")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{name} has an empty spectrogram (shape {tuple(x.shape)}); allowed: (B, C, F, T), F, T >= 1")
    return x


def _band_masks(x: torch.Tensor, dim: int, max_width: int, n_masks: int, p: float,
                generator: torch.Generator | None) -> torch.Tensor:
    """Bool (B, L) with ``n_masks`` bands per sample along ``dim`` (2 = frequency, 3 = time) of
    widths uniform in 0..max_width (0 = no mask), starts uniform where the band fits, each applied
    with probability ``p``."""
    B, L = x.shape[0], x.shape[dim]
    max_width = min(max_width, L)
    pos = torch.arange(L, device=x.device)                                   # (L,)
    hidden = torch.zeros(B, L, dtype=torch.bool, device=x.device)
    for _ in range(n_masks):
        width = _random.randint_below(max_width + 1, (B,), generator, x.device)       # (B,) 0..W
        start = _random.randint_below(L - width + 1, (B,), generator, x.device)       # (B,)
        on = _random.bernoulli(B, p, generator, x.device)                             # (B,)
        band = (pos >= start[:, None]) & (pos < (start + width)[:, None])            # (B, L)
        hidden |= band & on[:, None]
    return hidden


def _mask(x: torch.Tensor, dim: int, max_width: int, n_masks: int, p: float,
          generator: torch.Generator | None, name: str) -> torch.Tensor:
    _spectrograms("x", x)
    max_width = checks.integer(f"{name}.max_width", max_width, min=0)
    n_masks = checks.integer(f"{name}.n_masks", n_masks, min=0)
    p = checks.number(f"{name}.p", p, min=0.0, max=1.0)
    _random.check_generator(generator, x.device)
    hidden = _band_masks(x, dim, max_width, n_masks, p, generator)            # (B, L)
    shape = (x.shape[0], 1, -1, 1) if dim == 2 else (x.shape[0], 1, 1, -1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)                              # (B, 1, 1, 1)
    return torch.where(hidden.view(shape), mean, x)


def freq_mask(x: torch.Tensor, max_width: int = 8, n_masks: int = 2, p: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment frequency masking: ``n_masks`` bands of 0..``max_width`` frequency rows per sample
    set to that spectrogram's mean. (B, C, F, T) -> same shape, a new tensor."""
    return _mask(x, 2, max_width, n_masks, p, generator, "freq_mask")


def time_mask(x: torch.Tensor, max_width: int = 10, n_masks: int = 2, p: float = 1.0,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """SpecAugment time masking: ``n_masks`` stretches of 0..``max_width`` frames per sample set to
    that spectrogram's mean. (B, C, F, T) -> same shape, a new tensor."""
    return _mask(x, 3, max_width, n_masks, p, generator, "time_mask")


def time_shift(x: torch.Tensor, max_shift: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Move each spectrogram by its own whole number of frames in [-max_shift, max_shift]; frames
    shifted in from outside take the spectrogram's minimum (its silence level). (B, C, F, T)."""
    _spectrograms("x", x)
    max_shift = checks.integer("max_shift", max_shift, min=0)
    _random.check_generator(generator, x.device)
    B, C, Fr, T = x.shape
    shift = _random.randint_below(2 * max_shift + 1, (B,), generator, x.device) - max_shift  # (B,)
    src = torch.arange(T, device=x.device) - shift[:, None]                     # (B, T) source frame
    inside = (src >= 0) & (src < T)                                             # (B, T)
    idx = src.clamp(0, T - 1).view(B, 1, 1, T).expand(B, C, Fr, T)
    moved = x.gather(3, idx)                                                    # (B, C, F, T)
    silence = x.amin(dim=(1, 2, 3), keepdim=True)                               # (B, 1, 1, 1)
    return torch.where(inside.view(B, 1, 1, T), moved, silence)


def freq_warp(x: torch.Tensor, max_warp: float = 0.1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stretch or squeeze each spectrogram's frequency axis by its own factor a in
    [1 - max_warp, 1 + max_warp] about the lowest band: row f of the view is row f / a of the input
    (linear interpolation; rows past the top repeat the top row). A longer or shorter vocal tract
    moves every formant by about the same factor: vocal tract length perturbation (Jaitly & Hinton
    2013, "Vocal Tract Length Perturbation (VTLP) improves speech recognition"), here on mel rows."""
    _spectrograms("x", x)
    max_warp = checks.number("max_warp", max_warp, min=0.0, max=1.0, max_open=True)
    _random.check_generator(generator, x.device)
    B, C, Fr, T = x.shape
    a = _random.uniform(B, 1.0 - max_warp, 1.0 + max_warp, generator, x.device)          # (B,)
    src = (torch.arange(Fr, device=x.device) / a[:, None]).clamp(max=Fr - 1)           # (B, F) source row
    lo = src.floor().long().clamp(max=Fr - 2) if Fr > 1 else src.long()
    hi = (lo + 1).clamp(max=Fr - 1)
    w = (src - lo).to(x.dtype).view(B, 1, Fr, 1)                                        # (B, 1, F, 1)
    take = lambda idx: x.gather(2, idx.view(B, 1, Fr, 1).expand(B, C, Fr, T))
    return take(lo) * (1 - w) + take(hi) * w


def gain(x: torch.Tensor, db: float = 6.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add a per-sample gain uniform in [-db, db] decibels to a spectrogram in dB (B, C, F, T):
    the same sound, louder or quieter."""
    _spectrograms("x", x)
    db = checks.number("db", db, min=0.0)
    _random.check_generator(generator, x.device)
    g = _random.uniform(x.shape[0], -db, db, generator, x.device, x.dtype)      # (B,)
    return x + g.view(-1, 1, 1, 1)


@dataclass
class SpectrogramViews:
    """One spectrogram view: time shift -> gain -> frequency masks -> time masks, each with fresh
    per-sample parameters. Defaults for ~0.5 s clips at 100 frames/s with 40 mel bands.

    SpecAugment's LibriSpeech policy masks 2 x up to 27 of 80 mel bands and 2 x up to 100 frames of
    utterances ~15 s long; here 2 x up to 8 of 40 bands (a fifth, as theirs is a third) and 2 x up
    to 10 frames (100 ms, a fifth of a 52-frame word: a mask may hide a vowel, not the whole word).
    """
    max_shift: int = 10        # frames (100 ms): words sit anywhere in their 0.5 s clip
    gain_db: float = 6.0       # +-6 dB: a speaker a little closer or farther from the microphone
    max_warp: float = 0.0      # frequency warp factor in [1 - w, 1 + w] (VTLP uses 0.9-1.1)
    freq_width: int = 8        # mel bands per frequency mask
    freq_masks: int = 2
    time_width: int = 10       # frames per time mask
    time_masks: int = 2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in ("gain_db", "max_warp"):
                checks.number(f.name, getattr(self, f.name), min=0.0, max=None if f.name == "gain_db" else 0.99)
            else:
                checks.integer(f.name, getattr(self, f.name), min=0)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        v = time_shift(x, self.max_shift, generator)
        if self.max_warp > 0:
            v = freq_warp(v, self.max_warp, generator)
        v = gain(v, self.gain_db, generator)
        v = freq_mask(v, self.freq_width, self.freq_masks, 1.0, generator)
        return time_mask(v, self.time_width, self.time_masks, 1.0, generator)


SPECTROGRAM = SpectrogramViews()


def spectrogram_views(x: torch.Tensor, generator: torch.Generator | None = None,
                      **overrides) -> tuple[torch.Tensor, torch.Tensor]:
    """Two views of spectrograms (B, C, F, T) from :class:`SpectrogramViews` (settings overridable)."""
    recipe = dataclasses.replace(SPECTROGRAM, **overrides) if overrides else SPECTROGRAM
    return recipe(x, generator), recipe(x, generator)


# -- wav2vec 2.0: spans of masked latent frames and the distractors of each ---------------------
def mask_spans(batch_size: int, length: int, mask_prob: float = 0.065, span: int = 10,
               min_spans: int = 2, device: torch.device | str | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """wav2vec 2.0 masking: bool (B, S), True = masked frame.

    Each sample draws ``n = floor(mask_prob * S + u)`` (u uniform in [0, 1), at least
    ``min_spans``) distinct start frames among those where a whole span fits, and masks ``span``
    frames from each; spans may overlap (Baevski et al. 2020, section 4.2: p = 0.065 and M = 10
    mask about 49% of the frames).
    """
    batch_size = checks.integer("batch_size", batch_size, min=1)
    span = checks.integer("span", span, min=1)
    length = checks.integer("length", length, min=span)
    mask_prob = checks.number("mask_prob", mask_prob, min=0.0, max=1.0)
    starts_available = length - span + 1
    min_spans = checks.integer("min_spans", min_spans, min=0, max=starts_available)
    device = torch.device("cpu") if device is None else torch.device(device)
    _random.check_generator(generator, device)
    u = torch.rand(batch_size, generator=generator, device=device)                       # (B,)
    count = (mask_prob * length + u).floor().long().clamp(min_spans, starts_available)   # (B,)
    valid = torch.ones(batch_size, starts_available, dtype=torch.bool, device=device)
    starts = _random.exact_choice(valid, count, generator).long()                        # (B, S - M + 1)
    # frame t is masked when a span starts in (t - span, t]: difference of a running count of starts
    c = F.pad(starts, (0, span - 1)).cumsum(dim=1)                                       # (B, S)
    return (c - F.pad(c, (span, 0))[:, :length]) > 0


def sample_distractors(mask: torch.Tensor, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Distractor frames for masked prediction: long (B, S, K) time indices.

    For every frame (b, t), ``num`` frames drawn uniformly with replacement from the *other* masked
    frames of clip b (wav2vec 2.0: "uniformly sampled from other masked time steps of the same
    utterance"). Only the entries of masked frames are meant to be used. A clip with a single masked
    frame has no other: its distractors are that frame itself (a loss then ignores them, see
    ``sslkit.losses.masked_contrastive``).
    """
    checks.tensor("mask", mask, ndim=2, dtypes=(torch.bool,))
    num = checks.integer("num", num, min=1)
    _random.check_generator(generator, mask.device)
    B, S = mask.shape
    n = mask.sum(dim=1)                                                        # (B,) masked frames
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)         # (B, S) masked first, in time order
    rank = mask.long().cumsum(dim=1) - 1                                       # (B, S) rank among masked
    r = _random.randint_below((n - 1).clamp(min=1).view(B, 1, 1), (B, S, num), generator, mask.device)
    r = r + (r >= rank[:, :, None]).long()                                     # skip the frame itself
    r = torch.minimum(r, (n - 1).clamp(min=0).view(B, 1, 1))                   # n = 1: the frame itself
    return order.gather(1, r.view(B, S * num)).view(B, S, num)


__all__ = ["freq_mask", "time_mask", "time_shift", "freq_warp", "gain", "SpectrogramViews", "SPECTROGRAM",
           "spectrogram_views", "mask_spans", "sample_distractors"]
