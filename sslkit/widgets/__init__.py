"""ipywidgets explorers that make the notebooks' ideas tangible.

Each explorer is an :class:`Explorer` (an ``ipywidgets.VBox``): ``w.controls[name]`` are the
controls, ``w.view`` the rendered view (PNG bytes in an ``ipywidgets.Image``, or HTML), and
``w.update()`` re-renders. Moving a control (``w.controls["mask_ratio"].value = 0.5``) re-renders too.

Explorers: :func:`augmentation_explorer`, :func:`masking_explorer`, :func:`token_masking_viewer`,
:func:`temperature_explorer`, :func:`reconstruction_explorer`, :func:`embedding_explorer`,
:func:`neighbour_explorer`, :func:`attention_explorer`, :func:`knn_vote_explorer`,
:func:`frame_prediction_explorer`, :func:`prototype_explorer` (SwAV's clusters, with and without
Sinkhorn), :func:`sampling_explorer` (GPT: temperature and top-k), :func:`audio_explorer` (play a
clip beside its wave and spectrogram; masked spans silenced). Building blocks (return PNG bytes / arrays):
:func:`image_grid`, :func:`embedding_scatter`, :func:`project_2d`, :func:`similarity_panels`,
:func:`nearest_neighbours`, :func:`attention_maps`, :func:`show_png`, :func:`draw_image` (an
image with sharp square pixels in a matplotlib axes), :func:`display_width`.
"""
from __future__ import annotations

from sslkit.widgets.audio import audio_explorer, silence_frames, sound_panels, wav_bytes
from sslkit.widgets.base import Explorer
from sslkit.widgets.clustering import cluster_sizes, prototype_explorer
from sslkit.widgets.contrastive import similarity_panels, temperature_explorer, toy_pairs
from sslkit.widgets.embeddings import (attention_explorer, attention_maps, embedding_explorer, embedding_scatter,
                                       nearest_neighbours, neighbour_explorer, project_2d)
from sslkit.widgets.generation import reshape_distribution, sampling_explorer
from sslkit.widgets.features import frame_prediction_explorer, knn_vote_explorer, knn_votes
from sslkit.widgets.masking import masking_explorer, patch_mask, token_masking_html, token_masking_viewer
from sslkit.widgets.reconstruction import reconstruction_explorer
from sslkit.widgets.render import as_images, display_width, draw_image, figure, image_grid, to_png
from sslkit.widgets.views import augmentation_explorer, recipe_from_controls


def show_png(png: bytes) -> object:
    """Display PNG bytes in a notebook (an ``IPython.display.Image``) at their size in page pixels:
    a PNG of :func:`to_png` at half its pixel width, so it is sharp on HiDPI screens."""
    from IPython.display import Image
    return Image(data=png, width=display_width(png))


__all__ = ["Explorer", "augmentation_explorer", "masking_explorer", "token_masking_viewer", "temperature_explorer",
           "reconstruction_explorer", "embedding_explorer", "neighbour_explorer", "attention_explorer",
           "knn_vote_explorer", "frame_prediction_explorer", "knn_votes", "prototype_explorer", "cluster_sizes",
           "sampling_explorer", "reshape_distribution", "audio_explorer", "wav_bytes",
           "silence_frames", "sound_panels",
           "image_grid", "embedding_scatter", "project_2d", "similarity_panels", "toy_pairs", "nearest_neighbours",
           "attention_maps", "patch_mask", "token_masking_html", "recipe_from_controls", "as_images", "figure",
           "to_png", "show_png", "display_width", "draw_image"]
