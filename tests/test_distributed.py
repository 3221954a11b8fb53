"""DDP helpers: gather with gradients, sharding, and a 2-process gloo run matching 1 process."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from sslkit import distributed, losses
from sslkit.data import Dataset
from sslkit.methods import Method

WORLD = 2
GLOBAL_BATCH = 8


def _encoder() -> nn.Module:
    # no BatchNorm: per-sample computation, so 2 x 4 samples == 1 x 8 samples exactly
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8))


class _TwoViewLoss(nn.Module):
    """Encoder on two deterministic views, embeddings gathered, then an sslkit loss (like SimCLR)."""

    def __init__(self, loss: str) -> None:
        super().__init__()
        self.enc, self.loss = _encoder(), loss

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        z1 = distributed.gather(self.enc(x1))  # (B_global, 8)
        z2 = distributed.gather(self.enc(x2))
        if self.loss == "nt_xent":
            return losses.nt_xent(z1, z2, temperature=0.5)
        return losses.barlow_twins(z1, z2)


class _TinyContrastive(Method):
    """A deterministic method for the fit-level check: views are x and its flipped copy."""

    name = "tiny_contrastive"

    def __init__(self) -> None:
        torch.manual_seed(2)
        enc = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6))
        enc.embed_dim = 6
        enc.forward_features = enc.forward
        super().__init__(enc)

    def training_step(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        z1 = distributed.gather(self.backbone(batch))                   # (B_global, 6)
        z2 = distributed.gather(self.backbone(batch.flip(-1)))
        return {"loss": losses.nt_xent(z1, z2, temperature=0.5)}


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(GLOBAL_BATCH, 6, generator=g)
    return x1, x1 + 0.3 * torch.randn(GLOBAL_BATCH, 6, generator=g)


def _dataset() -> Dataset:
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (64, 1, 4, 4), dtype=torch.uint8, generator=g)
    return Dataset(name="random", split="train", kind="image", x=x,
                   labels=torch.zeros(64, dtype=torch.long), classes=["a"])


def _reference(loss: str) -> tuple[float, dict[str, torch.Tensor]]:
    model = _TwoViewLoss(loss)
    value = model(*_inputs())
    value.backward()
    return value.item(), {k: p.grad.clone() for k, p in model.named_parameters()}


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        result = {}
        x1, x2 = _inputs()
        for loss in ("nt_xent", "barlow_twins"):
            model = nn.parallel.DistributedDataParallel(_TwoViewLoss(loss))  # averages gradients
            value = model(distributed.shard(x1), distributed.shard(x2))
            value.backward()
            result[loss] = (value.item(), {k.removeprefix("module."): p.grad.clone()
                                           for k, p in model.named_parameters()})
        from sslkit.train import fit
        method = _TinyContrastive()
        hist = fit(method, _dataset(), steps=3, batch_size=GLOBAL_BATCH, lr=1e-2, device="cpu",
                   progress=False, monitor_collapse=False)
        result["fit"] = ({k: v.clone() for k, v in method.state_dict().items()}, hist.loss)
        result["info"] = (distributed.rank(), distributed.world_size(), distributed.is_distributed())
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        tdist.destroy_process_group()


def test_not_distributed_is_a_no_op():
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather(x) is x
    idx = torch.arange(10)
    assert distributed.shard(idx) is idx
    assert (distributed.rank(), distributed.world_size(), distributed.is_distributed()) == (0, 1, False)
    assert distributed.is_main()
    assert distributed.all_reduce_mean(torch.tensor(2.0)).item() == 2.0
    assert distributed.init_from_env() is None  # WORLD_SIZE unset: not launched by torchrun


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_two_processes_match_one_process(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert [r["info"] for r in results] == [(0, 2, True), (1, 2, True)]
    for loss in ("nt_xent", "barlow_twins"):
        ref_value, ref_grads = _reference(loss)
        for r in results:
            value, grads = r[loss]
            assert value == pytest.approx(ref_value, abs=1e-5)
            assert grads.keys() == ref_grads.keys()
            for k in ref_grads:
                torch.testing.assert_close(grads[k], ref_grads[k], atol=1e-5, rtol=0)

    # the whole engine: 3 DDP steps on 2 x 4 samples == 3 steps on 8 samples in one process
    from sslkit.train import fit
    method = _TinyContrastive()
    hist = fit(method, _dataset(), steps=3, batch_size=GLOBAL_BATCH, lr=1e-2, device="cpu",
               progress=False, monitor_collapse=False)
    for r in results:
        weights, loss_log = r["fit"]
        assert loss_log == pytest.approx(hist.loss, abs=1e-5)
        for k, v in method.state_dict().items():
            torch.testing.assert_close(weights[k], v, atol=1e-5, rtol=0)


def test_gather_without_process_group_passes_gradients_through():
    x = torch.randn(4, 3, requires_grad=True)
    (distributed.gather(x) * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(3.0).expand(4, 3))


def test_shard_rejects_uneven_batches(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.shard(torch.arange(9)).tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="divisible by 3"):
        distributed.shard(torch.arange(8))
