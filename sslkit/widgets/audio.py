"""Listening explorer: play a clip, see its wave and log-mel spectrogram beside the player, and hear
what masking spans of sound (wav2vec 2.0's pretext task) takes away.

    w = sslkit.widgets.audio_explorer(sslkit.data.load("spoken_digits", representation="wave"))
    w.controls["clip"].value = 7              # another clip: picture and players follow
    w = sslkit.widgets.audio_explorer(waves, masking=True)   # spans of 10 frames (100 ms) silenced

wav2vec masks *latent frames* (one every ``hop`` = 80 samples, 10 ms at 8 kHz): the encoder still
hears the whole wave, the context network sees a learned mask vector in place of each masked
frame and must identify the true frame among distractors. The explorer makes that audible by
silencing each masked frame's 10 ms of samples - what the context network has to fill in.
"""
from __future__ import annotations

import io
import wave as wavefile
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch

from sslkit import checks
from sslkit.widgets.base import Explorer, regenerate_button, seed_box, slider
from sslkit.widgets.render import TEXT, TITLE, figure, to_png


def wav_bytes(x: torch.Tensor, sample_rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV file of wave ``x`` ((T,) or (1, T), float), peak-normalised to 0.9
    (a silent clip stays silent) - what ``ipywidgets.Audio`` plays."""
    checks.tensor("x", x, dtypes="float")
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1 or len(x) == 0:
        raise ValueError(f"x must be one wave of shape (T,) or (1, T); got shape {tuple(x.shape)}")
    sample_rate = checks.integer("sample_rate", sample_rate, min=1)
    x = x.detach().float().cpu()
    peak = x.abs().max()
    pcm = (x / peak * 0.9 if peak > 0 else x).mul(32767).round().clamp(-32768, 32767)
    buf = io.BytesIO()
    with wavefile.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.to(torch.int16).numpy().astype("<i2").tobytes())
    return buf.getvalue()


def silence_frames(x: torch.Tensor, frame_mask: torch.Tensor, hop: int = 80) -> torch.Tensor:
    """``x`` (..., T) with the ``hop`` samples of every masked frame set to 0: sample n is silenced
    when frame ``n // hop`` is masked (``frame_mask`` (..., S) bool, True = masked)."""
    checks.tensor("frame_mask", frame_mask, dtypes=(torch.bool,))
    hop = checks.integer("hop", hop, min=1)
    T, S = x.shape[-1], frame_mask.shape[-1]
    if S * hop > T:
        raise ValueError(f"frame_mask has {S} frames of hop={hop} samples = {S * hop}, more than the "
                         f"wave's T={T} samples")
    per_sample = frame_mask.repeat_interleave(hop, dim=-1)                          # (..., S * hop)
    per_sample = torch.cat([per_sample, per_sample.new_zeros(*per_sample.shape[:-1], T - S * hop)], -1)
    return x.masked_fill(per_sample.to(x.device), 0.0)


def sound_panels(x: torch.Tensor, sample_rate: int = 8000, frame_mask: torch.Tensor | None = None,
                 hop: int = 80, title: str = "") -> bytes:
    """PNG: the wave (top) and its log-mel spectrogram (bottom) on one time axis; masked frames
    (``frame_mask`` (S,) bool, one frame per ``hop`` samples) shaded in both."""
    from sslkit.data import audio
    if x.ndim == 2:
        x = x[0]
    checks.tensor("x", x, ndim=1, dtypes="float")
    x = x.detach().float().cpu()
    seconds = len(x) / sample_rate
    spec = audio.log_mel(x[None, None], sample_rate=sample_rate)[0, 0]              # (n_mels, frames) dB
    fig = figure(4.8, 2.6)
    ax_w, ax_s = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1.6]})
    ax_w.plot(np.arange(len(x)) / sample_rate, x.numpy(), lw=0.5, color="tab:blue")
    ax_w.set_ylabel("amplitude", fontsize=TEXT)
    ax_s.imshow(spec.numpy(), origin="lower", aspect="auto", cmap="magma",
                extent=(0, seconds, 0, spec.shape[0]))
    ax_s.set_ylabel("mel band", fontsize=TEXT)
    ax_s.set_xlabel("time (s)", fontsize=TEXT)
    if frame_mask is not None:
        m = frame_mask.detach().cpu().tolist()
        for t, masked in enumerate(m):
            if masked:
                for ax in (ax_w, ax_s):
                    ax.axvspan(t * hop / sample_rate, (t + 1) * hop / sample_rate, color="0.6",
                               alpha=0.55, lw=0)
    for ax in (ax_w, ax_s):
        ax.tick_params(labelsize=TEXT)
    if title:
        ax_w.set_title(title, fontsize=TITLE)
    return to_png(fig)


