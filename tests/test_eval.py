"""sslkit.eval: probes against naive references, diagnostics on known cases, label-efficiency
subsets, bad inputs."""
import math

import pytest
import torch
from torch import nn

from sslkit import eval as ev


# -- helpers ---------------------------------------------------------------------------------------
def blobs(n_per_class=30, classes=4, dim=16, sep=6.0, seed=0):
    """Well-separated Gaussian blobs: (N, D) float features, (N,) int64 labels."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(99)) * sep
    g = torch.Generator().manual_seed(seed)  # the seed draws the noise: same classes, new samples
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    feats = centres[labels] + torch.randn(len(labels), dim, generator=g)
    return feats, labels


class TinyBackbone(nn.Module):
    """A real (small) backbone: conv + BN + pool, forward_features -> (B, 8)."""

    embed_dim = 8

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward_features(self, x):
        return self.net(x)

    forward = forward_features


def toy_images(n_per_class=12, seed=0):
    """Two classes of 8x8 images: bright top half vs bright bottom half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n_per_class, 1, 8, 8, generator=g) * 0.3
    labels = torch.arange(2).repeat_interleave(n_per_class)
    x[:n_per_class, :, :4] += 0.7
    x[n_per_class:, :, 4:] += 0.7
    return x, labels


def naive_knn(train, train_labels, test, k, temperature, num_classes):
    preds = []
    for q in test:
        sims = [float(torch.dot(q / q.norm(), t / t.norm())) for t in train]
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:min(k, len(sims))]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(train_labels[i])] += math.exp(sims[i] / temperature)
        preds.append(max(range(num_classes), key=lambda c: (votes[c], -c)))
    return torch.tensor(preds)


# -- kNN --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 20, 200])
def test_knn_matches_naive_loop(k):
    g = torch.Generator().manual_seed(1)
    train, test = torch.randn(60, 5, generator=g), torch.randn(25, 5, generator=g)
    train_y = torch.randint(0, 3, (60,), generator=g)
    test_y = torch.randint(0, 3, (25,), generator=g)
    ref = naive_knn(train, train_y, test, k, 0.5, 3)
    assert ev.knn_accuracy(train, train_y, test, test_y, k=k, temperature=0.5) == pytest.approx(
        (ref == test_y).float().mean().item())


def test_knn_chunking_matches_single_chunk(monkeypatch):
    train, train_y = blobs(20, 3, 6, sep=1.0, seed=2)
    test, test_y = blobs(10, 3, 6, sep=1.0, seed=3)
    full = ev.knn.knn_predict(train, train_y, test, 3, k=7, temperature=0.1)
    monkeypatch.setattr(ev.knn, "_MAX_SIM_ENTRIES", 2 * len(train))  # 2 test rows per chunk
    assert torch.equal(ev.knn.knn_predict(train, train_y, test, 3, k=7, temperature=0.1), full)


def test_knn_k_larger_than_train_uses_all_and_separable_is_perfect():
    train, train_y = blobs(1, 4, 16)  # one sample per class
    test, test_y = blobs(20, 4, 16)
    assert ev.knn_accuracy(train, train_y, test, test_y, k=200) == 1.0


def test_knn_is_scale_invariant():
    train, train_y = blobs(10, 3, 8, sep=1.0)
    test, test_y = blobs(10, 3, 8, sep=1.0, seed=5)
    a = ev.knn_accuracy(train, train_y, test, test_y)
    assert ev.knn_accuracy(train * 7.0, train_y, test * 0.1, test_y) == a


# -- linear probe ------------------------------------------------------------------------------------
def test_linear_probe_separable_data():
    train, train_y = blobs(30, 5, 20)
    test, test_y = blobs(30, 5, 20, seed=1)
    assert ev.linear_probe(train, train_y, test, test_y) == 1.0


def test_linear_probe_beats_chance_on_linear_but_not_radial_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()  # linear boundary
    assert ev.linear_probe(x[:300], y[:300], x[300:], y[300:]) > 0.95
    r = (x.norm(dim=1) > 1.18).long()  # circular boundary: no linear classifier does well
    assert ev.linear_probe(x[:300], r[:300], x[300:], r[300:]) < 0.75


