"""The explorers of notebooks 09-10: SwAV's prototype explorer and the GPT sampling explorer."""
import pytest
import torch

import sslkit
from sslkit.widgets import cluster_sizes, prototype_explorer, reshape_distribution, sampling_explorer


def test_cluster_sizes_against_a_loop_and_bad_ids():
    a = torch.tensor([0, 2, 2, 4, 2, 0])
    ref = [sum(1 for v in a.tolist() if v == k) for k in range(5)]
    assert cluster_sizes(a, 5).tolist() == ref
    with pytest.raises(ValueError, match="assignment"):
        cluster_sizes(a, 4)                        # id 4 not in 0..3
    with pytest.raises(ValueError, match="n_clusters"):
        cluster_sizes(a, 0)


def _swav():
    torch.manual_seed(0)
    train = sslkit.data.load("digits")
    return sslkit.create("swav", data=train, n_prototypes=10), train


def test_prototype_explorer_controls_change_the_view():
    model, train = _swav()
    x = train.batch(torch.arange(60))
    w = prototype_explorer(model, x, labels=train.labels[:60], classes=train.classes, n_show=6)
    first = w.view.value
    assert first[:4] == b"\x89PNG"
    w.controls["sinkhorn"].value = True
    second = w.view.value
    assert second != first
    w.controls["rank"].value = 2
    assert w.view.value != second


def test_prototype_explorer_bad_inputs():
    model, train = _swav()
    x = train.batch(torch.arange(10))
    with pytest.raises(ValueError, match="codes"):
        prototype_explorer(torch.nn.Linear(2, 2), x)
    with pytest.raises(ValueError, match="labels"):
        prototype_explorer(model, x, labels=torch.arange(9))
    with pytest.raises(ValueError, match="n_show"):
        prototype_explorer(model, x, n_show=0)


def test_reshape_distribution_matches_softmax_of_scaled_logits():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, generator=g, dtype=torch.float64)
    p = logits.softmax(0)
    for t in (0.3, 1.0, 2.5):
        assert torch.allclose(reshape_distribution(p, t), (logits / t).softmax(0), atol=1e-10)
        # top-k written differently: a loop that zeroes every token below the k-th largest logit
        kth = sorted(logits.tolist(), reverse=True)[4]
        ref = torch.tensor([float(torch.tensor(v / t).exp()) if v >= kth else 0.0 for v in logits.tolist()],
                           dtype=torch.float64)
        assert torch.allclose(reshape_distribution(p, t, top_k=5), ref / ref.sum(), atol=1e-10)
    greedy = reshape_distribution(p, 0.0)
    assert greedy.sum() == 1 and greedy[logits.argmax()] == 1
    with pytest.raises(ValueError, match="temperature"):
        reshape_distribution(p, -1.0)
    with pytest.raises(ValueError, match="top_k"):
        reshape_distribution(p, 1.0, top_k=51)


def test_sampling_explorer_controls_change_the_view():
    torch.manual_seed(0)
    train = sslkit.data.load("corpus")
    gpt = sslkit.create("gpt", data=train).eval()
    w = sampling_explorer(gpt, "the value of", max_new_tokens=4, n_samples=2)
    first = w.view.value
    assert "<table>" in first and first.count("<li>") == 2
    w.controls["temperature"].value = 0.0          # greedy: both samples are the same text
    greedy = w.view.value
    assert greedy != first
    items = [item.replace("</ol>", "") for item in greedy.split("<li>")[1:]]
    assert items[0] == items[1]
    w.controls["temperature"].value = 1.0
    w.controls["top_k"].value = 1                  # only the most likely token keeps probability
    assert "1.000" in w.view.value
    with pytest.raises(ValueError, match="predict_next"):
        sampling_explorer(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="prompt"):
        sampling_explorer(gpt, prompt=3)
