"""Which views share BatchNorm statistics: each joint-embedding method as its paper's code (issue 17).

SimCLR normalises both views together (one pass over the 2B views: the paper's global BN). BYOL,
SimSiam, Barlow Twins and VICReg pass each view through the network as its own batch, as their
official code does, so each view is normalised with its own statistics. The references below
build each loss by hand from the same views, once with a pass per view and once with one pass over
both; the method must match the one its paper defines and differ from the other. Without batch
statistics (eval mode) the two coincide: the only difference is where BatchNorm's statistics
come from.
"""
from __future__ import annotations

import copy

import pytest
import torch

import sslkit
from sslkit import losses

SMALL = {"simclr": dict(proj_hidden=32, proj_dim=16),
         "byol": dict(proj_hidden=32, proj_dim=16, pred_hidden=32),
         "simsiam": dict(proj_hidden=32, proj_dim=32, pred_hidden=8),
         "barlow_twins": dict(proj_hidden=32, proj_dim=32), "vicreg": dict(proj_hidden=32, proj_dim=32)}
PAPER_JOINT = {"simclr": True, "byol": False, "simsiam": False, "barlow_twins": False, "vicreg": False}


class Feed:
    """A ``views`` callable that hands out fixed views: view 1, then view 2."""

    def __init__(self, v1: torch.Tensor, v2: torch.Tensor) -> None:
        self.queue = [v1, v2]

    def __call__(self, x, generator=None):
        return self.queue.pop(0)


def encode(f, v1: torch.Tensor, v2: torch.Tensor, joint: bool) -> list[torch.Tensor]:
    """``f`` of each view: one call on the concatenation (joint) or one call per view."""
    if joint:
        out = f(torch.cat([v1, v2]))
        return [out[: len(v1)], out[len(v1):]]
    outs = []
    for v in (v1, v2):
        outs.append(f(v))
    return outs


def reference_loss(m, v1: torch.Tensor, v2: torch.Tensor, joint: bool) -> torch.Tensor:
    online = lambda v: m.projector(m.backbone.forward_features(v))   # noqa: E731
    if m.name == "simclr":
        z1, z2 = encode(online, v1, v2, joint)
        return losses.nt_xent(z1, z2, temperature=m.config.temperature)
    if m.name == "byol":
        p1, p2 = encode(lambda v: m.predictor(online(v)), v1, v2, joint)
        with torch.no_grad():
            t1, t2 = encode(lambda v: m.target_projector(m.target_backbone.forward_features(v)),
                            v1, v2, joint)
        return losses.negative_cosine(p1, t2) + losses.negative_cosine(p2, t1)
    if m.name == "simsiam":
        z1, z2 = encode(online, v1, v2, joint)
        p1, p2 = encode(m.predictor, z1, z2, joint)
        return 0.5 * (losses.negative_cosine(p1, z2) + losses.negative_cosine(p2, z1))
    z1, z2 = encode(online, v1, v2, joint)
    if m.name == "barlow_twins":
        return losses.barlow_twins(z1, z2, lambda_=m.config.lambda_)
    c = m.config
    return losses.vicreg_terms(z1, z2, c.sim_weight, c.var_weight, c.cov_weight, c.var_reduction)["loss"]


def setup(name: str):
    torch.manual_seed(0)
    x = torch.rand(16, 3, 16, 16)
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.rand(16, 3, 16, 16, generator=g), torch.rand(16, 3, 16, 16, generator=g)
    backbone = sslkit.backbones.create("convnet", in_channels=3, widths=(8, 16))
    m = sslkit.create(name, backbone=backbone, views=Feed(v1, v2), **SMALL[name])
    if name == "byol":  # a target that differs from the online network, as after some training
        with torch.no_grad():
            for p in m.target_backbone.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return m, x, v1, v2


@pytest.mark.parametrize("name", list(PAPER_JOINT))
def test_batchnorm_statistics_are_shared_as_each_paper_defines(name):
    m, x, v1, v2 = setup(name)
    ref = copy.deepcopy(m)
    loss = m.training_step(x)["loss"]
    paper = reference_loss(ref, v1, v2, joint=PAPER_JOINT[name])
    other = reference_loss(ref, v1, v2, joint=not PAPER_JOINT[name])
    torch.testing.assert_close(loss, paper, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(loss, other, rtol=1e-3, atol=1e-4)   # the probe can tell them apart


@pytest.mark.parametrize("name", list(PAPER_JOINT))
def test_without_batch_statistics_both_ways_give_the_same_loss(name):
    m, x, v1, v2 = setup(name)
    m.eval()   # BatchNorm uses its running statistics: nothing couples the samples of a batch
    with torch.no_grad():
        loss = m.training_step(x)["loss"]
        joint, per_view = (reference_loss(m, v1, v2, joint=j) for j in (True, False))
    torch.testing.assert_close(joint, per_view, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, per_view, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(PAPER_JOINT))
def test_each_view_batch_updates_the_running_statistics_as_the_paper_code(name):
    """Running statistics (what evaluation uses) follow the same passes: two updates from the two
    views' batches for the per-view methods, one from the joint batch for SimCLR."""
    m, x, v1, v2 = setup(name)
    ref = copy.deepcopy(m)
    m.training_step(x)
    encode(lambda v: ref.projector(ref.backbone.forward_features(v)), v1, v2, PAPER_JOINT[name])
    bn = [k for k in m.backbone.state_dict() if k.endswith(("running_mean", "running_var"))]
    assert bn
    for k in bn:
        torch.testing.assert_close(m.backbone.state_dict()[k], ref.backbone.state_dict()[k])