def test_linear_probe_works_under_no_grad_and_is_deterministic():
    train, train_y = blobs(5, 3, 10, sep=1.0)
    test, test_y = blobs(20, 3, 10, sep=1.0, seed=4)
    with torch.no_grad():
        a = ev.linear_probe(train, train_y, test, test_y, seed=3)
    assert a == ev.linear_probe(train, train_y, test, test_y, seed=3)


# -- features ---------------------------------------------------------------------------------------
def test_extract_features_eval_mode_batches_and_restores_modes():
    x, y = toy_images()
    model = TinyBackbone()
    model.train()
    model.net[1].eval()  # a submodule deliberately in eval mode must stay so
    f1, labels = ev.extract_features(model, (x, y), batch_size=5)
    assert f1.shape == (len(x), 8) and torch.equal(labels, y)
    assert model.training and model.net[0].training and not model.net[1].training
    model.eval()
    with torch.no_grad():
        ref = model.forward_features(x)
    torch.testing.assert_close(f1, ref)
    assert not f1.requires_grad


def test_extract_features_method_embed_and_callable():
    x, y = toy_images()

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = TinyBackbone()

        def embed(self, x):
            return 2 * self.backbone(x)

    m = M()
    f, _ = ev.extract_features(m, (x, y), batch_size=7)
    m.eval()
    torch.testing.assert_close(f, 2 * m.backbone(x))
    f2, _ = ev.extract_features(ev.raw_pixels, (x, y))
    torch.testing.assert_close(f2, x.flatten(1))


def test_extract_features_rejects_non_2d_output():
    x, y = toy_images()
    with pytest.raises(ValueError, match="model"):
        ev.extract_features(lambda b: b, (x, y))


# -- fine-tune and baselines -------------------------------------------------------------------------
def test_fine_tune_learns_and_leaves_model_untouched():
    x, y = toy_images(20)
    model = TinyBackbone()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    acc = ev.fine_tune(model, (x, y), toy_images(20, seed=1), steps=60, lr=1e-2)
    assert acc > 0.9
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_random_init_is_seeded_fresh_copy():
    model = TinyBackbone()
    a, b = ev.random_init(model, seed=1), ev.random_init(model, seed=1)
    c = ev.random_init(model, seed=2)
    wa, wb, wc = a.net[0].weight, b.net[0].weight, c.net[0].weight
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)
    assert wa is not model.net[0].weight


# -- diagnostics --------------------------------------------------------------------------------------
def test_feature_std_collapsed_and_isotropic():
    z = torch.randn(1, 64).repeat(100, 1)
    assert ev.feature_std(z) == pytest.approx(0.0, abs=1e-6)
    iso = torch.randn(4000, 64)
    assert ev.feature_std(iso) == pytest.approx(1 / math.sqrt(64), rel=0.05)


def test_feature_std_matches_naive():
    z = torch.randn(50, 6)
    zn = [row / row.norm() for row in z]
    stds = []
    for d in range(6):
        col = [float(r[d]) for r in zn]
        m = sum(col) / len(col)
        stds.append(math.sqrt(sum((c - m) ** 2 for c in col) / (len(col) - 1)))
    assert ev.feature_std(z) == pytest.approx(sum(stds) / 6, rel=1e-5)


def test_effective_rank_known_cases_and_reference():
    assert ev.effective_rank(torch.randn(1, 32).repeat(50, 1)) == pytest.approx(1.0, abs=1e-3)
    assert ev.effective_rank(torch.randn(5000, 16)) > 15.5  # isotropic: close to full rank 16
    z = torch.randn(40, 8) @ torch.diag(torch.tensor([5.0, 3, 2, 1, 0.5, 0.1, 0.01, 0]))
    s = torch.linalg.svdvals(z.double()).tolist()
    p = [v / (sum(s) + 1e-7) + 1e-7 for v in s]
    assert ev.effective_rank(z) == pytest.approx(math.exp(-sum(q * math.log(q) for q in p)), rel=1e-6)


