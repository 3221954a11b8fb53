"""The listening explorer: WAV bytes, silenced frames (against loop references), players that follow."""
from __future__ import annotations

import io
import wave

import pytest
import torch

import sslkit
from sslkit.widgets import audio_explorer, silence_frames, wav_bytes


def _read_wav(b: bytes) -> tuple[int, list[int]]:
    with wave.open(io.BytesIO(b)) as f:
        assert f.getnchannels() == 1 and f.getsampwidth() == 2
        frames = f.readframes(f.getnframes())
        rate = f.getframerate()
    return rate, [int.from_bytes(frames[i:i + 2], "little", signed=True) for i in range(0, len(frames), 2)]


def test_wav_bytes_against_a_loop_reference():
    x = torch.tensor([0.0, 0.5, -1.0, 0.25, 1.0, -0.1])
    rate, pcm = _read_wav(wav_bytes(x, sample_rate=8000))
    assert rate == 8000
    peak = max(abs(float(v)) for v in x)
    expected = [int(round(float(v) / peak * 0.9 * 32767)) for v in x]
    assert pcm == expected
    _, silent = _read_wav(wav_bytes(torch.zeros(5)))
    assert silent == [0] * 5                               # no division by a zero peak
    with pytest.raises(ValueError, match="one wave"):
        wav_bytes(torch.zeros(2, 5))


def test_silence_frames_against_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 23, generator=g)
    mask = torch.rand(2, 1, 5, generator=g) > 0.5          # 5 frames of 4 samples; 3 samples left over
    out = silence_frames(x, mask, hop=4)
    for b in range(2):
        for n in range(23):
            masked = n // 4 < 5 and bool(mask[b, 0, n // 4])
            assert out[b, 0, n] == (0.0 if masked else x[b, 0, n])
    with pytest.raises(ValueError, match="more than the wave"):
        silence_frames(x, torch.ones(2, 1, 6, dtype=torch.bool), hop=4)


def test_audio_explorer_follows_its_controls():
    data = sslkit.data.load("spoken_digits", "test", representation="wave").subset(torch.arange(4))
    w = audio_explorer(data, masking=True)
    first, sound = bytes(w.view.value), bytes(w.players["original"].value)
    x = data.x[0, 0]
    frames = sslkit.backbones.create("wave_transformer").num_frames(len(x))   # 50: as the model masks
    mask = sslkit.pretext.audio.mask_spans(1, frames, 0.065, 10,
                                           generator=torch.Generator().manual_seed(0))[0]   # (S,)
    assert mask.sum() >= 2 * 10                              # at least two spans of 10 frames
    assert bytes(w.players["masked spans silenced"].value) == wav_bytes(silence_frames(x, mask))
    silenced = _read_wav(bytes(w.players["masked spans silenced"].value))[1]
    assert all(silenced[n] == 0 for n in range(len(silenced)) if n // 80 < len(mask) and mask[n // 80])
    w.controls["clip"].value = 3
    assert bytes(w.view.value) != first and bytes(w.players["original"].value) != sound
    rate, pcm = _read_wav(bytes(w.players["original"].value))
    assert rate == 8000 and len(pcm) == data.x.shape[-1]
    w.controls["seed"].value = 1                            # other spans
    assert bytes(w.players["masked spans silenced"].value) != wav_bytes(silence_frames(data.x[3, 0], mask))
    with pytest.raises(ValueError, match="wave Dataset"):
        audio_explorer(sslkit.data.load("spoken_digits", "test", representation="log_mel"))


def test_audio_explorer_masks_the_encoders_frames():
    """A frame is ``hop`` samples apart and sees ``receptive`` samples: a clip has
    (T - receptive) // hop + 1 frames to mask, none past them (not T // hop)."""
    data = sslkit.data.load("spoken_digits", "test", representation="wave").subset(torch.arange(2))
    T = data.x.shape[-1]
    for receptive in (160, 2000):
        frames = (T - receptive) // 80 + 1                  # 50 for the default encoder; 27
        w = audio_explorer(data, masking=True, mask_prob=0.3, receptive=receptive)
        original = _read_wav(bytes(w.players["original"].value))[1]
        silenced = _read_wav(bytes(w.players["masked spans silenced"].value))[1]
        changed = [n for n in range(T) if silenced[n] != original[n]]
        assert changed and max(changed) < frames * 80, (receptive, max(changed))
    assert sslkit.backbones.create("wave_transformer").num_frames(T) == (T - 160) // 80 + 1
    with pytest.raises(ValueError, match="receptive"):
        audio_explorer(data, receptive=40)                  # less than hop: not an encoder
