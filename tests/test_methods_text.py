"""Next-token prediction on text: GPT (causal mask, loss, sampling) and word2vec (subsampling, noise
distribution, windows, neighbours, analogies), with training, bad input and exact resume."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

import sslkit
from sslkit import backbones, losses
from sslkit.methods import gpt as gpt_module
from sslkit.methods import word2vec as w2v
from sslkit.train import fit


@pytest.fixture(scope="module")
def corpus():
    return sslkit.data.load("corpus")


def tiny_gpt(ds, **config):
    net = backbones.create("transformer", vocab_size=ds.vocab_size, max_len=ds.sample_shape[0], embed_dim=32,
                           depth=1, num_heads=2, causal=True)
    return sslkit.create("gpt", data=ds, backbone=net, **config)


def train(method, batch, steps=30, lr=None):
    opt = torch.optim.AdamW(method.parameters(), lr=lr or method.default_lr * 3)
    history = []
    for k in range(steps):
        out = method.training_step(batch)
        assert all(v.ndim == 0 and torch.isfinite(v) for v in out.values()), out
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_step_end(k + 1, steps)
        history.append(out["loss"].item())
    return history


# --- GPT ---------------------------------------------------------------------------------------------
def test_gpt_learns_and_embeds(corpus):
    method = tiny_gpt(corpus)
    batch = corpus.batch(torch.arange(8))[:, :32]
    hist = train(method, batch)
    assert sum(hist[-5:]) / 5 < 0.9 * sum(hist[:5]) / 5, hist
    feats = method.embed(batch)
    assert feats.shape == (8, method.embed_dim) == (8, 32)
    assert torch.isfinite(feats).all() and not feats.requires_grad
    # embed = mean of the per-position outputs over the non-padding tokens (documented pooling)
    padded = batch.clone()
    padded[0, 20:] = corpus.tokenizer.pad_id
    h = method.backbone.forward_tokens(padded)
    torch.testing.assert_close(method.embed(padded)[0], h[0, :20].mean(0))


def test_causal_mask_later_tokens_never_change_earlier_logits(corpus):
    method = tiny_gpt(corpus).eval()
    ids = corpus.batch(torch.arange(4))[:, :24]
    base = method.logits(ids)
    for t in (0, 5, 22):
        changed = ids.clone()
        changed[:, t + 1:] = torch.randint(4, corpus.vocab_size, changed[:, t + 1:].shape)
        changed[1, t + 1:] = corpus.tokenizer.pad_id             # padding after t changes nothing either
        out = method.logits(changed)
        assert torch.equal(out[:, :t + 1], base[:, :t + 1])        # bit-identical
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])  # ...while later logits do change
    # the encoder (causal=False) does look ahead
    enc = backbones.create("transformer", vocab_size=corpus.vocab_size, max_len=64, embed_dim=32, depth=1,
                           num_heads=2)
    changed = ids.clone()
    changed[:, 10:] = 5
    assert not torch.allclose(enc.forward_tokens(changed)[:, :10], enc.forward_tokens(ids)[:, :10])


def loop_next_token_ce(logits, ids, pad_id):
    total, n = 0.0, 0
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            target = int(ids[b, t + 1])
            if target == pad_id:
                continue
            logp = logits[b, t] - torch.logsumexp(logits[b, t], dim=0)
            total -= float(logp[target])
            n += 1
    return total / max(n, 1)


def test_next_token_cross_entropy_matches_a_loop_reference():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 7, generator=g, dtype=torch.float64)
    ids = torch.randint(1, 7, (3, 6), generator=g)
    ids[0, 4:] = 0
    ids[2, 1:] = 0
    assert losses.next_token_cross_entropy(logits, ids, pad_id=0).item() == pytest.approx(
        loop_next_token_ce(logits, ids, 0), rel=1e-12)
    assert losses.next_token_cross_entropy(logits, ids).item() == pytest.approx(
        loop_next_token_ce(logits, ids, None), rel=1e-12)
    assert losses.next_token_cross_entropy(logits, torch.zeros(3, 6, dtype=torch.long), pad_id=0).item() == 0.0
    for kw, match in [(dict(logits=logits[0], ids=ids), "rank 3"), (dict(logits=logits, ids=ids[:, :5]), "must be"),
                      (dict(logits=logits[:, :1], ids=ids[:, :1]), "L >= 2"), (dict(logits=logits, ids=ids.float()), "integer"),
                      (dict(logits=logits, ids=ids, pad_id=9), "pad_id")]:
        with pytest.raises(ValueError, match=match):
            losses.next_token_cross_entropy(**kw)


def test_generate_greedy_temperature_and_top_k(corpus):
    torch.manual_seed(0)
    method = tiny_gpt(corpus).eval()
    train(method.train(), corpus.batch(torch.arange(8))[:, :32], steps=10)
    method.eval()
    prompt = "the value of"
    greedy = method.generate(prompt, 8, temperature=0)
    assert isinstance(greedy, str) and len(greedy.split()) == 8
    assert method.generate(prompt, 8, top_k=1) == greedy                     # top_k=1 is greedy
    g = torch.Generator().manual_seed
    # temperature -> 0: sampling concentrates on the argmax, whatever the random stream
    assert all(method.generate(prompt, 8, temperature=1e-4, generator=g(s)) == greedy for s in range(3))
    # same generator seed, same text; at temperature 1 different seeds give different texts
    assert method.generate(prompt, 8, generator=g(1)) == method.generate(prompt, 8, generator=g(1))
    assert len({method.generate(prompt, 8, temperature=2.0, generator=g(s)) for s in range(5)}) > 1
    # top_k=3: every sampled token is among the 3 most likely ones
    ids = method._ids(prompt).repeat(200, 1)
    allowed = set(method._next_logits(ids[:1])[0].topk(3).indices.tolist())
    out = method.generate(ids, 1, temperature=5.0, top_k=3, generator=g(0))
    assert out.shape == (200, ids.shape[1] + 1) and set(out[:, -1].tolist()) <= allowed
    assert len(set(out[:, -1].tolist())) == 3
    # never padding, [MASK] or [CLS]; prompts longer than max_len keep working
    long = method.generate(ids[:2], 80, temperature=3.0, generator=g(2))
    assert long.shape == (2, ids.shape[1] + 80)
    assert not set(long[:, ids.shape[1]:].flatten().tolist()) & {0, 1, 2}
    top = method.predict_next(prompt, top_k=4)
    assert len(top) == 4 and [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert top[0][0] == greedy.split()[0]


def test_weight_tying(corpus):
    tied, untied = tiny_gpt(corpus), tiny_gpt(corpus, tie_weights=False)
    assert tied.head is None and isinstance(untied.head, torch.nn.Linear)
    n = sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in tied.parameters())
    assert n == corpus.vocab_size * 32
    tied.training_step(corpus.batch(torch.arange(2))[:, :16])["loss"].backward()
    emb = tied.backbone.tok_embed.weight.grad
    # the output layer trains the embedding of tokens never read: rows of unseen tokens get gradient
    assert emb is not None and (emb.abs().sum(1) > 0).sum() > 100


def test_perplexity_and_ngram_baselines(corpus):
    method = tiny_gpt(corpus).eval()
    ids = corpus.batch(torch.arange(6))[:, :20]
    expected = math.exp(losses.next_token_cross_entropy(method.logits(ids), ids, 0).item())
    assert method.perplexity(ids, batch_size=4) == pytest.approx(expected, rel=1e-5)   # 2 chunks, token-weighted
    # n-gram baselines against counting by hand: train "a b a b a c", test "a b"
    a, b, c = 4, 5, 6
    train_ids, test_ids = torch.tensor([[a, b, a, b, a, c]]), torch.tensor([[a, b, 0]])
    v = 7
    uni = Counter([b, a, b, a, c])
    p1 = {w: (uni[w] + 1.0) / (5 + v) for w in range(v)}
    assert gpt_module.ngram_perplexity(train_ids, test_ids, v, order=1) == pytest.approx(1 / p1[b])
    p2 = (2 + 10 * p1[b]) / (3 + 10)                               # c(a, b) = 2, c(a) = 3, beta = 10
    assert gpt_module.ngram_perplexity(train_ids, test_ids, v, order=2) == pytest.approx(1 / p2)
    with pytest.raises(ValueError, match="order"):
        gpt_module.ngram_perplexity(train_ids, test_ids, v, order=3)
    with pytest.raises(ValueError, match="allowed"):
        gpt_module.ngram_perplexity(train_ids, test_ids, 5)


def test_gpt_bad_inputs(corpus):
    method = tiny_gpt(corpus)
    with pytest.raises(ValueError, match="integer"):
        method.training_step(torch.rand(4, 16))
    with pytest.raises(ValueError, match="rank 2"):
        method.training_step(torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="L >= 2"):
        method.training_step(torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="allowed"):
        method.training_step(torch.full((2, 8), corpus.vocab_size))
    with pytest.raises(ValueError, match="top_k"):
        method.generate("the", 3, top_k=0)
    with pytest.raises(ValueError, match="temperature"):
        method.generate("the", 3, temperature=-1)
    with pytest.raises(ValueError, match="text must be a str"):
        method.predict_next(5)
    with pytest.raises(ValueError, match="needs data"):
        sslkit.create("gpt")
    with pytest.raises(ValueError, match="text data"):
        sslkit.create("gpt", data=sslkit.data.load("digits"))
    with pytest.raises(ValueError, match="causal"):
        sslkit.create("gpt", data=corpus, backbone=backbones.create("transformer", vocab_size=corpus.vocab_size))
    with pytest.raises(ValueError, match="causal token model|trains on text data"):   # the factory or the registry
        sslkit.create("gpt", data=corpus, backbone="conv1d")
    with pytest.raises(ValueError, match="causal"):
        backbones.create("transformer", vocab_size=10, causal=1)
    default = sslkit.create("gpt", data=corpus)
    assert default.backbone.causal and default.backbone_name == "transformer"


# --- word2vec ----------------------------------------------------------------------------------------
def tiny_w2v(ds, **config):
    return sslkit.create("word2vec", data=ds, **{"dim": 16, **config})


def test_word2vec_learns_and_embeds(corpus):
    torch.manual_seed(0)
    method = tiny_w2v(corpus)
    batch = corpus.batch(torch.arange(32))
    hist = train(method, batch, lr=3e-2)
    assert sum(hist[-5:]) / 5 < 0.9 * sum(hist[:5]) / 5, hist
    feats = method.embed(batch)
    assert feats.shape == (32, method.embed_dim) == (32, 16)
    assert torch.isfinite(feats).all() and not feats.requires_grad
    # embed = mean of the word vectors of each text, special tokens left out (loop reference)
    table = method.backbone.embedding.weight
    for row in range(3):
        words = [int(i) for i in batch[row] if int(i) not in corpus.tokenizer.special_ids]
        torch.testing.assert_close(feats[row], table[words].mean(0))
    assert torch.equal(method.embed(torch.zeros(1, 5, dtype=torch.long)), torch.zeros(1, 16))   # no words


def test_subsampling_probabilities_follow_the_formula(corpus):
    counts = torch.tensor([0, 0, 0, 0, 5000, 1000, 10, 1])
    keep = w2v.keep_probability(counts, 1e-3)
    total = counts.sum().item()
    for w, c in enumerate(counts.tolist()):
        expected = 0.0 if c == 0 else min(1.0, math.sqrt(1e-3 / (c / total)))
        assert keep[w].item() == pytest.approx(expected, rel=1e-6)
    assert w2v.keep_probability(counts, 0.0).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    # drawn per token: the kept share of each word matches its keep probability (4 sigma)
    ids = torch.arange(4, 8).repeat(2000, 10)                          # 20000 tokens of each word
    probs = torch.tensor([0, 0, 0, 0, 0.2, 0.5, 0.9, 1.0])
    kept = w2v.subsample(ids, probs, torch.Generator().manual_seed(0))
    for w in range(4, 8):
        share, p = kept[ids == w].float().mean().item(), probs[w].item()
        assert abs(share - p) <= 4 * math.sqrt(p * (1 - p) / 20000) + 1e-9
    # the method's table: the most frequent word of the corpus is thinned, rare words are all kept
    method = tiny_w2v(corpus)
    the = corpus.tokenizer.encode("the")[0]
    f = method.counts[the].item() / method.counts.sum().item()
    assert method.keep_prob[the].item() == pytest.approx(math.sqrt(1e-3 / f), rel=1e-5) and f > 0.01
    assert method.keep_prob[list(corpus.tokenizer.special_ids)].eq(0).all()


def test_noise_words_follow_unigram_to_the_three_quarters(corpus):
    method = tiny_w2v(corpus, negatives=5)
    counts = method.counts.double()
    expected = counts.pow(0.75) / counts.pow(0.75).sum()
    torch.testing.assert_close(method.noise.double(), expected, rtol=1e-5, atol=1e-9)
    draws = method.draw_noise(40000, torch.Generator().manual_seed(0))             # 200k noise words
    assert draws.shape == (40000, 5)
    freq = torch.bincount(draws.flatten(), minlength=len(counts)).double() / draws.numel()
    top = expected.topk(20).indices
    sigma = (expected[top] * (1 - expected[top]) / draws.numel()).sqrt()
    assert ((freq[top] - expected[top]).abs() <= 4 * sigma).all()
    # power 0.75 flattens: the frequent words are drawn less often than their count share
    assert freq[top[0]] < counts[top[0]] / counts.sum()
    assert freq[list(corpus.tokenizer.special_ids)].eq(0).all()


def loop_pairs(row: list[int], window: int) -> Counter:
    return Counter((row[i], row[j]) for i in range(len(row)) for j in range(len(row))
                   if i != j and abs(i - j) <= window)


def test_skipgram_pairs_windows_and_dropped_words():
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([[4, 5, 6, 7, 8, 9, 0, 0], [9, 8, 7, 6, 5, 4, 6, 2]])
    keep_all = torch.tensor([0.0] * 4 + [1.0] * 6)                     # specials 0..3 never kept
    centre, context, valid = w2v.skipgram_pairs(ids, keep_all, 1, g)   # window 1: reach always 1
    got = Counter()
    for b, i, j in valid.nonzero().tolist():
        got[(int(centre[b, i]), int(context[b, i, j]))] += 1
    expected = loop_pairs([4, 5, 6, 7, 8, 9], 1) + loop_pairs([9, 8, 7, 6, 5, 4, 6], 1)
    assert got == expected
    # a dropped word vanishes: its neighbours become neighbours
    drop6 = keep_all.clone()
    drop6[6] = 0
    centre, context, valid = w2v.skipgram_pairs(ids[:1], drop6, 1, g)
    pairs = {(int(centre[0, i]), int(context[0, i, j])) for _, i, j in valid.nonzero().tolist()}
    assert pairs == set(loop_pairs([4, 5, 7, 8, 9], 1))
    # dynamic window: a context at distance d counts with probability (W - d + 1) / W
    W = 4
    long = torch.arange(4, 44).repeat(2000, 1)
    _, _, valid = w2v.skipgram_pairs(long, torch.ones(44), W, g)
    inner = valid[:, W:-W]                                              # centres with all 2W offsets inside
    offsets = torch.cat([torch.arange(-W, 0), torch.arange(1, W + 1)])
    for k, d in enumerate(offsets.abs().tolist()):
        assert inner[:, :, k].float().mean().item() == pytest.approx((W - d + 1) / W, abs=0.01)


def test_nearest_and_analogy_on_planted_vectors(corpus):
    method = tiny_w2v(corpus)
    tok = corpus.tokenizer
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        table = method.backbone.embedding.weight
        table.copy_(torch.randn(table.shape, generator=g))
        a, b, c, d = (tok.encode(w)[0] for w in ("int", "integer", "float", "floating"))
        unit = torch.nn.functional.normalize(table, dim=1)
        table[d] = 3 * torch.nn.functional.normalize(unit[b] - unit[a] + unit[c], dim=0)
        table[tok.encode("list")[0]] = 0.5 * table[tok.encode("lists")[0]] + 0.01 * torch.randn(16, generator=g)
    assert method.analogy("int", "integer", "float")[0][0] == "floating"
    assert method.analogy("int", "integer", "float")[0][1] == pytest.approx(1.0, abs=1e-5)
    near = method.nearest("list", k=5)
    assert near[0][0] == "lists" and len(near) == 5
    assert "list" not in [w for w, _ in near] and not {w for w, _ in near} & set(tok.SPECIALS)
    assert [s for _, s in near] == sorted((s for _, s in near), reverse=True)
    assert near[0][1] == pytest.approx(method.similarity("list", "lists"), abs=1e-6)
    for call, match in [(lambda: method.nearest("zzzqqq"), "'zzzqqq' is not a word"),
                        (lambda: method.nearest("[PAD]"), "not a word"),
                        (lambda: method.nearest("two words"), "not a word"),
                        (lambda: method.analogy("int", "nonexistentword", "float"), "b='nonexistentword'"),
                        (lambda: method.nearest("list", k=0), "k=0"), (lambda: method.nearest(3), "must be a str")]:
        with pytest.raises(ValueError, match=match):
            call()


def test_word2vec_bad_inputs(corpus):
    method = tiny_w2v(corpus)
    with pytest.raises(ValueError, match="integer"):
        method.training_step(torch.rand(4, 16))
    with pytest.raises(ValueError, match="allowed"):
        method.training_step(torch.full((2, 8), corpus.vocab_size))
    with pytest.raises(ValueError, match="rank 2"):
        method.embed(torch.zeros(8, dtype=torch.long))
    out = method.training_step(torch.zeros(2, 8, dtype=torch.long))    # only padding: no pair, zero loss
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    for kw, match in [(dict(window=0), "window"), (dict(subsample=2.0), "subsample"), (dict(dim=0), "dim"),
                      (dict(negatives=0), "negatives"), (dict(backbone="transformer"), "leave backbone=None"),
                      (dict(size=3), "not a setting")]:
        with pytest.raises(ValueError, match=match):
            sslkit.create("word2vec", data=corpus, **kw)
    with pytest.raises(ValueError, match="needs data"):
        sslkit.create("word2vec")
    with pytest.raises(ValueError, match="text data"):
        sslkit.create("word2vec", data=sslkit.data.load("digits"))


# --- resume, as for every method ---------------------------------------------------------------------
from interrupts import RaiseAt  # noqa: E402 (a Ctrl-C after a step)


@pytest.mark.parametrize("name", ["gpt", "word2vec"])
def test_resume_is_exact(tmp_path, corpus, name):
    data = corpus.subset(torch.arange(48))
    make = (lambda: tiny_gpt(corpus)) if name == "gpt" else (lambda: tiny_w2v(corpus))
    kw = dict(batch_size=8, device="cpu", progress=False, monitor_collapse=False, seed=2)
    torch.manual_seed(0)
    full = make()
    h_full = fit(full, data, steps=6, **kw)
    torch.manual_seed(0)
    fit(make(), data, steps=6, checkpoint=tmp_path / "c.pt", callbacks=[RaiseAt(4)], **kw)
    torch.manual_seed(0)
    resumed = make()
    h = fit(resumed, data, steps=6, resume=tmp_path / "c.pt", **kw)
    assert h.loss == h_full.loss
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