def test_alignment_and_uniformity_reference():
    z1, z2 = torch.randn(30, 4), torch.randn(30, 4)
    assert ev.alignment(z1, z1) == pytest.approx(0.0, abs=1e-6)
    a = [float((z1[i] / z1[i].norm() - z2[i] / z2[i].norm()).norm() ** 3) for i in range(30)]
    assert ev.alignment(z1, z2, alpha=3) == pytest.approx(sum(a) / 30, rel=1e-5)
    zn = [r / r.norm() for r in z1]
    terms = [math.exp(-2 * float((zn[i] - zn[j]).norm() ** 2)) for i in range(30) for j in range(i + 1, 30)]
    assert ev.uniformity(z1, t=2) == pytest.approx(math.log(sum(terms) / len(terms)), rel=1e-5)
    assert ev.uniformity(torch.ones(10, 4)) == pytest.approx(0.0, abs=1e-6)
    assert ev.uniformity(torch.randn(500, 64)) < ev.uniformity(torch.randn(500, 64) + 3)


# -- label efficiency ----------------------------------------------------------------------------------
def test_stratified_subset_is_stratified_seeded_and_skips_unlabeled():
    labels = torch.tensor([0] * 10 + [1] * 7 + [2] * 9 + [-1] * 5)[torch.randperm(31)]
    a = ev.stratified_subset(labels, 3, seed=0)
    assert torch.equal(a, ev.stratified_subset(labels, 3, seed=0))
    assert not torch.equal(a, ev.stratified_subset(labels, 3, seed=1))
    assert sorted(labels[a].tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert len(set(a.tolist())) == 9
    assert sorted(ev.stratified_subset(labels, None, 0).tolist()) == torch.nonzero(labels >= 0).flatten().tolist()


def test_label_efficiency_table_plot_and_shared_subsets(tmp_path):
    x, y = toy_images(15)
    xt, yt = toy_images(10, seed=1)
    model = TinyBackbone()
    res = ev.label_efficiency({"tiny": model}, (x, y), (xt, yt), labels_per_class=(1, 5, None),
                              seeds=range(3), probe="knn", baselines=("raw pixels", "random init"))
    assert list(res.scores) == ["raw pixels", "random init", "tiny"]
    assert all(len(v) == 3 for row in res.scores.values() for v in row.values())
    assert res.scores["raw pixels"]["all"][0] == ev.knn_accuracy(x.flatten(1), y, xt.flatten(1), yt)
    # the same subset per seed for every row: precomputed raw features reproduce the raw row
    res2 = ev.label_efficiency({"pix": (x.flatten(1), xt.flatten(1))}, (x, y), (xt, yt),
                               labels_per_class=(1, 5, None), seeds=range(3), baselines=())
    assert res2.scores["pix"] == res.scores["raw pixels"]
    table = res.table()
    assert "raw pixels" in table and "all labels" in table and "±" in table
    path = res.plot(tmp_path / "sub" / "le.png")
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"


def test_label_efficiency_linear_and_supervised():
    x, y = toy_images(10)
    xt, yt = toy_images(10, seed=1)
    res = ev.label_efficiency({"tiny": TinyBackbone()}, (x, y), (xt, yt), labels_per_class=(2,),
                              seeds=[0, 1], probe="linear", baselines=("supervised",),
                              supervised_steps=5)
    assert list(res.scores) == ["tiny", "supervised"]
    assert 0 <= res.mean("supervised", 2) <= 1


# -- bad inputs ------------------------------------------------------------------------------------------
def test_bad_inputs_name_the_argument():
    f, y = blobs(5, 2, 4)
    with pytest.raises(ValueError, match="train_labels"):
        ev.knn_accuracy(f, y[:-1], f, y)
    with pytest.raises(ValueError, match="test_feats"):
        ev.linear_probe(f, y, f[:, :3], y)
    with pytest.raises(ValueError, match="k=0"):
        ev.knn_accuracy(f, y, f, y, k=0)
    with pytest.raises(ValueError, match="temperature"):
        ev.knn_accuracy(f, y, f, y, temperature=0)
    with pytest.raises(ValueError, match="train_feats"):
        ev.knn_accuracy(f[0], y, f, y)
    with pytest.raises(ValueError, match="train_labels"):
        ev.linear_probe(f, y.float(), f, y)
    with pytest.raises(ValueError, match="train_labels"):
        ev.linear_probe(f, y - 1, f, y)
    with pytest.raises(ValueError, match="epochs"):
        ev.linear_probe(f, y, f, y, epochs=0)
    with pytest.raises(ValueError, match="feats"):
        ev.feature_std(torch.randn(8))
    with pytest.raises(ValueError, match="feats"):
        ev.effective_rank(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="z1 and z2"):
        ev.alignment(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="z"):
        ev.uniformity(torch.randn(1, 3))
    with pytest.raises(ValueError, match="labels_per_class=6"):
        ev.stratified_subset(y, 6, 0)
    with pytest.raises(ValueError, match="labels_per_class=0"):
        ev.stratified_subset(y, 0, 0)
    x, yi = toy_images(4)
    with pytest.raises(ValueError, match="probe"):
        ev.label_efficiency({}, (x, yi), (x, yi), probe="svm")
    with pytest.raises(ValueError, match="baselines"):
        ev.label_efficiency({}, (x, yi), (x, yi), baselines=("pixels",))
    with pytest.raises(ValueError, match="baselines"):
        ev.label_efficiency({}, (x, yi), (x, yi), baselines=("random init",))
    with pytest.raises(ValueError, match="labels_per_class=5"):
        ev.label_efficiency({}, (x, yi), (x, yi), labels_per_class=(5,))
    with pytest.raises(ValueError, match="train_data"):
        ev.label_efficiency({}, (x, yi[:-1]), (x, yi))
    with pytest.raises(ValueError, match="batch_size"):
        ev.extract_features(ev.raw_pixels, (x, yi), batch_size=0)
    with pytest.raises(ValueError, match="steps"):
        ev.fine_tune(TinyBackbone(), (x, yi), (x, yi), steps=0)
    with pytest.raises(ValueError, match="not both"):
        ev.fine_tune(TinyBackbone(), (x, yi), (x, yi), steps=3, epochs=1)
    with pytest.raises(ValueError, match="method_or_backbone"):
        ev.fine_tune(lambda b: b, (x, yi), (x, yi))


def test_linear_probe_ignores_dimensions_constant_on_the_training_set():
    train, train_y = blobs(2, 4, 8, sep=1.5)
    test, test_y = blobs(20, 4, 8, sep=1.5, seed=6)
    base = ev.linear_probe(train, train_y, test, test_y)
    pad_train = torch.cat([train, torch.zeros(len(train), 3)], 1)  # e.g. border pixels: 0 in train
    pad_test = torch.cat([test, 5 * torch.rand(len(test), 3)], 1)  # ... but not in test
    assert ev.linear_probe(pad_train, train_y, pad_test, test_y) == pytest.approx(base, abs=0.02)


def test_classifier_accuracy_uses_eval_mode():
    x, y = toy_images(10)
    clf = ev.finetune.Classifier(TinyBackbone(), 2)
    clf.backbone.net[1].running_mean.fill_(3.0)  # eval-mode BN differs visibly from batch stats
    clf.train()
    acc = ev.finetune.accuracy(clf, (x, y), batch_size=7)
    clf.eval()
    with torch.no_grad():
        ref = (clf(x).argmax(1) == y).float().mean().item()
    assert acc == pytest.approx(ref)


# -- accelerator friendliness ---------------------------------------------------------------------------
from devguard import DeviceGuard  # noqa: E402


def test_diagnostics_use_float64_only_on_the_cpu_and_build_no_host_tensors():
    z = torch.randn(40, 8)
    with DeviceGuard() as g:
        ev.effective_rank(z)
    cpu_outputs = {id(t) for name, _, outs in g.events if name == "cpu" for t in outs}
    casts = [(name, ins) for name, ins, outs in g.events
             if any(t.dtype == torch.float64 for t in outs) and not any(t.dtype == torch.float64 for t in ins)]
    assert casts, "effective_rank computes its SVD in float64"
    for name, ins in casts:  # every cast to float64 is of a tensor just moved to the CPU (MPS has none)
        assert all(id(t) in cpu_outputs for t in ins), name
    with DeviceGuard() as g:
        ev.uniformity(z)
    assert not g.uploads, g.uploads


def test_fine_tune_moves_the_data_once_not_every_step():
    x, y = toy_images(10)
    counts = []
    for steps in (3, 12):
        with DeviceGuard() as g:
            ev.fine_tune(TinyBackbone(), (x, y), (x, y), steps=steps, batch_size=4)
        # moves of data-sized tensors (not the optimiser's 0-d step counters)
        counts.append(sum(1 for name, ins, _ in g.events if name == "to" and ins and ins[0].ndim > 0))
    assert counts[0] == counts[1], counts