class AudioExplorer(Explorer):
    """An :class:`Explorer` with audio players under the picture (``w.players[name]``), refreshed
    with the view."""

    def __init__(self, controls: dict[str, widgets.Widget], render: Callable[[], bytes],
                 sounds: Callable[[], dict[str, bytes]], names: list[str], title: str = "") -> None:
        self.players = {n: widgets.Audio(format="wav", autoplay=False, loop=False,
                                         layout=widgets.Layout(width="300px")) for n in names}
        self._sounds = sounds
        super().__init__(controls, render, title=title)
        self.children = (*self.children, widgets.HBox([widgets.VBox([widgets.Label(n), p])
                                                       for n, p in self.players.items()]))

    def update(self) -> None:
        super().update()
        for n, b in self._sounds().items():
            self.players[n].value = b


def audio_explorer(data: Any, clip: int = 0, masking: bool = False, mask_prob: float = 0.065,
                   span: int = 10, hop: int = 80, receptive: int = 160, seed: int = 0) -> AudioExplorer:
    """Play a clip of ``data`` (a wave Dataset, e.g. ``spoken_digits``) with its wave and log-mel
    spectrogram beside the player. With ``masking``: wav2vec spans (``sslkit.pretext.audio.mask_spans``:
    starts drawn with probability ``mask_prob``, ``span`` frames each, at least 2 spans) shaded,
    and a second player with those frames silenced. Controls: clip, and mask_prob / seed.

    ``hop`` and ``receptive`` are the encoder's frame step and the samples one frame sees (the default
    ``wave_transformer``: 80 and 160), so a clip of T samples has ``(T - receptive) // hop + 1``
    frames, as many as the model masks (50 for the 4,096-sample ``spoken_digits`` clips)."""
    from sslkit.pretext import audio as pretext_audio
    if getattr(data, "kind", None) != "signal" or getattr(data, "x", None) is None:
        raise ValueError(f"data must be a wave Dataset (kind 'signal', e.g. sslkit.data.load('spoken_digits', "
                         f"representation='wave')); got {getattr(data, 'name', type(data).__name__)!r} "
                         f"of kind {getattr(data, 'kind', None)!r}")
    clip = checks.integer("clip", clip, min=0, max=len(data) - 1)
    span = checks.integer("span", span, min=1)
    hop = checks.integer("hop", hop, min=1)
    receptive = checks.integer("receptive", receptive, min=hop, max=data.x.shape[-1])
    rate = int(data.meta.get("sample_rate", 8000))
    speakers = data.meta.get("factor_values", {}).get("speaker")
    controls: dict[str, widgets.Widget] = {
        "clip": widgets.IntSlider(value=clip, min=0, max=len(data) - 1, description="clip",
                                  continuous_update=False, layout=widgets.Layout(width="300px"))}
    if masking:
        seed_w = seed_box(checks.integer("seed", seed))
        controls["mask_prob"] = slider("p(span start)", checks.number("mask_prob", mask_prob, min=0, max=1),
                                       0.0, 0.3, 0.005)
        controls["seed"] = seed_w
        controls["regenerate"] = regenerate_button(seed_w)

    def current() -> tuple[torch.Tensor, str, torch.Tensor | None]:
        i = int(controls["clip"].value)
        x = data.x[i, 0].float().cpu()                                                    # (T,)
        who = data.factors["speaker"][i].item() if "speaker" in data.factors else None
        name = speakers[who] if speakers is not None and who is not None else who
        label = f"clip {i}: '{data.classes[int(data.labels[i])]}'" + (f", speaker {name}" if name is not None else "")
        mask = None
        if masking:
            g = torch.Generator().manual_seed(int(controls["seed"].value))
            mask = pretext_audio.mask_spans(1, (len(x) - receptive) // hop + 1, float(controls["mask_prob"].value), span,
                                            generator=g)[0]                               # (S,)
        return x, label, mask

    def render() -> bytes:
        x, label, mask = current()
        if mask is not None:
            label += f" - {int(mask.sum())} of {len(mask)} frames masked"
        return sound_panels(x, rate, mask, hop, title=label)

    def sounds() -> dict[str, bytes]:
        x, _, mask = current()
        out = {"original": wav_bytes(x, rate)}
        if mask is not None:
            out["masked spans silenced"] = wav_bytes(silence_frames(x, mask, hop), rate)
        return out

    names = ["original"] + (["masked spans silenced"] if masking else [])
    return AudioExplorer(controls, render, sounds, names,
                         title="Listen: wave and log-mel spectrogram" + (", masked spans" if masking else ""))
