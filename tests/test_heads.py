"""Heads built from specs: layer structure, shapes, the DINO head's weight normalisation."""
import pytest
import torch
from torch import nn

from sslkit import heads


def test_mlp_from_list_and_spec():
    net = heads.mlp([8, 16, 4])
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert net(torch.randn(5, 8)).shape == (5, 4)
    net = heads.mlp(heads.MLPSpec(8, (16, 16), 4, batch_norm=False, last_bn=True, activation="gelu"))
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear, nn.BatchNorm1d]
    assert heads.mlp([8, 4])[0].out_features == 4


def test_projection_and_prediction_heads():
    p = heads.projection_head(32)
    linears = [m for m in p if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(32, 2048), (2048, 128)]
    p3 = heads.projection_head(32, hidden_dim=64, out_dim=16, num_layers=3, last_bn=True)
    assert sum(isinstance(m, nn.Linear) for m in p3) == 3 and isinstance(p3[-1], nn.BatchNorm1d)
    q = heads.prediction_head(16, hidden_dim=8)
    assert q(torch.randn(4, 16)).shape == (4, 16)


def test_dino_head_normalised_last_layer():
    h = heads.DINOHead(12, out_dim=50, hidden_dim=32, bottleneck_dim=8)
    x = torch.randn(6, 12)
    out = h(x)
    assert out.shape == (6, 50)
    # cosine classifier: |logit| <= 1 and the gain is not trainable
    assert out.abs().max() <= 1 + 1e-5
    assert "weight_g" not in dict(h.named_parameters())
    # scaling the prototype directions does not change the output
    h.weight_v.data *= 7.0
    torch.testing.assert_close(h(x), out)
    free = heads.DINOHead(12, out_dim=50, hidden_dim=32, bottleneck_dim=8, norm_last_layer=False)
    assert "weight_g" in dict(free.named_parameters())
    out.sum().backward()
    assert h.weight_v.grad is not None


def test_bad_specs():
    with pytest.raises(ValueError, match="spec"):
        heads.mlp([8])
    with pytest.raises(ValueError, match="in_dim"):
        heads.mlp([0, 4])
    with pytest.raises(ValueError, match=r"hidden_dims\[0\]"):
        heads.MLPSpec(4, (0,), 2)
    with pytest.raises(ValueError, match="activation"):
        heads.MLPSpec(4, (), 2, activation="tanh")
    with pytest.raises(ValueError, match="num_layers"):
        heads.projection_head(8, num_layers=0)


def test_heads_reject_wrong_input_width():
    with pytest.raises(ValueError, match=r"x has last dimension 17.*in_dim=16"):
        heads.projection_head(16, hidden_dim=8, out_dim=4)(torch.randn(4, 17))
    with pytest.raises(ValueError, match=r"last dimension 5.*in_dim=6"):
        heads.mlp([6, 4, 3])(torch.randn(2, 5))
    with pytest.raises(ValueError, match=r"last dimension 7.*in_dim=8"):
        heads.DINOHead(8, out_dim=16, hidden_dim=8, bottleneck_dim=4)(torch.randn(3, 7))
    with pytest.raises(ValueError, match="rank 2"):  # BatchNorm heads take (B, D) only
        heads.prediction_head(6, hidden_dim=4)(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="floating"):
        heads.mlp([6, 3])(torch.ones(2, 6, dtype=torch.long))
    # still a plain nn.Sequential with the same state-dict keys, and it still works
    head = heads.projection_head(16, hidden_dim=8, out_dim=4)
    assert isinstance(head, torch.nn.Sequential) and "0.weight" in head.state_dict()
    assert head(torch.randn(4, 16)).shape == (4, 4)
    assert isinstance(head[:2], torch.nn.Sequential)


def test_dino_head_batch_norm_puts_batchnorm_in_the_hidden_layers_only():
    plain, bn = heads.DINOHead(8, out_dim=16, hidden_dim=12, bottleneck_dim=4), \
        heads.DINOHead(8, out_dim=16, hidden_dim=12, bottleneck_dim=4, batch_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in plain.modules())
    assert [m.num_features for m in bn.modules() if isinstance(m, torch.nn.BatchNorm1d)] == [12, 12]
    assert bn(torch.randn(5, 8)).shape == (5, 16)
    linears = [m for m in bn.mlp if isinstance(m, torch.nn.Linear)]
    assert all(m.weight.std() < 0.04 for m in linears)   # the shared init (std 0.02), not PyTorch's default
    assert all(m.bias is None or not m.bias.any() for m in linears)
    with pytest.raises(ValueError, match="batch_norm=1 must be True or False"):
        heads.DINOHead(8, batch_norm=1)


def test_conv_decoder_draws_images_of_the_asked_size_in_unit_range():
    dec = heads.ConvDecoder(6, 3, (10, 14), width=4)
    out = dec(torch.randn(2, 6))
    assert out.shape == (2, 3, 10, 14) and out.min() >= 0 and out.max() <= 1
