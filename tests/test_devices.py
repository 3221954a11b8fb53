"""sslkit.device(): auto-detection order, SSLKIT_DEVICE override, clear errors."""
import pytest
import torch

import sslkit


@pytest.fixture
def cpu_only(monkeypatch):
    """Pretend neither CUDA nor MPS exists, whatever machine runs the tests."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.delenv("SSLKIT_DEVICE", raising=False)


def test_auto_order(monkeypatch, cpu_only):
    assert sslkit.device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert sslkit.device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sslkit.device() == torch.device("cuda")  # cuda wins over mps


def test_env_override(monkeypatch, cpu_only):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("SSLKIT_DEVICE", "cpu")
    assert sslkit.device() == torch.device("cpu")
    monkeypatch.setenv("SSLKIT_DEVICE", "cuda:1")
    assert sslkit.device() == torch.device("cuda", 1)
    assert sslkit.device("cpu") == torch.device("cpu")  # explicit prefer wins over the variable
    monkeypatch.setenv("SSLKIT_DEVICE", "")  # empty = unset
    assert sslkit.device() == torch.device("cuda")


@pytest.mark.parametrize("value,match", [
    ("tpu", "SSLKIT_DEVICE='tpu'"), ("gpu", "SSLKIT_DEVICE='gpu'"), ("cuda", "CUDA is not available"),
    ("mps", "MPS is not available"), ("meta", "not supported"),
])
def test_env_bad_values(monkeypatch, cpu_only, value, match):
    monkeypatch.setenv("SSLKIT_DEVICE", value)
    with pytest.raises(ValueError, match=match):
        sslkit.device()


def test_prefer_bad_values(monkeypatch, cpu_only):
    with pytest.raises(ValueError, match="prefer='cuda:0'.*CUDA"):
        sslkit.device("cuda:0")
    with pytest.raises(ValueError, match="prefer='banana'.*allowed: cuda, mps, cpu"):
        sslkit.device("banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="only 1 CUDA device"):
        sslkit.device("cuda:3")


@pytest.mark.cuda
def test_real_cuda_device():
    dev = sslkit.device()
    assert dev.type == "cuda"
    assert torch.zeros(2, device=dev).device.type == "cuda"
