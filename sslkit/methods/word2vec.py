"""word2vec: skip-gram with negative sampling - each word predicts the words around it.

Mikolov, Chen, Corrado & Dean (2013), "Efficient Estimation of Word Representations in Vector Space",
https://arxiv.org/abs/1301.3781 (skip-gram); Mikolov, Sutskever, Chen, Corrado & Dean (2013),
"Distributed Representations of Words and Phrases and their Compositionality",
https://arxiv.org/abs/1310.4546 (negative sampling, subsampling of frequent words).

    ids ─ subsample (drop w with p = 1 - sqrt(t / f(w))) ─ pairs (centre, word within its window)
    loss = -log sigma(u_context . v_centre) - sum_{k noise words n ~ unigram^0.75} log sigma(-u_n . v_centre)

Two tables: input vectors v (the word vectors, ``backbone.embedding``) and output vectors u. Dropped
words are removed before the windows are taken (so a window reaches past them, as in the word2vec
tool), and each centre draws its reach uniformly in 1..window (nearer words count more). Special
tokens ([PAD], [MASK], [CLS], [UNK]) are never centres, contexts or noise words. ``embed`` of a text is
the mean of its word vectors (B, D). Notebook helpers: ``nearest``, ``analogy``, ``similarity``.
Not done: the word2vec tool also skips a noise word equal to the context word (rare at V ~ 3k).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sslkit import checks, losses
from sslkit.methods.base import Method, make_config
from sslkit.methods.registry import register


@dataclass
class Word2VecConfig:
    # Vector size. Paper: 300 for billions of words; 64 suits ~3k words and ~80k tokens (corpus).
    dim: int = 64
    # Largest distance of a context word; each centre draws its reach in 1..window. word2vec tool: 5.
    window: int = 5
    # Noise words per pair. Paper: 5-20 for small data, 2-5 for large.
    negatives: int = 5
    # t in p_discard(w) = 1 - sqrt(t / f(w)). Paper: 1e-5 on billions of words, where f("the") is
    # tiny; 1e-3 (the word2vec tool's default) thins only the ~30 most frequent words of corpus. 0 = off.
    subsample: float = 1e-3
    # Noise distribution unigram^power. Paper: 3/4 beat the unigram (1) and uniform (0) distributions.
    noise_power: float = 0.75

    def __post_init__(self) -> None:
        for name in ("dim", "window", "negatives"):
            checks.integer(name, getattr(self, name), min=1)
        checks.number("subsample", self.subsample, min=0.0, max=1.0)
        checks.number("noise_power", self.noise_power, min=0.0)


def keep_probability(counts: torch.Tensor, t: float) -> torch.Tensor:
    """(V,) probability of keeping each word: ``min(1, sqrt(t / f))``, f = count / total (paper's
    subsampling); words with count 0 get 0, ``t=0`` keeps every counted word."""
    f = counts.double() / counts.sum().clamp_min(1)
    keep = (t / f).sqrt().clamp(max=1.0) if t > 0 else torch.ones_like(f)
    return torch.where(counts > 0, keep, torch.zeros_like(keep)).float()


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """(V,) ``count^power / sum``: the distribution noise words are drawn from (0 for unseen words)."""
    w = torch.where(counts > 0, counts.double().pow(power), torch.zeros_like(counts, dtype=torch.float64))
    return (w / w.sum()).float()


def subsample(ids: torch.Tensor, keep_prob: torch.Tensor, generator: torch.Generator | None = None
              ) -> torch.Tensor:
    """(B, L) bool: which words of ``ids`` are kept, each independently with ``keep_prob[id]``."""
    return torch.rand(ids.shape, generator=generator, device=ids.device) < keep_prob[ids]


def skipgram_pairs(ids: torch.Tensor, keep_prob: torch.Tensor, window: int,
                   generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Subsample the words of ``ids`` (B, L) and list every (centre, context) pair of the windows.

    Returns ``centre`` (B, L) ids with the kept words moved to the front of each row (in order),
    ``context`` (B, L, 2 * window) the ids at offsets -window..-1, 1..window from each centre, and
    ``valid`` (B, L, 2 * window) bool: both words kept and the offset within the centre's reach
    (drawn per centre, uniform in 1..window). Randomness per word, on ``ids.device``.
    """
    b, n = ids.shape
    kept = subsample(ids, keep_prob, generator)                                            # (B, L)
    # MAE-style argsort: kept words first, in order; dropped words vanish from the windows.
    order = torch.argsort((~kept).to(torch.int8), dim=1, stable=True)
    centre, kept = ids.gather(1, order), kept.gather(1, order)
    offsets = torch.cat([torch.arange(-window, 0, device=ids.device),
                         torch.arange(1, window + 1, device=ids.device)])                    # (2W,)
    pos = torch.arange(n, device=ids.device)[:, None] + offsets                            # (L, 2W)
    inside = (pos >= 0) & (pos < n)
    pos = pos.clamp(0, n - 1)
    context = centre[:, pos]                                                               # (B, L, 2W)
    reach = torch.randint(1, window + 1, (b, n, 1), generator=generator, device=ids.device)  # (B, L, 1)
    valid = kept[:, :, None] & kept[:, pos] & inside & (offsets.abs() <= reach)
    return centre, context, valid


