"""Audio features in plain torch, on the tensor's device: mu-law, mel filterbank, log-mel, MFCC.

    >>> wave = ds.signals[:8]                            # (B, 1, T) float in [-1, 1], 8 kHz
    >>> spec = log_mel(wave)                             # (B, 1, 40, T // 80 + 1) in dB
    >>> coeffs = mfcc(spec)                              # (B, 1, 13, frames)

Defaults follow speech practice at 8 kHz: 25 ms windows (200 samples) every 10 ms (80 samples),
a 256-point FFT, 40 triangular mel bands from 0 Hz to the Nyquist frequency (4 kHz) on the HTK mel
scale. ``torchaudio`` is not needed: the filterbank is a (n_mels, n_freqs) matrix built here.
"""
from __future__ import annotations

import math

import torch

from sslkit import checks

SAMPLE_RATE = 8000
MU = 255            # mu-law companding constant of ITU-T G.711 (8-bit telephone speech)
WIN_LENGTH = 200    # 25 ms at 8 kHz: the usual speech analysis window
HOP_LENGTH = 80     # 10 ms at 8 kHz: the usual frame rate (100 frames per second)
N_FFT = 256         # next power of two above the window (31.25 Hz bins at 8 kHz)
N_MELS = 40         # 40 bands: the common choice for 8-16 kHz speech; each >= 1 FFT bin wide here
FLOOR_DB = -60.0    # log floor: ~60 dB below a full-scale tone, under the recordings' noise floor


# -- mu-law: 8-bit storage of [-1, 1] waves with log-spaced levels -------------------------------
# Companding as ITU-T G.711 (mu = 255), quantised "mid-tread": codes 0..254 with code 127 = exactly 0,
# so digital silence (the zero padding of short clips) stays exactly 0 after decoding. (256 levels
# would have no zero level: silence would decode to a tiny constant offset.)
ZERO_CODE = 127


def mu_law_encode(x: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """Float waves in [-1, 1] -> uint8 codes 0..254: ``y = sign(x) ln(1 + mu|x|) / ln(1 + mu)`` in
    [-1, 1], then ``code = 127 + round(127 y)``. Quiet samples get fine steps, loud ones coarse ones
    (about 38 dB signal-to-noise at any level, like 12-13 bit linear audio near silence)."""
    checks.tensor("x", x, dtypes="float")
    mu = checks.integer("mu", mu, min=1)
    y = torch.sign(x) * torch.log1p(mu * x.abs().clamp(max=1.0)) / math.log1p(mu)   # [-1, 1]
    return (ZERO_CODE + (y * ZERO_CODE).round()).to(torch.uint8)


def mu_law_decode(codes: torch.Tensor, mu: int = MU) -> torch.Tensor:
    """uint8 codes 0..254 -> float32 waves in [-1, 1] (the inverse of :func:`mu_law_encode` up to
    the quantisation step; code 127 -> 0 exactly)."""
    checks.tensor("codes", codes, dtypes=(torch.uint8,))
    mu = checks.integer("mu", mu, min=1)
    y = (codes.float() - ZERO_CODE) / ZERO_CODE
    return torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu


# -- mel scale and filterbank ----------------------------------------------------------------------
def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 log10(1 + f / 700)`` (about linear below 1 kHz, logarithmic above)."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor | float) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (torch.as_tensor(m, dtype=torch.float64) / 2595.0) - 1.0)


def mel_centers(n_mels: int = N_MELS, sample_rate: int = SAMPLE_RATE, f_min: float = 0.0,
                f_max: float | None = None) -> torch.Tensor:
    """The n_mels + 2 band edges in Hz, float64: band m rises from edge m, peaks at edge m + 1 and
    falls to zero at edge m + 2; the edges are equally spaced on the mel scale."""
    n_mels = checks.integer("n_mels", n_mels, min=1)
    sample_rate = checks.integer("sample_rate", sample_rate, min=1)
    f_max = sample_rate / 2 if f_max is None else f_max
    checks.number("f_min", f_min, min=0.0)
    checks.number("f_max", f_max, min=f_min, max=sample_rate / 2, min_open=True)
    mels = torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64)
    return mel_to_hz(mels)


