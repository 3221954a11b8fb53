"""``corpus``: English text of Python's own help pages (``pydoc_data.topics``), tokenized.

The text behind ``help("assert")`` etc.: 79 topics, ~465k characters of technical English - enough
to pre-train a tiny BERT-style masked language model (Devlin et al., 2019) offline in minutes. The
kit ships a snapshot, ``pydoc_topics.json.gz`` beside this file (CPython 3.11.7's
``pydoc_data.topics``, PSF licence: see ``pydoc_topics.LICENSE.txt``), so windows and vocabulary are
the same on every Python version.

Samples are fixed-length windows ``[CLS] tok tok ... [PAD] [PAD]`` (int64 (N, seq_len)) cut from
one topic each. Label = the topic's *group* (statements, expressions, lexical, builtin-types,
data-model, execution - see ``TOPIC_GROUPS``), so a linear probe can ask whether the text model
learned what a passage is about; the topic itself is the factor ``topic``. Split by position: the
first 80% of every topic's text is train, the rest test (every group occurs in both splits). The
vocabulary is built from the train text only; ``seed`` only shuffles the order of the windows.
"""
from __future__ import annotations

import functools
import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from sslkit import checks
from sslkit.data.base import Dataset
from sslkit.data.registry import register

_G = {
    "statements": "assert assignment async augassign break class compound continue del else for "
                  "function global if import nonlocal pass raise return try while with yield",
    "expressions": "atom-identifiers atom-literals attribute-references await binary bitwise booleans "
                   "calls comparisons conversions exprlists in lambda operator-summary power "
                   "shifting slicings subscriptions unary",
    "lexical": "floating formatstrings id-classes identifiers imaginary integers numbers strings",
    "builtin-types": "bltin-code-objects bltin-ellipsis-object bltin-null-object bltin-type-objects "
                     "dict lists string-methods truth typesfunctions typesmapping typesmethods "
                     "typesmodules typesseq typesseq-mutable",
    "data-model": "attribute-access callable-types context-managers customization numeric-types "
                  "objects sequence-types specialattrs specialnames types",
    "execution": "debugger dynamic-features exceptions execmodel naming",
}
GROUPS = list(_G)
# topic -> group; topics a future Python adds are left out (listed in meta["skipped_topics"])
TOPIC_GROUPS = {topic: group for group, topics in _G.items() for topic in topics.split()}
TRAIN_FRACTION = 0.8   # share of each topic's text (from its start) in the train split
DEFAULT_SEQ_LEN = {"word": 64, "char": 128}  # ~ a few sentences either way
DEFAULT_MAX_VOCAB = {"word": 5000, "char": None}  # 5000 words cover ~97% of tokens; chars: all
TOPICS_FILE = "pydoc_topics.json.gz"  # CPython 3.11.7's pydoc_data.topics, unchanged

_ASCII = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'",
                        "\u2014": "-", "\u2013": "-", "\u2026": "..."})
_RULE = re.compile(r"^\s*([*=\-~^\"])\1{2,}\s*$", re.MULTILINE)  # reST underline rows "*****"
_TABLE = re.compile(r"^\s*\+[-=+]+\+\s*$", re.MULTILINE)          # table borders "+----+---+"
_WORD = re.compile(r"[a-z0-9_]+|[^\sa-z0-9_]")                      # words, and single symbols


def clean(text: str) -> str:
    """Plain ASCII prose: drop reST heading underlines and table rules, map typographic quotes,
    squeeze whitespace (code layout is lost; the text stays readable)."""
    text = _TABLE.sub(" ", _RULE.sub(" ", text)).replace("|", " ").translate(_ASCII)
    text = text.encode("ascii", "ignore").decode("ascii")
    return re.sub(r"\s+", " ", text).strip()


