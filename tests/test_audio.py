"""Audio features (mu-law, mel filterbank, log-mel, MFCC) and sound pretext ops (spectrogram views,
wav2vec span masks and distractors), checked against naive loop references and by their properties."""
from __future__ import annotations

import math

import pytest
import torch

from sslkit.data import audio
from sslkit.pretext import audio as P


# -- mu-law ---------------------------------------------------------------------------------------
def test_mu_law_round_trip_and_exact_silence():
    x = torch.linspace(-1, 1, 20001)
    codes = audio.mu_law_encode(x)
    assert codes.dtype == torch.uint8 and int(codes.min()) == 0 and int(codes.max()) == 254
    y = audio.mu_law_decode(codes)
    assert audio.mu_law_decode(audio.mu_law_encode(torch.zeros(3))).eq(0).all()   # silence stays 0
    # log-spaced levels: above 0.1, half a step is under 2.5% of the amplitude (~ln(256) / 127 / 2);
    # near silence under 1e-4 absolute (the first step is 1.75e-4)
    err = (y - x).abs()
    loud = x.abs() > 0.1
    assert (err[loud] / x[loud].abs()).max() < 0.025 and err[x.abs() < 1e-3].max() < 1e-4
    assert torch.equal(audio.mu_law_encode(y), codes)                    # decode is a right inverse
    assert torch.equal(audio.mu_law_encode(-x), 254 - codes)             # symmetric about code 127