def mel_filterbank(n_mels: int = N_MELS, n_fft: int = N_FFT, sample_rate: int = SAMPLE_RATE,
                   f_min: float = 0.0, f_max: float | None = None,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Triangular mel filters as a matrix (n_mels, n_fft // 2 + 1): ``mel_power = fb @ power``.

    Filter m is 0 at edge m, 1 at edge m + 1, 0 at edge m + 2 (:func:`mel_centers`), linear in Hz in
    between, sampled at the FFT bin frequencies ``k * sample_rate / n_fft`` (peak height 1, no area
    normalisation: HTK / Kaldi convention). Raises if a band falls between two bins (all zeros):
    use fewer bands or a larger ``n_fft``.
    """
    n_fft = checks.integer("n_fft", n_fft, min=2)
    edges = mel_centers(n_mels, sample_rate, f_min, f_max)                    # (M + 2,)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft  # (F,)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]        # (M, 1) each
    rising = (freqs - lo) / (mid - lo)                                        # (M, F)
    falling = (hi - freqs) / (hi - mid)                                       # (M, F)
    fb = torch.minimum(rising, falling).clamp(min=0.0)                        # (M, F)
    empty = (fb.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"n_mels={n_mels} with n_fft={n_fft} at sample_rate={sample_rate} leaves mel "
                         f"band(s) {empty} without any FFT bin; use fewer bands or a larger n_fft")
    return fb.to(device=device, dtype=torch.float32)


# -- spectrograms -----------------------------------------------------------------------------------
def _waves(name: str, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, T) or (B, T) float -> (B, T)."""
    checks.tensor(name, x, ndim=(2, 3), dtypes="float")
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(f"{name} has {x.shape[1]} channels (shape {tuple(x.shape)}); allowed: "
                             f"mono waves (B, 1, T) or (B, T)")
        x = x[:, 0]
    return x


def log_mel(x: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS, n_fft: int = N_FFT,
            win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH,
            floor_db: float = FLOOR_DB) -> torch.Tensor:
    """Log-mel spectrogram in dB of waves ``x`` (B, 1, T) or (B, T) -> (B, 1, n_mels, frames).

    Hann window of ``win_length`` samples zero-padded to ``n_fft``, every ``hop_length`` samples,
    frames centred on multiples of the hop (``frames = T // hop_length + 1``; the wave is
    zero-padded at both ends). Power ``|STFT|^2`` -> mel bands -> ``10 log10``, floored at
    ``floor_db`` (digital silence would otherwise reach -inf). Runs on ``x.device``.
    A full-scale sine reads about +34 dB in its band (window gain ``(win_length / 2)^2``).
    """
    w = _waves("x", x)                                                        # (B, T)
    win_length = checks.integer("win_length", win_length, min=1)
    n_fft = checks.integer("n_fft", n_fft, min=win_length)
    hop_length = checks.integer("hop_length", hop_length, min=1)
    floor_db = checks.number("floor_db", floor_db)
    if w.shape[1] < 1:
        raise ValueError(f"x has no samples (shape {tuple(x.shape)})")
    window = torch.hann_window(win_length, periodic=True, device=w.device, dtype=torch.float32)
    spec = torch.stft(w.float(), n_fft, hop_length, win_length, window, center=True,
                      pad_mode="constant", return_complex=True)                # (B, F, frames)
    power = spec.real.square() + spec.imag.square()                           # (B, F, frames)
    fb = mel_filterbank(n_mels, n_fft, sample_rate, device=w.device)           # (M, F)
    mel = torch.einsum("mf,bft->bmt", fb, power)                              # (B, M, frames)
    db = 10.0 * torch.log10(mel.clamp(min=10.0 ** (floor_db / 10)))
    return db.unsqueeze(1).to(x.dtype)                                       # (B, 1, M, frames)


def dct_matrix(n_out: int, n_in: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Orthonormal DCT-II rows (n_out, n_in): ``c_k = sqrt(2/N) s_k sum_n x_n cos(pi k (2n + 1) / 2N)``,
    ``s_0 = 1/sqrt(2)``, else 1."""
    n_out = checks.integer("n_out", n_out, min=1)
    n_in = checks.integer("n_in", n_in, min=n_out)
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)[:, None]
    d = torch.cos(math.pi * k * (2 * n + 1) / (2 * n_in)) * math.sqrt(2.0 / n_in)  # (n_out, n_in)
    d[0] /= math.sqrt(2.0)
    return d.to(device=device, dtype=torch.float32)


def mfcc(spec_db: torch.Tensor, n_mfcc: int = 13) -> torch.Tensor:
    """MFCCs: DCT-II over the mel bands of a log-mel spectrogram (B, 1, M, frames) in dB ->
    (B, 1, n_mfcc, frames). 13 coefficients: the classic speech-recognition front end (the
    spectral envelope; the fine harmonic structure of the voice sits in the higher ones)."""
    checks.tensor("spec_db", spec_db, ndim=4, dtypes="float")
    if spec_db.shape[1] != 1:
        raise ValueError(f"spec_db has {spec_db.shape[1]} channels (shape {tuple(spec_db.shape)}); "
                         f"allowed: (B, 1, n_mels, frames)")
    n_mfcc = checks.integer("n_mfcc", n_mfcc, min=1, max=spec_db.shape[2])
    d = dct_matrix(n_mfcc, spec_db.shape[2], spec_db.device)                  # (K, M)
    return torch.einsum("km,bcmt->bckt", d, spec_db.float()).to(spec_db.dtype)


__all__ = ["SAMPLE_RATE", "ZERO_CODE", "mu_law_encode", "mu_law_decode", "hz_to_mel", "mel_to_hz", "mel_centers",
           "mel_filterbank", "log_mel", "dct_matrix", "mfcc"]