class WordVectors(nn.Module):
    """The word-vector table as a backbone: (B, L) ids -> (B, D) mean vector of the words of each text.

    Special tokens (``special_ids``) are left out of the mean; a text without words gets zeros.
    """

    def __init__(self, vocab_size: int, dim: int, special_ids: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.vocab_size = checks.integer("vocab_size", vocab_size, min=1)
        self.embed_dim = checks.integer("dim", dim, min=1)
        self.embedding = nn.Embedding(vocab_size, dim)
        nn.init.uniform_(self.embedding.weight, -0.5 / dim, 0.5 / dim)       # the word2vec tool's init
        is_word = torch.ones(vocab_size, dtype=torch.bool)
        is_word[list(special_ids)] = False
        self.register_buffer("is_word", is_word)

    def check_ids(self, ids: Any, name: str = "ids") -> torch.Tensor:
        checks.tensor(name, ids, ndim=2, dtypes="int")
        if ids.shape[0] < 1 or ids.shape[1] < 1:
            raise ValueError(f"{name} must be (B, L) token ids with B, L >= 1; got shape {tuple(ids.shape)}")
        if ids.device.type == "cpu":            # on an accelerator this would sync every step
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.vocab_size:
                raise ValueError(f"{name} contain values in [{lo}, {hi}]; allowed: [0, {self.vocab_size - 1}]")
        return ids

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        ids = self.check_ids(ids)
        w = self.is_word[ids].unsqueeze(-1).to(self.embedding.weight.dtype)   # (B, L, 1)
        return (self.embedding(ids) * w).sum(1) / w.sum(1).clamp_min(1)      # (B, D)

    forward = forward_features


class Word2Vec(Method):
    name = "word2vec"
    kinds = ("text",)
    default_lr = 1e-2  # AdamW; the word2vec tool: SGD from 0.025, decayed linearly

    def __init__(self, backbone: WordVectors, config: Word2VecConfig, tokenizer: Any,
                 counts: torch.Tensor) -> None:
        if not isinstance(backbone, WordVectors):
            raise ValueError(f"word2vec learns its own word-vector table; backbone must be None "
                             f"(got {type(backbone).__name__})")
        super().__init__(backbone)
        self.config = config
        self.tokenizer = tokenizer
        v = backbone.vocab_size
        counts = counts.clone().long()
        counts[~backbone.is_word] = 0                                         # specials are not words
        if int(counts.sum()) == 0:
            raise ValueError("data holds no words (only special tokens): nothing to learn from")
        # Output ("context") vectors, zero at the start as in the word2vec tool.
        self.context = nn.Embedding(v, config.dim)
        nn.init.zeros_(self.context.weight)
        self.register_buffer("counts", counts)                                             # (V,)
        self.register_buffer("keep_prob", keep_probability(counts, config.subsample))      # (V,)
        self.register_buffer("noise", noise_distribution(counts, config.noise_power))      # (V,)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        ids = self.backbone.check_ids(batch, "batch")                        # (B, L)
        c = self.config
        centre, context, valid = skipgram_pairs(ids, self.keep_prob, c.window)
        # Every (centre, offset) slot is a pair of fixed shape, weighted 1 if valid else 0: no
        # data-dependent shapes, so the step never waits on the host (a GPU keeps its queue full).
        w = valid.flatten().to(self.backbone.embedding.weight.dtype)                  # (S,) S = B*L*2W
        slots = valid.shape[-1]
        v = self.backbone.embedding(centre).unsqueeze(2).expand(-1, -1, slots, -1)    # (B, L, 2W, D)
        v = v.flatten(0, 2)                                                           # (S, D) centre vectors
        u = self.context(context).flatten(0, 2)                                       # (S, D) context vectors
        n = self.context(self.draw_noise(v.shape[0]))                                 # (S, k, D) noise vectors
        loss = losses.skipgram_negative_sampling(v, u, n, weight=w)   # 0 (with a gradient) if no pair
        with torch.no_grad():
            pairs = w.sum()
            per = pairs.clamp_min(1)
            pos = (torch.sigmoid((u * v).sum(-1)) * w).sum() / per          # -> 1 when context words score high
            neg = (torch.sigmoid(torch.einsum("skd,sd->sk", n, v)).mean(-1) * w).sum() / per   # -> 0 for noise
        return {"loss": loss, "pos": pos, "neg": neg, "pairs": pairs}

    def draw_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, negatives) noise word ids drawn (with replacement) from ``self.noise``."""
        k = self.config.negatives
        return torch.multinomial(self.noise, n * k, replacement=True, generator=generator).view(n, k)

    # -- looking at the vectors ----------------------------------------------------------------------
    def _word_id(self, word: Any, name: str = "word") -> int:
        if not isinstance(word, str):
            raise ValueError(f"{name}={word!r} must be a str")
        ids = self.tokenizer.encode(word)
        if len(ids) != 1 or not bool(self.backbone.is_word[ids[0]]) or self.counts[ids[0]] == 0:
            raise ValueError(f"{name}={word!r} is not a word of the vocabulary (a single token seen in "
                             f"the training data; e.g. {', '.join(repr(w) for w in self.tokenizer.vocab[4:9])})")
        return ids[0]

    def _unit_vectors(self) -> torch.Tensor:
        return F.normalize(self.backbone.embedding.weight.detach().float(), dim=1)        # (V, D)

    def _top(self, query: torch.Tensor, exclude: list[int], k: int) -> list[tuple[str, float]]:
        sims = self._unit_vectors() @ F.normalize(query, dim=0)                           # (V,)
        sims[~self.backbone.is_word | (self.counts == 0)] = float("-inf")
        sims[exclude] = float("-inf")
        top = sims.topk(k)
        return [(self.tokenizer.vocab[int(i)], float(s)) for s, i in zip(top.values, top.indices)]

    def _k(self, k: int, excluded: int) -> int:
        return checks.integer("k", k, min=1, max=int((self.counts > 0).sum()) - excluded)

    @torch.no_grad()
    def nearest(self, word: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words whose vectors have the highest cosine with ``word``'s: [(word, cosine)]."""
        i = self._word_id(word)
        return self._top(self._unit_vectors()[i], [i], self._k(k, 1))

    @torch.no_grad()
    def analogy(self, a: str, b: str, c: str, k: int = 5) -> list[tuple[str, float]]:
        """"``a`` is to ``b`` as ``c`` is to ?": the ``k`` words nearest (cosine) to ``b - a + c`` of
        the unit vectors (3CosAdd, Mikolov et al. 2013), leaving out a, b and c."""
        ia, ib, ic = self._word_id(a, "a"), self._word_id(b, "b"), self._word_id(c, "c")
        vec = self._unit_vectors()
        return self._top(vec[ib] - vec[ia] + vec[ic], [ia, ib, ic], self._k(k, len({ia, ib, ic})))

    @torch.no_grad()
    def similarity(self, a: str, b: str) -> float:
        """Cosine of the vectors of words ``a`` and ``b``."""
        vec = self._unit_vectors()
        return float(vec[self._word_id(a, "a")] @ vec[self._word_id(b, "b")])


