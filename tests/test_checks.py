"""sslkit.checks: each check accepts what it should and names argument, value and rule otherwise."""
import numpy as np
import pytest
import torch

from sslkit import checks


def test_choice():
    assert checks.choice("mode", "a", ["a", "b"]) == "a"
    with pytest.raises(ValueError, match=r"mode='c' is not allowed; choose one of: 'a', 'b'"):
        checks.choice("mode", "c", ("a", "b"))
    assert checks.choice("flag", False, (True, False)) is False
    with pytest.raises(ValueError, match="flag=1"):  # 1 == True, but 1 is not a bool
        checks.choice("flag", 1, (True, False))
    with pytest.raises(ValueError, match="k=True"):
        checks.choice("k", True, (1, 2))
    with pytest.raises(ValueError, match="x=array"):  # arrays never match (no ambiguous truth)
        checks.choice("x", np.array([1, 2]), (1, 2))
    with pytest.raises(ValueError, match="x=tensor"):
        checks.choice("x", torch.tensor([1, 2]), (1, 2))
    assert checks.choice("it", "b", iter(["a", "b"])) == "b"  # any iterable of allowed values


def test_integer():
    assert checks.integer("n", 3) == 3 and type(checks.integer("n", np.int64(3))) is int
    for bad in (1.5, 2.0, "3", True, None, torch.tensor(3)):
        with pytest.raises(ValueError, match=r"n=.* must be an int"):
            checks.integer("n", bad)
    assert checks.integer("n", 0, min=0, max=0) == 0
    with pytest.raises(ValueError, match=r"n=0 is out of range; allowed: \[1, inf\]"):
        checks.integer("n", 0, min=1)
    with pytest.raises(ValueError, match=r"n=11 is out of range; allowed: \[-inf, 10\]"):
        checks.integer("n", 11, max=10)


def test_number():
    assert checks.number("p", 1) == 1.0 and isinstance(checks.number("p", np.float32(0.5)), float)
    for bad in ("0.5", True, None, [0.5]):
        with pytest.raises(ValueError, match="p=.* must be a number"):
            checks.number("p", bad)
    with pytest.raises(ValueError, match="NaN"):
        checks.number("p", float("nan"))
    assert checks.number("p", 0.0, min=0, max=1) == 0.0
    with pytest.raises(ValueError, match=r"p=0.0 is out of range; allowed: \(0, 1\]"):
        checks.number("p", 0.0, min=0, max=1, min_open=True)
    with pytest.raises(ValueError, match=r"allowed: \[0, 1\)"):
        checks.number("p", 1.0, min=0, max=1, max_open=True)
    with pytest.raises(ValueError, match=r"allowed: \(-inf, 2\]"):
        checks.number("p", 3, max=2)


