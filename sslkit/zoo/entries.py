"""The zoo's recipes: one :class:`Entry` per reference model, defined here in code.

An entry says everything ``sslkit zoo build NAME`` needs to retrain it from scratch - method and its
settings, backbone, data and its options, steps, batch, learning rate, seed - and which labels or
factors its card measures. Changing a recipe makes the stored files stale: rebuild the entry
(``load`` warns when the card was built from another recipe).

Step counts and learning rates are the starting point of the training phase, picked from measured
CPU step times (see the zoo README); the cards record what each build actually ran.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sslkit import checks


@dataclass(frozen=True)
class Entry:
    """Recipe of one zoo model. Every field is plain Python (it is written into the card as JSON)."""

    name: str
    purpose: str                      # what the lessons use it for (shown by ``sslkit zoo list``)
    method: str                       # a name from sslkit.method_names()
    data: str                         # a name from sslkit.data.names(); train split to train, test to score
    steps: int
    batch_size: int
    data_options: dict[str, Any] = field(default_factory=dict)    # for both splits (e.g. size=16)
    backbone: str | None = None       # None: the method's default for the data
    backbone_options: dict[str, Any] = field(default_factory=dict)  # besides the data's facts
    # Method settings; a dict under "views" becomes a sslkit.pretext.ViewRecipe(**dict).
    method_config: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None           # None: method.default_lr * batch_size / 256 (fit's rule)
    weight_decay: float | None = None  # None: fit's default for the optimiser
    optimizer: str = "adamw"
    seed: int = 0                     # model init, batch order and the method's randomness
    # What the card's kNN / linear probes predict: "label" and/or factor names of the data
    # (continuous factors are cut into 3 equal-count bins at the training split's terciles).
    targets: tuple[str, ...] = ("label",)
    # Lesson-specific measurements (names of functions in sslkit.zoo.extras).
    extras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        checks.integer("steps", self.steps, min=1)
        checks.integer("batch_size", self.batch_size, min=2)
        checks.integer("seed", self.seed)
        if not self.targets:
            raise ValueError(f"entry {self.name!r}: targets is empty; give at least 'label'")

    def recipe(self) -> dict[str, Any]:
        """The recipe as a plain dict (what the card stores and ``load`` compares)."""
        d = dataclasses.asdict(self)
        d["targets"], d["extras"] = list(self.targets), list(self.extras)
        return d


# Strong colour randomisation for `shapes`: the class is the shape, colour and background are
# nuisances. Hue 0.5 reaches any hue, jitter always, grayscale half the time; crops keep >= 25%
# of the image so the shape stays in view; no blur (it erases the edges of small images).
SHAPES_VIEWS = dict(scale=(0.25, 1.0), hue=0.5, jitter_p=1.0, gray_p=0.5, blur_p=0.0)
# The same crops with every colour operation off: the colour-shortcut lesson's control.
SHAPES_VIEWS_NO_COLOUR = dict(scale=(0.25, 1.0), jitter_p=0.0, gray_p=0.0, blur_p=0.0)
# ConvNet entries on shapes use 16 px images, as the lessons' live CPU runs (02, 06) do: the zoo
# model is where the same code, data and network get with time. A 16 px step costs a quarter of
# a 32 px one (about 0.5 CPU-s at batch 128 against 4 CPU-s at batch 256 and 32 px).
SHAPES_16 = {"size": 16}
# A narrow ViT for the CPU: 128 wide, 4 blocks, 4 heads (ViT-Tiny is 192 x 12); 4 px patches give
# an 8 x 8 grid on 32 px shapes - fine enough to see where the attention falls. A ViT's cost is set
# by its 64 tokens, not by the pixels, so the ViT entries use the full 32 px images.
SMALL_VIT = dict(patch_size=4, embed_dim=128, depth=4, num_heads=4)
SHAPE_TARGETS = ("label", "colour", "background")

_ENTRIES = [
    # -- joint-embedding methods on digits (lessons 00, 03, 05): 8 x 8 px, ~0.3 CPU-s per step ----
    Entry("simclr_digits", "Contrastive reference on digits: the converged SimCLR the short live "
          "runs of lessons 00/03/05 head towards.", "simclr", "digits", steps=2000, batch_size=256),
    Entry("byol_digits", "Non-contrastive (EMA target + predictor) on digits, compared with SimCLR "
          "in lesson 03.", "byol", "digits", steps=2000, batch_size=256),
    Entry("simsiam_digits", "Non-contrastive with stop-gradient and no EMA on digits (lesson 03); "
          "the collapse lesson trains it without stop-gradient live.", "simsiam", "digits",
          steps=2000, batch_size=256),
    Entry("barlow_twins_digits", "Redundancy reduction (cross-correlation to identity) on digits "
          "(lesson 03).", "barlow_twins", "digits", steps=2000, batch_size=256),
    Entry("vicreg_digits", "Variance-invariance-covariance regularisation on digits (lesson 03).",
          "vicreg", "digits", steps=2000, batch_size=256),
    # -- shapes (lessons 02, 03, 04, 06): the class is the shape -----------------------------------
    # lr 1e-3 at batch 128: twice fit's linear-scaling default, which learns too slowly on shapes
    # (benchmarks/RESULTS.md, `sslkit demo --data shapes`, used 2e-3 for runs of a few hundred steps)
    Entry("simclr_shapes", "Contrastive reference on shapes with colour-randomising views: "
          "neighbours share the shape, not the colour (lessons 02, 06).", "simclr", "shapes",
          steps=2500, batch_size=128, lr=1e-3, data_options=SHAPES_16,
          method_config={"views": SHAPES_VIEWS}, targets=SHAPE_TARGETS),
    Entry("simclr_shapes_no_colour", "The colour-shortcut control: SimCLR with the same crops but "
          "no colour augmentation clusters by colour (lesson 02).", "simclr", "shapes",
          steps=2500, batch_size=128, lr=1e-3, data_options=SHAPES_16,
          method_config={"views": SHAPES_VIEWS_NO_COLOUR}, targets=SHAPE_TARGETS),
    Entry("mae_shapes", "Masked autoencoder (ViT) whose reconstructions restore the hidden part of "
          "the shape (lesson 04).", "mae", "shapes", steps=3000, batch_size=128,
          backbone="vit_tiny", backbone_options=SMALL_VIT, method_config={"mask_ratio": 0.75},
          lr=1.5e-3, targets=("label", "colour"), extras=("mae_hidden_patches",)),
    Entry("dino_shapes", "DINO ViT whose CLS attention concentrates on the object (lesson 06).",
          "dino", "shapes", steps=1500, batch_size=64, backbone="vit_tiny",
          backbone_options=SMALL_VIT,
          # local crops of 16 px = 4 x 4 patches (a multiple of the patch size; 32 * 96/224 is not)
          method_config={"global_size": 32, "local_size": 16, "n_local": 4},
          targets=("label", "colour"), extras=("dino_attention_on_object",)),
    # -- sequences (lesson 07) and text (lesson 01) ----------------------------------------------
    Entry("cpc_waves", "Contrastive predictive coding on waves: the context predicts future "
          "steps (lesson 07).", "cpc", "waves", steps=3000, batch_size=256,
          targets=("label", "freq")),
    Entry("next_frame_moving_digits", "Next-frame prediction on moving digits that beats copying the "
          "last frame (lesson 07).", "next_frame", "moving_digits", steps=2000, batch_size=32,
          # a 16-32-64 frame encoder, 128-wide GRU and 32-channel decoder: a quarter of the default's
          # compute per frame and 1.5 MB of weights instead of 5.8 MB
          backbone="frames", backbone_options={"widths": (16, 32, 64)},
          method_config={"hidden_dim": 128, "decoder_width": 32}, extras=("next_frame_mse",)),
    # batch 64 x 1000 steps = 50 passes over the 1,272 training windows. lr 1e-3: fit's scaled
    # default (1.25e-4 at batch 64) left the loss on a plateau at 4.75 after 2000 steps, with masked
    # words only 3 points above always guessing the most frequent one
    Entry("mlm_corpus", "BERT-style masked language model on the Python help corpus (lesson 01).",
          "mlm", "corpus", steps=1000, batch_size=64, lr=1e-3, targets=("label", "topic"),
          extras=("mlm_masked_accuracy",)),
    # next-token prediction (lesson 10): the causal Transformer of mlm_corpus's size (128 wide,
    # 4 blocks). 400 steps of 32 windows (10 passes) at lr 1e-3 take its test perplexity below the
    # bigram's (101.7 vs 109.5; benchmarks/RESULTS.md, families.py); its perplexity on the training
    # windows (57.4) shows it already starting to memorise the 1,272 windows.
    Entry("gpt_corpus", "GPT-style causal language model on the Python help corpus whose test "
          "perplexity beats the bigram's (lesson 10).", "gpt", "corpus", steps=400, batch_size=32,
          lr=1e-3, targets=("label", "topic")),
    # skip-gram with negative sampling, 64-d vectors: 600 steps of 256 windows spread the vectors
    # into meaningful neighbours (dict -> defaultdict, int -> float; benchmarks/RESULTS.md)
    Entry("word2vec_corpus", "word2vec skip-gram vectors of the Python help corpus: nearest words "
          "and analogies (lesson 10).", "word2vec", "corpus", steps=600, batch_size=256,
          targets=("label", "topic")),
    # -- speech (lesson 13): spoken_digits as raw waves, the 4 train speakers (2,000 clips); the card
    # probes the digit on the 2 held-out speakers (the speaker itself cannot be probed across that
    # split: the lesson probes it on holdout="random"). Sized for <= 15 CPU-minutes on 1 thread.
    # CPC on 10 ms steps: conv1d strides 5*4*4 = 80 samples (the default 4-sample steps make 1,024
    # GRU steps per clip), predicting 4 steps (40 ms) ahead as the method's default. 0.28 CPU-s per
    # step at batch 64 (measured, 1 thread), so 1,000 steps (32 passes over the clips) are ~5 CPU-min.
    Entry("cpc_spoken_digits", "CPC on raw speech: the causal context predicts the next 40 ms "
          "(lesson 13).", "cpc", "spoken_digits", steps=1000, batch_size=64,
          backbone="conv1d", backbone_options={"strides": (5, 4, 4)}),
    # wav2vec-style masked prediction (wave_transformer, 0.9 M parameters); 0.70 CPU-s per step at
    # batch 32 (measured, 1 thread), so 500 steps (8 passes) are ~6 CPU-minutes; lr = the method's
    # default (5e-4 at batch 32).
    Entry("wav2vec_spoken_digits", "wav2vec-style masked prediction on raw speech: identify the "
          "true latent of masked spans among distractors (lesson 13).", "wav2vec", "spoken_digits",
          steps=500, batch_size=32),
]

ENTRIES: dict[str, Entry] = {e.name: e for e in _ENTRIES}


def entry(name: str) -> Entry:
    """The recipe called ``name`` (ValueError listing the names otherwise)."""
    return ENTRIES[checks.choice("name", name, list(ENTRIES))]
