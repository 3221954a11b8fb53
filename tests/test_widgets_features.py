"""The evaluation explorers of notebooks 05-07: the kNN vote equals the kit's kNN, controls re-render."""
import pytest
import torch

import sslkit
from sslkit.widgets.features import frame_prediction_explorer, knn_vote_explorer, knn_votes


def _feats(n, d=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = torch.randn(classes, d, generator=g) * 3
    return centres[labels] + torch.randn(n, d, generator=g), labels


def test_knn_votes_agree_with_kit_knn_and_a_loop():
    tr, ytr = _feats(60)
    te, yte = _feats(25, seed=1)
    preds = []
    for q in te:
        idx, sim, votes = knn_votes(tr, ytr, q, 3, k=7, temperature=0.1)
        # naive reference: loop over every training item, sort by cosine similarity
        cos = [float(torch.dot(q, x) / (q.norm() * x.norm())) for x in tr]
        order = sorted(range(len(tr)), key=lambda i: -cos[i])[:7]
        assert sorted(idx.tolist()) == sorted(order)
        ref = [0.0] * 3
        for i in order:
            ref[int(ytr[i])] += torch.tensor(cos[i] / 0.1).exp().item()
        assert torch.allclose(votes, torch.tensor(ref), rtol=1e-4)
        preds.append(int(votes.argmax()))
    acc = (torch.tensor(preds) == yte).float().mean().item()
    assert acc == pytest.approx(sslkit.eval.knn_accuracy(tr, ytr, te, yte, k=7, temperature=0.1))


def test_knn_votes_bad_inputs():
    tr, ytr = _feats(10)
    with pytest.raises(ValueError, match="k"):
        knn_votes(tr, ytr, tr[0], 3, k=11)
    with pytest.raises(ValueError, match="temperature"):
        knn_votes(tr, ytr, tr[0], 3, k=3, temperature=0)
    with pytest.raises(ValueError, match="query"):
        knn_votes(tr, ytr, tr[0, :3], 3, k=3)


def test_knn_vote_explorer_controls_change_the_image():
    tr_x = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    te_x = torch.rand(10, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    tr, ytr = _feats(30)
    te, yte = _feats(10, seed=1)
    w = knn_vote_explorer(tr_x, tr, te_x, te, ytr, yte, classes=["a", "b", "c"], k=5)
    first = w.view.value
    assert first[:4] == b"\x89PNG"
    w.controls["index"].value = 3
    assert w.view.value != first
    second = w.view.value
    w.controls["k"].value = 12
    assert w.view.value != second
    third = w.view.value
    w.controls["temperature"].value = 1.0
    assert w.view.value != third
    with pytest.raises(ValueError, match="test_feats"):
        knn_vote_explorer(tr_x, tr, te_x, te[:5], ytr, yte)
    with pytest.raises(ValueError, match="labels"):
        knn_vote_explorer(tr_x, tr, te_x, te)


def test_knn_vote_explorer_takes_datasets():
    ds = sslkit.data.load("digits", split="test")
    small = ds.subset(torch.arange(40))
    feats = small.batch(torch.arange(40)).flatten(1)
    w = knn_vote_explorer(small, feats, small, feats, k=3)
    assert w.view.value[:4] == b"\x89PNG"


def test_frame_prediction_explorer_controls_and_inputs():
    clips = torch.rand(4, 6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    calls = []

    def copy_last(c):          # the "next frame = last frame" predictor
        calls.append(c.shape[1])
        return c[:, -1]

    w = frame_prediction_explorer(copy_last, clips)
    assert calls[-1] == 5      # default context: every frame but the last
    first = w.view.value
    w.controls["context"].value = 2
    assert calls[-1] == 2 and w.view.value != first
    second = w.view.value
    w.controls["index"].value = 1
    assert w.view.value != second
    with pytest.raises(ValueError, match="clips"):
        frame_prediction_explorer(copy_last, clips[:, :1])
    with pytest.raises(ValueError, match="context"):
        frame_prediction_explorer(copy_last, clips, context=6)