# -- mel filterbank --------------------------------------------------------------------------------
def reference_filterbank(n_mels, n_fft, sr):
    """Loop over bands and bins, piecewise: rising edge, falling edge, zero."""
    mel = lambda f: 2595 * math.log10(1 + f / 700)
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)
    top = mel(sr / 2)
    edges = [hz(top * i / (n_mels + 1)) for i in range(n_mels + 2)]
    fb = torch.zeros(n_mels, n_fft // 2 + 1, dtype=torch.float64)
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sr / n_fft
            if lo <= f <= mid:
                fb[m, k] = (f - lo) / (mid - lo)
            elif mid < f <= hi:
                fb[m, k] = (hi - f) / (hi - mid)
    return fb


@pytest.mark.parametrize("n_mels,n_fft,sr", [(40, 256, 8000), (64, 512, 8000), (23, 512, 16000)])
def test_filterbank_matches_loop_reference(n_mels, n_fft, sr):
    fb = audio.mel_filterbank(n_mels, n_fft, sr)
    assert fb.shape == (n_mels, n_fft // 2 + 1)
    torch.testing.assert_close(fb.double(), reference_filterbank(n_mels, n_fft, sr), rtol=0, atol=1e-6)


def test_filterbank_properties_and_errors():
    assert float(audio.hz_to_mel(1000.0)) == pytest.approx(1000.0, abs=0.1)  # the scale's anchor
    torch.testing.assert_close(audio.mel_to_hz(audio.hz_to_mel(torch.tensor([0.0, 440.0, 3999.0]))),
                               torch.tensor([0.0, 440.0, 3999.0], dtype=torch.float64))
    fb = audio.mel_filterbank()
    peaks = fb.argmax(dim=1)
    assert (peaks.diff() > 0).all()                                     # bands rise in frequency
    assert (fb.max(dim=1).values > 0.5).all() and fb.min() >= 0
    with pytest.raises(ValueError, match="without any FFT bin"):
        audio.mel_filterbank(n_mels=128, n_fft=256)
    with pytest.raises(ValueError, match="f_max"):
        audio.mel_filterbank(f_max=5000.0)


@pytest.mark.parametrize("band", [3, 10, 20, 30, 38])
def test_a_pure_tone_lands_in_its_mel_band(band):
    freq = float(audio.mel_centers()[band + 1])                         # the band's peak frequency
    t = torch.arange(4096) / 8000
    wave = 0.5 * torch.sin(2 * math.pi * freq * t).view(1, 1, -1)
    spec = audio.log_mel(wave)                                           # (1, 1, 40, 52)
    level = spec[0, 0, :, 5:-5].mean(dim=1)                              # (40,) away from the ends
    assert int(level.argmax()) == band
    far = torch.ones(40, dtype=torch.bool)
    far[max(0, band - 2):band + 3] = False
    assert level[band] - level[far].max() > 20                           # > 20 dB above bands 3+ away


def test_log_mel_shape_floor_and_errors():
    x = torch.zeros(2, 1, 4096)
    spec = audio.log_mel(x)
    assert spec.shape == (2, 1, 40, 52) and (spec == audio.FLOOR_DB).all()   # silence: the floor
    loud = audio.log_mel(torch.ones(1, 4096) * 0.5)
    assert loud.shape == (1, 1, 40, 52) and loud.max() > 20
    # a full-scale sine reads about +34 dB in its band (window gain (200 / 2)^2, /4 for sin^2 ... )
    t = torch.arange(4096) / 8000
    sine = audio.log_mel(torch.sin(2 * math.pi * 1000 * t).view(1, 1, -1))
    assert 28 < sine.max() < 36
    with pytest.raises(ValueError, match="channels"):
        audio.log_mel(torch.zeros(2, 2, 4096))
    with pytest.raises(ValueError, match="floating"):
        audio.log_mel(torch.zeros(2, 1, 4096, dtype=torch.long))
    with pytest.raises(ValueError, match="rank"):
        audio.log_mel(torch.zeros(4096))


def test_mfcc_is_an_orthonormal_dct_over_bands():
    d = audio.dct_matrix(40, 40).double()
    torch.testing.assert_close(d @ d.T, torch.eye(40, dtype=torch.float64), rtol=0, atol=1e-6)
    spec = torch.randn(2, 1, 40, 7, dtype=torch.float64)
    c = audio.mfcc(spec, n_mfcc=13)
    assert c.shape == (2, 1, 13, 7)
    ref = torch.zeros(2, 1, 13, 7, dtype=torch.float64)
    for b in range(2):
        for k in range(13):
            for t in range(7):
                s = sum(spec[b, 0, n, t] * math.cos(math.pi * k * (2 * n + 1) / 80) for n in range(40))
                ref[b, 0, k, t] = s * math.sqrt(2 / 40) * (1 / math.sqrt(2) if k == 0 else 1)
    torch.testing.assert_close(c, ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n_mfcc"):
        audio.mfcc(spec, n_mfcc=41)


# -- spectrogram views -------------------------------------------------------------------------------
def spectrograms(b=6):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 1, 40, 52, generator=g) * 10 - 30


def test_masks_hide_bands_with_the_spectrogram_mean():
    x = spectrograms()
    g = torch.Generator().manual_seed(0)
    for fn, axis in ((P.freq_mask, 2), (P.time_mask, 3)):
        v = fn(x, 8, 1, generator=g)
        changed = (v != x)
        other = 3 if axis == 2 else 2
        rows = changed.any(dim=other)[:, 0]                              # (B, L): masked rows/columns
        for b in range(len(x)):
            hidden = rows[b].nonzero().flatten()
            if len(hidden):
                assert hidden.max() - hidden.min() + 1 == len(hidden) <= 8   # one contiguous band
                band = v[b].select(axis - 1, int(hidden[0]))
                assert torch.allclose(band, x[b].mean().expand_as(band))
        widths = rows.sum(dim=1)
        assert len(set(widths.tolist())) > 1                            # per-sample widths


def test_time_shift_matches_a_loop_reference():
    x = spectrograms(4)
    g = torch.Generator().manual_seed(3)
    v = P.time_shift(x, 5, generator=g)
    g = torch.Generator().manual_seed(3)
    shift = (torch.rand(4, generator=g) * 11).long() - 5              # the draws time_shift made
    for b in range(4):
        s = int(shift[b])
        for t in range(52):
            want = x[b, :, :, t - s] if 0 <= t - s < 52 else x[b].min().expand(1, 40)
            assert torch.equal(v[b, :, :, t], want)
    assert len(set(shift.tolist())) > 1


def test_freq_warp_matches_a_loop_reference():
    x = spectrograms(3)
    v = P.freq_warp(x, 0.1, generator=torch.Generator().manual_seed(5))
    a = torch.rand(3, generator=torch.Generator().manual_seed(5)) * 0.2 + 0.9   # the factors drawn
    for b in range(3):
        for f in range(40):
            src = min(f / float(a[b]), 39.0)
            lo = min(int(math.floor(src)), 38)
            w = src - lo
            want = x[b, :, lo] * (1 - w) + x[b, :, lo + 1] * w
            torch.testing.assert_close(v[b, :, f], want, rtol=1e-4, atol=1e-4)
    assert torch.equal(v[:, :, 0], x[:, :, 0])                            # the lowest band stays
    assert torch.equal(P.freq_warp(x, 0.0), x)
    with pytest.raises(ValueError, match="max_warp"):
        P.freq_warp(x, 1.0)


def test_gain_adds_one_level_per_sample():
    x = spectrograms()
    v = P.gain(x, db=6.0, generator=torch.Generator().manual_seed(0))
    d = (v - x).flatten(1)
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-4) and d.abs().max() <= 6.0
    assert d[:, 0].unique().numel() == len(x)


def test_spectrogram_views_per_sample_deterministic_and_on_device():
    x = spectrograms()
    v1, v2 = P.spectrogram_views(x, generator=torch.Generator().manual_seed(0))
    w1, w2 = P.spectrogram_views(x, generator=torch.Generator().manual_seed(0))
    assert torch.equal(v1, w1) and torch.equal(v2, w2) and v1.shape == x.shape
    assert not torch.equal(v1, v2)
    # two copies of the same spectrogram get different draws
    same = x[:1].expand(2, -1, -1, -1).contiguous()
    a, _ = P.spectrogram_views(same, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(a[0], a[1])
    assert P.spectrogram_views(x, time_masks=0, freq_masks=0, max_shift=0, gain_db=0.0)[0].equal(x)
    with pytest.raises(ValueError, match="rank 4"):
        P.time_mask(torch.zeros(2, 40, 52))
    with pytest.raises(ValueError, match="max_shift"):
        P.time_shift(x, -1)
    with pytest.raises(ValueError, match="generator"):
        P.gain(x, generator="seed 0")
    with pytest.raises(ValueError, match="freq_width"):
        P.SpectrogramViews(freq_width=-1)


# -- wav2vec span masks and distractors --------------------------------------------------------------
def runs(row):
    """Lengths of the runs of True in a 1-D bool tensor."""
    out, n = [], 0
    for v in row.tolist() + [False]:
        if v:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_mask_spans_as_the_paper():
    g = torch.Generator().manual_seed(0)
    m = P.mask_spans(2000, 50, mask_prob=0.065, span=10, generator=g)
    assert m.shape == (2000, 50) and m.dtype == torch.bool
    # about half the frames (paper: ~49% for p = 0.065, M = 10 on long utterances; the 2-span
    # minimum raises it a little on 50 frames)
    assert 0.45 < m.float().mean() < 0.58
    for row in m[:200]:
        assert all(r >= 10 for r in runs(row)) and row.sum() >= 10     # whole spans, at least one
    assert len({tuple(r.tolist()) for r in m[:50]}) == 50              # per-sample masks
    g = torch.Generator().manual_seed(0)
    assert torch.equal(P.mask_spans(2000, 50, generator=g), m)         # deterministic
    one = P.mask_spans(100, 10, span=10, min_spans=1)
    assert one.all()                                                   # the only span that fits
    none = P.mask_spans(8, 30, mask_prob=0.0, span=3, min_spans=0)
    assert not none.any()
    with pytest.raises(ValueError, match="length"):
        P.mask_spans(2, 5, span=10)
    with pytest.raises(ValueError, match="min_spans"):
        P.mask_spans(2, 12, span=10, min_spans=4)


def test_distractors_are_other_masked_frames_of_the_same_clip():
    g = torch.Generator().manual_seed(0)
    mask = P.mask_spans(16, 50, generator=g)
    mask[3] = False
    mask[3, 7] = True                                                   # a clip with one masked frame
    d = P.sample_distractors(mask, 30, generator=g)
    assert d.shape == (16, 50, 30) and d.dtype == torch.long
    for b in range(16):
        for t in mask[b].nonzero().flatten().tolist():
            picks = d[b, t]
            assert mask[b, picks].all()                                  # only masked frames
            if b == 3:
                assert (picks == t).all()                                # none other: itself
            else:
                assert (picks != t).all()                                # never the frame itself
    # uniform over the other masked frames: every one is drawn, each about equally often
    b = 0
    masked = mask[b].nonzero().flatten()
    counts = torch.bincount(d[b][mask[b]].flatten(), minlength=50)[masked].float()
    assert (counts > 0).all() and counts.max() / counts.min() < 2.5