def test_number_range():
    assert checks.number_range("scale", (0.1, 1)) == (0.1, 1.0)
    assert checks.number_range("scale", [0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="scale=.* must be a pair"):
        checks.number_range("scale", 0.5)
    with pytest.raises(ValueError, match="must be a pair"):
        checks.number_range("scale", (0.1, 0.2, 0.3))
    with pytest.raises(ValueError, match="low must be <= high"):
        checks.number_range("scale", (0.9, 0.1))
    with pytest.raises(ValueError, match=r"scale\[1\]=2.0 is out of range"):
        checks.number_range("scale", (0.1, 2.0), min=0, max=1)
    with pytest.raises(ValueError, match=r"scale\[0\]='a' must be a number"):
        checks.number_range("scale", "ab")


def test_tensor():
    x = torch.zeros(2, 3)
    assert checks.tensor("x", x, ndim=2, dtypes="float") is x
    assert checks.tensor("x", x, ndim=(2, 4)) is x
    with pytest.raises(ValueError, match=r"x must be a torch.Tensor \(ndarray given\)"):
        checks.tensor("x", np.zeros(3))
    with pytest.raises(ValueError, match=r"x must have rank 4; got shape \(2, 3\)"):
        checks.tensor("x", x, ndim=4)
    with pytest.raises(ValueError, match="rank 3 or 4"):
        checks.tensor("x", x, ndim=(3, 4))
    with pytest.raises(ValueError, match="floating-point"):
        checks.tensor("ids", torch.zeros(2, dtype=torch.long), dtypes="float")
    for bad in (torch.zeros(2), torch.zeros(2, dtype=torch.bool)):
        with pytest.raises(ValueError, match="integer tensor"):
            checks.tensor("ids", bad, dtypes="int")
    assert checks.tensor("ids", torch.zeros(2, dtype=torch.uint8), dtypes="int") is not None
    with pytest.raises(ValueError, match="dtype in"):
        checks.tensor("x", x, dtypes=[torch.uint8])


def test_same_shape():
    checks.same_shape("a", torch.zeros(2, 3), "b", torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"z1 and z2 must have the same shape; got \(2, 3\) and \(3, 2\)"):
        checks.same_shape("z1", torch.zeros(2, 3), "z2", torch.zeros(3, 2))


def test_images():
    x = torch.rand(2, 3, 4, 5)
    assert checks.images("x", x) is x
    assert checks.images("x", torch.rand(1, 1, 2, 2)).shape == (1, 1, 2, 2)
    bad = [
        (torch.rand(2, 3, 4), "x must have rank 4"),
        (torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "floating-point"),
        ([[1.0]], "torch.Tensor"),
        (torch.rand(2, 2, 4, 4), r"x has 2 channels .*allowed: 1 or 3 channels"),
        (torch.rand(2, 3, 0, 4), "empty image size 0x4"),
    ]
    for value, match in bad:
        with pytest.raises(ValueError, match=match):
            checks.images("x", value)
    with pytest.raises(ValueError, match=r"batch has batch size 1 .*at least 2 samples"):
        checks.images("batch", torch.rand(1, 3, 4, 4), min_batch=2)
    with pytest.raises(ValueError, match="allowed: 3 channels"):
        checks.images("x", torch.rand(2, 1, 4, 4), channels=(3,))
    assert checks.images("x", torch.rand(2, 4, 4, 4), channels=(4,)).shape[1] == 4


def test_pretext_and_backbone_image_checks_share_checks_images():
    from sslkit import backbones, pretext
    with pytest.raises(ValueError, match=r"x has 2 channels .*allowed: 1 or 3 channels"):
        pretext.horizontal_flip(torch.rand(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"x has 1 channel \(.*allowed: 3 channels"):
        backbones.create("convnet", in_channels=3)(torch.rand(2, 1, 8, 8))


def test_numpy_scalars_and_infinities():
    """Issue 14.6: NumPy numbers are accepted everywhere (as Python numbers); infinities are not,
    unless the argument allows them."""
    for value in (np.int8(3), np.int64(3), np.uint64(3), np.int32(3)):
        assert type(checks.integer("n", value, min=1)) is int
    assert checks.integer("seed", np.uint64(2**64 - 1)) == 2**64 - 1
    assert type(checks.number("p", np.float16(0.5))) is float and checks.number("p", np.int64(2)) == 2.0
    for bad in (np.bool_(True), np.array([1])):
        with pytest.raises(ValueError, match="must be an int"):
            checks.integer("n", bad)
    with pytest.raises(ValueError, match="must be a number"):
        checks.number("p", np.bool_(False))
    for inf in (float("inf"), -float("inf"), np.float64("inf")):
        with pytest.raises(ValueError, match=r"p=-?inf must be a finite number"):
            checks.number("p", inf, min=0)
    assert checks.number("p", float("inf"), min=0, allow_inf=True) == float("inf")
    with pytest.raises(ValueError, match=r"scale\[1\]=inf must be a finite"):
        checks.number_range("scale", (0.1, float("inf")))


def test_embedded_datasets_take_numpy_seeds():
    import sslkit

    seed = np.random.default_rng(0).integers(0, 100)  # what a NumPy workflow hands over
    a, b = sslkit.data.load("digits", seed=seed), sslkit.data.load("digits", seed=int(seed))
    assert torch.equal(a.x, b.x) and type(a.meta["seed"]) is int


def test_group_checks_name_the_argument_the_value_and_what_is_allowed():
    assert checks.boolean("flag", True) is True
    with pytest.raises(ValueError, match=r"flag=1 must be True or False"):
        checks.boolean("flag", 1)
    z = torch.rand(3, 4)
    checks.embeddings(z1=z, z2=z.clone(), min_batch=3)
    with pytest.raises(ValueError, match=r"z2 must have rank 2"):
        checks.embeddings(z1=z, z2=torch.rand(3))
    with pytest.raises(ValueError, match=r"z1 and z2 must have the same shape; got \(3, 4\) and \(3, 5\)"):
        checks.embeddings(z1=z, z2=torch.rand(3, 5))
    with pytest.raises(ValueError, match=r"z1 has batch size 3; allowed: at least 4 samples \(why\)"):
        checks.embeddings(z1=z, z2=z, min_batch=4, why="why")
    s, t = checks.stacked_views(s=[z, z, z], t=torch.rand(2, 3, 4))
    assert s.shape == (3, 3, 4) and t.shape == (2, 3, 4)
    with pytest.raises(ValueError, match=r"s\[1\] has shape \(2, 4\)"):
        checks.stacked_views(s=[z, z[:2]])
    with pytest.raises(ValueError, match=r"s views have shape \(3, 4\) and t views \(3, 5\); both must be"):
        checks.stacked_views(s=[z], t=[torch.rand(3, 5)])
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 4\); got \(3,\)"):
        checks.mask("mask", torch.ones(3, dtype=torch.bool), (3, 4))
    assert checks.mask("mask", torch.ones(3, 4, dtype=torch.bool), (3, 4)).dtype == torch.float32