class Tokenizer:
    """Char- or word-level tokenizer with specials ``[PAD] [MASK] [CLS] [UNK]`` at ids 0..3.

    Word level lower-cases and splits into runs of ``[a-z0-9_]`` and single symbols; tokens not in
    the vocabulary (rarer than the ``max_vocab`` most frequent training tokens) map to ``[UNK]``.
    """

    SPECIALS = ("[PAD]", "[MASK]", "[CLS]", "[UNK]")
    pad_id, mask_id, cls_id, unk_id = 0, 1, 2, 3
    special_ids = (0, 1, 2, 3)

    def __init__(self, vocab: Sequence[str], level: str = "word") -> None:
        self.level = checks.choice("level", level, ("word", "char"))
        if tuple(vocab[:4]) != self.SPECIALS:
            raise ValueError(f"vocab must start with {self.SPECIALS}; got {tuple(vocab[:4])}")
        self.vocab = list(vocab)
        self._ids = {tok: i for i, tok in enumerate(self.vocab)}
        if len(self._ids) != len(self.vocab):
            raise ValueError("vocab has duplicate tokens")

    @classmethod
    def from_text(cls, text: str, level: str = "word", max_vocab: int | None = None) -> Tokenizer:
        """Vocabulary = specials + the most frequent tokens of ``text`` (ties alphabetical),
        at most ``max_vocab`` entries in all."""
        checks.choice("level", level, ("word", "char"))
        if max_vocab is not None:
            max_vocab = checks.integer("max_vocab", max_vocab, min=len(cls.SPECIALS) + 1)
        counts = Counter(cls._split(text, level))
        ranked = sorted(counts, key=lambda t: (-counts[t], t))
        if max_vocab is not None:
            ranked = ranked[: max_vocab - len(cls.SPECIALS)]
        return cls([*cls.SPECIALS, *ranked], level)

    @staticmethod
    def _split(text: str, level: str) -> list[str]:
        return _WORD.findall(text.lower()) if level == "word" else list(text)

    def tokenize(self, text: str) -> list[str]:
        return self._split(text, self.level)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no [CLS]/[PAD] added)."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str ({type(text).__name__} given)")
        return [self._ids.get(t, self.unk_id) for t in self.tokenize(text)]

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_special: bool = True) -> str:
        """Text of ``ids``; ``skip_special`` drops [PAD] and [CLS] ([MASK]/[UNK] stay visible)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        toks = []
        for i in ids:
            i = checks.integer("ids[i]", i, min=0, max=len(self.vocab) - 1)
            if skip_special and i in (self.pad_id, self.cls_id):
                continue
            toks.append(self.vocab[i])
        return (" " if self.level == "word" else "").join(toks)

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"Tokenizer(level={self.level!r}, vocab_size={len(self)})"


@functools.lru_cache(maxsize=1)
def raw_topics() -> dict[str, str]:
    """topic -> raw help text, from the snapshot shipped with the kit (not this Python's pydoc_data)."""
    from importlib.resources import files

    return json.loads(gzip.decompress(files("sslkit.data").joinpath(TOPICS_FILE).read_bytes()))


@functools.lru_cache(maxsize=1)
def topic_texts() -> dict[str, tuple[str, str]]:
    """topic -> (train text, test text): cleaned, cut at a space near TRAIN_FRACTION."""
    topics = raw_topics()
    out = {}
    for name in sorted(topics):
        if name not in TOPIC_GROUPS:
            continue
        text = clean(topics[name])
        cut = text.find(" ", int(len(text) * TRAIN_FRACTION))
        cut = len(text) if cut < 0 else cut
        out[name] = (text[:cut].strip(), text[cut:].strip())
    return out


@functools.lru_cache(maxsize=8)
def tokenizer(level: str = "word", max_vocab: int | None = None) -> Tokenizer:
    """The corpus tokenizer: vocabulary from the train text of every topic (cached)."""
    return Tokenizer.from_text(" ".join(tr for tr, _ in topic_texts().values()), level, max_vocab)


def _windows(ids: list[int], seq_len: int) -> torch.Tensor:
    """``[CLS]`` + consecutive chunks of seq_len - 1 ids, the last one [PAD]-ed: (W, seq_len)."""
    body = seq_len - 1
    w = max(1, -(-len(ids) // body))
    out = torch.full((w, body), Tokenizer.pad_id, dtype=torch.int64)
    out.view(-1)[: len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return torch.cat([torch.full((w, 1), Tokenizer.cls_id, dtype=torch.int64), out], dim=1)


@register("corpus", kind="text", splits=("train", "test"), embedded=True,
          description="English text of Python's help topics (pydoc_data), word or char tokens; "
                      "label = topic group (6 classes), factor topic")
def build(split: str, root: str, seed: int, level: str = "word", seq_len: int | None = None,
          max_vocab: int | None | str = "auto") -> Dataset:
    """Tokenize the ``corpus`` split into int64 (N, seq_len) windows.

    Args:
        split: "train" (first 80% of each topic) or "test" (the rest).
        root: unused (the text ships with the kit).
        level: "word" or "char".
        seq_len: tokens per window including [CLS], 2..4096 (default 64 words / 128 chars).
        max_vocab: vocabulary size including the 4 specials (default 5000 for words, every
            character for chars) with "auto"; None = no limit.
    """
    level = checks.choice("level", level, ("word", "char"))
    seq_len = DEFAULT_SEQ_LEN[level] if seq_len is None else seq_len
    seq_len = checks.integer("seq_len", seq_len, min=2, max=4096)
    if isinstance(max_vocab, str) and max_vocab == "auto":
        max_vocab = DEFAULT_MAX_VOCAB[level]
    if max_vocab is not None:
        max_vocab = checks.integer("max_vocab", max_vocab, min=len(Tokenizer.SPECIALS) + 1)
    tok = tokenizer(level, max_vocab)
    texts = topic_texts()
    topic_names = list(texts)
    rows, labels, topic_ids = [], [], []
    for t, name in enumerate(topic_names):
        part = texts[name][0 if split == "train" else 1]
        if not part:
            continue
        win = _windows(tok.encode(part), seq_len)
        rows.append(win)
        labels.append(torch.full((len(win),), GROUPS.index(TOPIC_GROUPS[name])))
        topic_ids.append(torch.full((len(win),), t))
    order = torch.randperm(sum(len(r) for r in rows),
                           generator=torch.Generator().manual_seed(seed % 2**63))
    return Dataset(name="corpus", split=split, kind="text", x=torch.cat(rows)[order],
                   labels=torch.cat(labels)[order], classes=list(GROUPS),
                   factors={"topic": torch.cat(topic_ids)[order]}, tokenizer=tok,
                   meta={"source": "pydoc_data.topics of CPython 3.11.7 (Python documentation), "
                                   f"bundled as sslkit/data/{TOPICS_FILE}",
                         "licence": "PSF License / Zero-Clause BSD (Python documentation)",
                         "seed": seed, "level": level, "seq_len": seq_len, "max_vocab": max_vocab,
                         "factor_values": {"topic": topic_names},
                         "skipped_topics": sorted(set(raw_topics()) - set(TOPIC_GROUPS))})
