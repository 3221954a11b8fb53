"""The random-init baseline is fair: its BatchNorm statistics are recalibrated on unlabelled data."""
import pytest
import torch
from torch import nn

from sslkit import backbones
from sslkit import eval as ev


def naive_channel_stats(a: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and unbiased variance of activations (B, C, H, W), by explicit sums."""
    means, variances = [], []
    for c in range(a.shape[1]):
        values = [float(v) for v in a[:, c].reshape(-1)]
        m = sum(values) / len(values)
        means.append(m)
        variances.append(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return means, variances


def manual_convnet_forward(net, x):
    """The ConvNet written out layer by layer, each BatchNorm normalising with the whole batch's
    statistics (what train mode does on one batch); returns every BatchNorm's input."""
    inputs = []
    h = x
    for block in net.features:
        conv, bn, _ = block
        h = torch.nn.functional.conv2d(h, conv.weight, None, conv.stride, conv.padding)
        inputs.append(h)
        mean = h.mean(dim=(0, 2, 3), keepdim=True)
        var = ((h - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)  # biased, as BatchNorm normalises
        h = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        h = h.clamp_min(0)
    return inputs


def test_recalibrated_running_stats_are_the_data_statistics_of_the_pre_bn_activations():
    torch.manual_seed(0)
    net = backbones.create("convnet", in_channels=3, widths=(4, 6))
    x = torch.rand(48, 3, 8, 8) * 0.5 + 0.2
    labels = torch.zeros(48, dtype=torch.long)
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" not in k and "num_batches" not in k}
    out = ev.recalibrate_batchnorm(net, (x, labels), batch_size=48)  # one batch = the whole data
    assert out is net and not net.training
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        reference = manual_convnet_forward(net, x)
    assert len(reference) == len(norms) == 4
    for bn, a in zip(norms, reference):
        means, variances = naive_channel_stats(a)
        assert torch.allclose(bn.running_mean, torch.tensor(means), atol=1e-4, rtol=1e-4)
        assert torch.allclose(bn.running_var, torch.tensor(variances), atol=1e-4, rtol=1e-3)
        assert bn.momentum == 0.1  # restored
    for k, v in net.state_dict().items():  # the weights are not touched
        if k in before:
            assert torch.equal(v, before[k]), k


def test_cumulative_average_over_equal_batches_is_the_data_mean():
    # The first BatchNorm's input does not depend on the batching: with 4 equal batches its running
    # mean must be the mean over all samples (a cumulative average, not momentum 0.1).
    torch.manual_seed(1)
    net = backbones.create("convnet", in_channels=1, widths=(3,))
    x = torch.rand(64, 1, 6, 6)
    ev.recalibrate_batchnorm(net, (x, torch.zeros(64, dtype=torch.long)), batch_size=16)
    conv, bn = net.features[0][0], net.features[0][1]
    with torch.no_grad():
        a = torch.nn.functional.conv2d(x, conv.weight, None, 1, 1)
    means, _ = naive_channel_stats(a)
    assert torch.allclose(bn.running_mean, torch.tensor(means), atol=1e-5)
    assert int(bn.num_batches_tracked) == 4


class DropoutNet(nn.Module):
    """Dropout before BatchNorm: calibration must run it in eval mode (dropout off)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(3)
        self.embed_dim = 3

    def forward_features(self, x):
        return self.bn(self.drop(self.lin(x)))


def test_calibration_turns_dropout_off_and_leaves_eval_mode():
    torch.manual_seed(0)
    net = DropoutNet().train()
    x = torch.randn(40, 5)
    ev.recalibrate_batchnorm(net, (x, torch.zeros(40, dtype=torch.long)), batch_size=40)
    with torch.no_grad():
        a = net.lin(x)  # (40, 3)
    assert torch.allclose(net.bn.running_mean, a.mean(0), atol=1e-5)
    assert torch.allclose(net.bn.running_var, a.var(0), atol=1e-5)
    assert not any(m.training for m in net.modules())


def test_random_init_with_data_is_recalibrated_and_seeded():
    torch.manual_seed(0)
    trained = backbones.create("convnet", in_channels=3, widths=(4, 8))
    x = torch.rand(64, 3, 8, 8)
    data = (x, torch.zeros(64, dtype=torch.long))
    raw = ev.random_init(trained, seed=3)
    fair = ev.random_init(trained, seed=3, data=data, batch_size=32)
    bn_raw = [m for m in raw.modules() if isinstance(m, nn.BatchNorm2d)]
    bn_fair = [m for m in fair.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bn_raw)
    assert all(not torch.equal(m.running_mean, torch.zeros_like(m.running_mean)) for m in bn_fair)
    # same seed -> same weights: only the statistics differ
    assert torch.equal(raw.features[0][0].weight, fair.features[0][0].weight)
    # a fresh calibration reproduces the one random_init did
    again = ev.recalibrate_batchnorm(ev.random_init(trained, seed=3), data, batch_size=32, seed=3)
    for a, b in zip(bn_fair, [m for m in again.modules() if isinstance(m, nn.BatchNorm2d)]):
        assert torch.equal(a.running_mean, b.running_mean) and torch.equal(a.running_var, b.running_var)


def test_label_efficiency_random_init_row_is_recalibrated():
    torch.manual_seed(0)
    model = backbones.create("convnet", in_channels=3, widths=(4, 8))
    g = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat_interleave(10)
    x = torch.rand(40, 3, 8, 8, generator=g) * 0.3 + y.view(-1, 1, 1, 1) * 0.15
    xt = torch.rand(20, 3, 8, 8, generator=g) * 0.3 + y[::2].view(-1, 1, 1, 1) * 0.15
    res = ev.label_efficiency({"m": model}, (x, y), (xt, y[::2]), labels_per_class=(None,), seeds=[0],
                              probe="linear", baselines=("random init",))
    fair = ev.random_init(model, seed=0, data=(x, y))
    tr, _ = ev.extract_features(fair, (x, y))
    te, _ = ev.extract_features(fair, (xt, y[::2]))
    assert res.scores["random init"]["all"] == [ev.linear_probe(tr, y, te, y[::2], seed=0)]


def test_recalibrate_bad_input():
    with pytest.raises(ValueError, match="model"):
        ev.recalibrate_batchnorm(lambda x: x, (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)))
    with pytest.raises(ValueError, match="batch_size"):
        ev.recalibrate_batchnorm(DropoutNet(), (torch.zeros(4, 5), torch.zeros(4, dtype=torch.long)),
                                 batch_size=0)


@pytest.mark.parametrize("name, kwargs", [
    ("vit_tiny", dict(image_size=16, in_channels=3, patch_size=4, embed_dim=32, depth=1, num_heads=2)),
    ("transformer", dict(vocab_size=50, max_len=8, embed_dim=32, depth=1, num_heads=2)),
])
def test_random_init_resets_every_parameter_with_the_backbones_own_init(name, kwargs):
    # A trained transformer's position embeddings and CLS token are nn.Parameters of the backbone
    # itself (no layer's reset_parameters covers them): the baseline must not keep trained values.
    backbone = backbones.create(name, **kwargs)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)                                   # stands in for training
    fresh = ev.random_init(backbone, seed=0)
    for (n, p_old), p_new in zip(backbone.named_parameters(), fresh.parameters()):
        assert not torch.equal(p_old, p_new), f"{n} kept its trained value"
    linear = next(m for m in fresh.modules() if isinstance(m, torch.nn.Linear))
    assert 0.015 < linear.weight.std() < 0.025, "the transformer init (trunc normal, std 0.02)"
    assert torch.equal(ev.random_init(backbone, seed=0).state_dict()["cls_token"], fresh.state_dict()["cls_token"])