@register(Word2Vec, "word2vec: skip-gram with negative sampling - each word predicts its neighbours")
def word2vec(data: Any = None, backbone: Any = None, **config: Any) -> Word2Vec:
    """word2vec skip-gram with negative sampling (Mikolov et al. 2013). ``data``: a text Dataset, required
    (its tokenizer, and its word counts for subsampling and the noise distribution: use the train split).
    ``backbone`` must be None (the method's backbone is its own word-vector table)."""
    cfg = make_config(Word2VecConfig, config)
    if data is None:
        raise ValueError("word2vec needs data= a text Dataset with a tokenizer (e.g. sslkit.data.load('corpus')): "
                         "the vocabulary and the word counts come from it")
    if backbone is not None:
        raise ValueError(f"backbone={backbone!r}: word2vec learns its own word-vector table; leave backbone=None")
    if getattr(data, "kind", None) != "text":
        raise ValueError(f"data={getattr(data, 'name', data)!r} holds {getattr(data, 'kind', 'no sslkit')} "
                         f"data; word2vec needs text data (a sslkit.data.Dataset with a tokenizer)")
    if getattr(data, "tokenizer", None) is None:
        raise ValueError(f"data={data.name!r} has no tokenizer; word2vec needs one for the vocabulary")
    tok = data.tokenizer
    net = WordVectors(len(tok), cfg.dim, tuple(tok.special_ids))
    counts = torch.bincount(data.tokens.flatten().cpu(), minlength=len(tok))[: len(tok)]
    return Word2Vec(net, cfg, tok, counts)
