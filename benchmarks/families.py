"""Does each of the newer families learn? SwAV on images (kNN), GPT and word2vec on ``corpus``.

    python benchmarks/families.py swav --data digits --steps 300
    python benchmarks/families.py gpt --steps 400 --batch-size 32 --lr 1e-3
    python benchmarks/families.py word2vec --steps 600
    python benchmarks/families.py mlm --steps 400 --batch-size 32 --lr 1e-3

Fixed step counts, one thread (set OMP_NUM_THREADS=1 too), seed 0. Every table has the baselines:
raw pixels and random init for images; for text the unigram/bigram perplexities, a bag-of-words
probe and the untrained model. Text probe = linear probe (``sslkit.eval.linear_probe``) of the
topic group (6 classes) from ``embed``, train split -> test split.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

import sslkit
from sslkit.methods.gpt import ngram_perplexity


def knn(features_of, train, test) -> float:
    tr_f, tr_y = sslkit.eval.extract_features(features_of, train)
    te_f, te_y = sslkit.eval.extract_features(features_of, test)
    return sslkit.eval.knn_accuracy(tr_f, tr_y, te_f, te_y, k=20)


def probe(features_of, train, test) -> float:
    tr_f, tr_y = sslkit.eval.extract_features(features_of, train)
    te_f, te_y = sslkit.eval.extract_features(features_of, test)
    return sslkit.eval.linear_probe(tr_f, tr_y, te_f, te_y)


def bag_of_words(ds):
    """Word frequencies per text (N, V), special tokens left out: the text analogue of raw pixels."""
    special = list(ds.tokenizer.special_ids)

    def feats(ids):
        counts = torch.zeros(ids.shape[0], ds.vocab_size).scatter_add_(1, ids, torch.ones(ids.shape))
        counts[:, special] = 0
        return counts / counts.sum(1, keepdim=True).clamp_min(1)
    return feats


def run_swav(args) -> None:
    train, test = sslkit.data.load(args.data), sslkit.data.load(args.data, split="test")
    config = dict(queue_length=args.queue, queue_start=args.queue_start) if args.queue else {}
    if args.prototypes:
        config["n_prototypes"] = args.prototypes
    torch.manual_seed(0)
    method = sslkit.create("swav", data=train, **config)
    untrained = copy.deepcopy(method)
    t0 = time.perf_counter()
    hist = sslkit.fit(method, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, progress=False,
                      device="cpu", seed=0, monitor_collapse=False)
    secs = time.perf_counter() - t0
    print(f"swav on {args.data}: {args.steps} steps at batch {args.batch_size} in {secs:.0f} s, config {config}; "
          f"loss {hist.loss[0]:.3f} -> {hist.loss[-1]:.3f}; prototypes used (nearest) "
          f"{hist.terms['prototypes_used'][0]:.2f} -> {hist.terms['prototypes_used'][-1]:.2f}")
    rows = [("raw pixels", lambda x: x.flatten(1)), ("random init", sslkit.eval.random_init(method)),
            ("untrained (step 0)", untrained), ("swav", method)]
    for name, model in rows:
        print(f"  kNN (k=20) {name:<20} {100 * knn(model, train, test):5.1f}")
    x = test.batch(torch.arange(len(test)))
    for name, model in (("untrained", untrained), ("swav", method)):
        for sk in (False, True):
            counts = torch.bincount(model.assign(x, sinkhorn=sk), minlength=model.config.n_prototypes)
            print(f"  {name:<9} assign(test, sinkhorn={sk!s:<5}): {int((counts > 0).sum())} prototypes used, "
                  f"largest takes {int(counts.max())} of {len(x)} images")
    for name, model, sk in (("untrained", untrained, True), ("swav", method, False)):
        a, purity = model.assign(x, sinkhorn=sk), 0
        for p in a.unique():
            purity += int(test.labels[a == p].bincount().max())
        print(f"  cluster purity of {name} assign(test, sinkhorn={sk}) (majority class per prototype): "
              f"{100 * purity / len(x):.1f}%")


def text_baselines(train, test) -> None:
    v = train.vocab_size
    print(f"  unigram perplexity (add-1)                 {ngram_perplexity(train.x, test.x, v, order=1):8.1f}")
    best = min((ngram_perplexity(train.x, test.x, v, order=2, beta=b), b) for b in (1, 3, 10, 30, 100, 300))
    print(f"  bigram perplexity (best beta on test: {best[1]:>3})  {best[0]:8.1f}")
    print(f"  probe: bag of words                        {100 * probe(bag_of_words(train), train, test):5.1f}")


def run_gpt(args) -> None:
    train, test = sslkit.data.load("corpus"), sslkit.data.load("corpus", split="test")
    print(f"gpt on corpus: {len(train)} train / {len(test)} test windows of {train.sample_shape[0]} tokens, "
          f"V = {train.vocab_size}")
    text_baselines(train, test)
    torch.manual_seed(0)
    method = sslkit.create("gpt", data=train)
    untrained = copy.deepcopy(method)
    print(f"  probe: untrained gpt (mean pooling)        {100 * probe(untrained, train, test):5.1f}")
    evals = []

    class Val(sslkit.train.Callback):
        def on_step_end(self, state):
            if state.step % args.every == 0:
                method.eval()
                evals.append((state.step, method.perplexity(test.x), state.history.loss[-1]))
                method.train()
                print(f"  step {evals[-1][0]:5d}: train loss {evals[-1][2]:.3f}, test perplexity {evals[-1][1]:7.1f}",
                      flush=True)
    t0 = time.perf_counter()
    sslkit.fit(method, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, progress=False,
               device="cpu", seed=0, monitor_collapse=False, callbacks=[Val()])
    method.eval()
    print(f"  trained {args.steps} steps at batch {args.batch_size} in {time.perf_counter() - t0:.0f} s; "
          f"test perplexity {method.perplexity(test.x):.1f} (train {method.perplexity(train.x):.1f})")
    print(f"  probe: gpt (mean pooling)                  {100 * probe(method, train, test):5.1f}")
    if args.save:
        torch.save(method.state_dict(), args.save)
    g = torch.Generator().manual_seed(0)
    for prompt in ("the value of", "a class", "if the"):
        print(f"  {prompt!r} -> greedy {method.generate(prompt, 12, temperature=0)!r}")
        print(f"  {'':>{len(prompt) + 2}}    T=0.8 top-10 {method.generate(prompt, 12, 0.8, 10, g)!r}")


def run_mlm(args) -> None:
    """The masked-LM counterpart of ``gpt`` on the same corpus, steps and probe (for comparison)."""
    train, test = sslkit.data.load("corpus"), sslkit.data.load("corpus", split="test")
    torch.manual_seed(0)
    method = sslkit.create("mlm", data=train)
    print(f"mlm on corpus: probe of the untrained encoder (CLS) {100 * probe(method, train, test):5.1f}")
    t0 = time.perf_counter()
    hist = sslkit.fit(method, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, progress=False,
                      device="cpu", seed=0, monitor_collapse=False)
    print(f"  trained {args.steps} steps at batch {args.batch_size} in {time.perf_counter() - t0:.0f} s; "
          f"loss {hist.loss[0]:.3f} -> {hist.loss[-1]:.3f}, masked-token accuracy {hist.terms['acc'][-1]:.2f}")
    print(f"  probe: mlm (CLS output)                    {100 * probe(method, train, test):5.1f}")

    def mean_pool(ids):
        h, keep = method.backbone.forward_tokens(ids), (ids != 0).unsqueeze(-1).float()
        return (h * keep).sum(1) / keep.sum(1).clamp_min(1)
    print(f"  probe: mlm (mean of the outputs)           {100 * probe(mean_pool, train, test):5.1f}")


def run_word2vec(args) -> None:
    train, test = sslkit.data.load("corpus"), sslkit.data.load("corpus", split="test")
    print(f"word2vec on corpus ({len(train)} windows)")
    text_baselines(train, test)
    torch.manual_seed(0)
    method = sslkit.create("word2vec", data=train)
    untrained = copy.deepcopy(method)
    print(f"  probe: untrained vectors (mean)            {100 * probe(untrained, train, test):5.1f}")
    t0 = time.perf_counter()
    hist = sslkit.fit(method, train, steps=args.steps, batch_size=args.batch_size, lr=args.lr, progress=False,
                      device="cpu", seed=0, monitor_collapse=False)
    print(f"  trained {args.steps} steps at batch {args.batch_size} in {time.perf_counter() - t0:.0f} s; "
          f"loss {hist.loss[0]:.3f} -> {hist.loss[-1]:.3f}, pos {hist.terms['pos'][-1]:.2f}, neg {hist.terms['neg'][-1]:.2f}")
    print(f"  probe: word2vec (mean of vectors)          {100 * probe(method, train, test):5.1f}")
    if args.save:
        torch.save(method.state_dict(), args.save)
    for w in ("class", "int", "list", "true", "dict", "string", "raise", "loop", "float"):
        print(f"  nearest {w!r}: " + ", ".join(f"{n} {s:.2f}" for n, s in method.nearest(w, 6)))
    for a, b, c in (("int", "integer", "float"), ("true", "false", "yes"), ("list", "lists", "tuple"),
                    ("list", "append", "set"), ("class", "classes", "function"), ("int", "float", "integers"),
                    ("str", "string", "int"), ("key", "keys", "value"), ("and", "or", "true")):
        try:
            out = method.analogy(a, b, c, 3)
        except ValueError as err:
            print(f"  analogy {a}:{b} :: {c}:?  ({err})")
            continue
        print(f"  analogy {a}:{b} :: {c}:? -> " + ", ".join(f"{n} {s:.2f}" for n, s in out))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("part", choices=("swav", "gpt", "word2vec", "mlm"))
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None, help="None: the method's default_lr x batch / 256")
    p.add_argument("--data", default="digits")
    p.add_argument("--every", type=int, default=100, help="gpt: test perplexity every this many steps")
    p.add_argument("--queue", type=int, default=0)
    p.add_argument("--queue-start", type=int, default=0)
    p.add_argument("--prototypes", type=int, default=0)
    p.add_argument("--save", default=None, help="write the trained method's state_dict here")
    args = p.parse_args()
    torch.set_num_threads(1)
    {"swav": run_swav, "gpt": run_gpt, "word2vec": run_word2vec, "mlm": run_mlm}[args.part](args)


if __name__ == "__main__":
    main()
