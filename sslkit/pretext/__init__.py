"""Batched, on-device pretext tasks: augmented views, masking and classic self-supervised tasks.

Every random function draws its parameters per sample with tensor ops on the data's device and
takes ``generator: torch.Generator | None`` (on that device) for reproducibility.

    >>> import sslkit.pretext as P
    >>> v1, v2 = P.simclr_views(x, generator=g)          # (B, C, H, W) each
    >>> m = P.random_masking(P.patchify(x, 4), 0.75)      # MAE
    >>> rotated, labels = P.rotate(x)                     # RotNet
"""
from sslkit.pretext.audio import (freq_mask, freq_warp, gain, mask_spans, sample_distractors, spectrogram_views,
                                  time_mask, time_shift)
from sslkit.pretext.masking import (Masking, MaskIndices, block_masking, mask_frames, mask_indices,
                                    mask_time_steps, mask_tokens, patchify, random_masking, unpatchify)
from sslkit.pretext.recipes import (ViewRecipe, auto_views, byol_views, cifar_views, crop_sizes, multicrop,
                                    multicrop_recipes,
                                    recipe_pair, simclr_views, weak_views)
from sslkit.pretext.tasks import (check_permutations, colorization, gaussian_corrupt, inpaint_holes, jigsaw,
                                  jigsaw_permutations, next_step, rotate, rotate_by, salt_and_pepper)
from sslkit.pretext.views import (color_jitter, cutout, gaussian_blur, gaussian_noise, horizontal_flip,
                                  random_grayscale, random_resized_crop, solarize)

__all__ = [
    # views
    "random_resized_crop", "horizontal_flip", "color_jitter", "random_grayscale", "gaussian_blur",
    "solarize", "gaussian_noise", "cutout",
    # recipes
    "ViewRecipe", "simclr_views", "cifar_views", "byol_views", "weak_views", "multicrop", "multicrop_recipes",
    "crop_sizes", "auto_views", "recipe_pair",
    # masking
    "patchify", "unpatchify", "Masking", "random_masking", "MaskIndices", "mask_indices", "block_masking", "mask_tokens",
    "mask_time_steps", "mask_frames",
    # classic tasks
    "rotate", "rotate_by", "jigsaw_permutations", "jigsaw", "check_permutations", "gaussian_corrupt",
    "salt_and_pepper", "inpaint_holes", "colorization", "next_step",
    # sound (sslkit.pretext.audio): spectrogram views and wav2vec span masking
    "freq_mask", "time_mask", "time_shift", "freq_warp", "gain", "spectrogram_views", "mask_spans",
    "sample_distractors",
]
