"""Masking: exact counts, keep/remove convention, BERT 80/10/10, spans, and bad arguments."""
import pytest
import torch

import sslkit.pretext as P


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_patchify_matches_loop_and_roundtrips():
    x = torch.rand(2, 3, 8, 12)
    p = P.patchify(x, 4)
    assert p.shape == (2, 6, 48)
    for i in range(2):
        for r in range(2):
            for c in range(3):
                patch = x[i, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].permute(1, 2, 0).reshape(-1)  # (p, q, c)
                assert torch.equal(p[i, r * 3 + c], patch)
    assert torch.equal(P.unpatchify(p, 4, 3, (8, 12)), x)


def test_random_masking_convention():
    tokens = torch.rand(5, 16, 7)
    m = P.random_masking(tokens, 0.75, generator=gen(0))
    assert m.kept.shape == (5, 4, 7) and (m.mask.sum(1) == 12).all()
    for b in range(5):
        assert torch.equal(m.kept[b], tokens[b, m.ids_keep[b]])
        assert not m.mask[b, m.ids_keep[b]].any()
    full = torch.cat([m.kept, torch.zeros(5, 12, 7)], dim=1).gather(1, m.ids_restore[..., None].expand(5, 16, 7))
    assert torch.equal(full[~m.mask], tokens[~m.mask])
    wide = P.random_masking(torch.rand(5, 64, 2), 0.75, generator=gen(0)).mask
    assert len({tuple(r.tolist()) for r in wide}) == 5  # per-sample masks
    assert torch.equal(P.random_masking(tokens, 0.75, gen(0)).mask, m.mask)


def test_block_masking_exact_and_blocky():
    mask = P.block_masking(16, 14, 0.4, generator=gen(0))
    assert mask.shape == (16, 196) and (mask.sum(1) == round(0.4 * 196)).all()
    grid = mask.reshape(16, 14, 14).float()
    right = (grid[:, :, 1:] * grid[:, :, :-1]).sum() / grid[:, :, 1:].sum()
    assert right > 0.6  # neighbours of masked patches are mostly masked (random masking: ~0.4)
    assert torch.equal(P.block_masking(16, 14, 0.4, generator=gen(0)), mask)
    assert P.block_masking(2, (4, 6), 0.5, device="meta").shape == (2, 24)


def test_mask_tokens_bert():
    V, special = 50, [0, 1, 2, 3]  # pad, mask, cls, unk
    ids = torch.randint(4, V, (400, 40), generator=gen(1))
    ids[:, 0], ids[:, -8:] = 2, 0  # CLS and padding
    inputs, targets, mask = P.mask_tokens(ids, V, special, mask_id=1, mask_ratio=0.15, generator=gen(2))
    assert not mask[:, 0].any() and not mask[:, -8:].any()
    assert (mask.sum(1) == round(0.15 * 31)).all()
    assert torch.equal(targets[mask], ids[mask]) and (targets[~mask] == -100).all()
    assert torch.equal(inputs[~mask], ids[~mask])
    chosen_in = inputs[mask]
    frac_mask = (chosen_in == 1).float().mean()
    frac_same = (chosen_in == ids[mask]).float().mean()
    assert abs(frac_mask - 0.8) < 0.03 and abs(frac_same - 0.1 - 0.1 / 46) < 0.03
    assert not torch.isin(chosen_in[chosen_in != 1], torch.tensor(special)).any()


def test_mask_time_steps_spans():
    x = torch.rand(6, 2, 50)
    masked, mask = P.mask_time_steps(x, 0.4, span=5, generator=gen(0))
    assert (mask.sum(1) == 20).all()
    assert (masked[mask[:, None].expand_as(x)] == 0).all() and torch.equal(masked[~mask[:, None].expand_as(x)],
                                                                          x[~mask[:, None].expand_as(x)])
    for row in mask.int().tolist():  # every run of masked steps is a whole number of spans
        runs = "".join(map(str, row)).split("0")
        assert all(len(r) % 5 == 0 for r in runs)


def test_mask_frames():
    clips = torch.rand(4, 10, 1, 8, 8)
    masked, mask = P.mask_frames(clips, 0.3, generator=gen(0))
    assert (mask.sum(1) == 3).all() and (masked[mask] == 0).all() and torch.equal(masked[~mask], clips[~mask])


BAD = [
    (lambda: P.patchify(torch.rand(1, 3, 10, 10), 4), "patch_size=4 must divide"),
    (lambda: P.unpatchify(torch.rand(1, 4, 48), 4, 3, 16), "need"),
    (lambda: P.random_masking(torch.rand(2, 8, 4), 1.0), "mask_ratio=1.0"),
    (lambda: P.random_masking(torch.rand(2, 8, 4), 0.97), "remove all"),
    (lambda: P.random_masking(torch.rand(2, 8), 0.5), "rank 3"),
    (lambda: P.block_masking(2, 14, -0.1), "mask_ratio=-0.1"),
    (lambda: P.mask_tokens(torch.rand(2, 5), 10, [0], 1), "integer"),
    (lambda: P.mask_tokens(torch.full((2, 5), 12), 10, [0], 1), r"allowed: \[0, 9\]"),
    (lambda: P.mask_tokens(torch.ones(2, 5, dtype=torch.long), 10, [0], 10), "mask_id=10"),
    (lambda: P.mask_time_steps(torch.rand(2, 1, 10), 0.5, span=11), "span=11"),
    (lambda: P.mask_frames(torch.rand(2, 3, 8, 8), 0.5), "rank 5"),
]


@pytest.mark.parametrize("call,match", BAD)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- accelerator friendliness: no float64 (MPS has none), no host-device syncs in mask_tokens ------
from devguard import DeviceGuard  # noqa: E402
from sslkit.pretext import _random  # noqa: E402


def test_random_draws_use_no_float64_and_stay_below_high():
    with DeviceGuard() as g:
        r = _random.randint_below(torch.tensor([1, 2, 7, 1000]), (5000, 4), gen(0), torch.device("cpu"))
        P.block_masking(4, 8, 0.4, generator=gen(0))
        P.mask_tokens(torch.randint(4, 50, (8, 20), generator=gen(1)), 50, [0, 1, 2, 3], 1, generator=gen(2))
    assert not g.float64, g.float64
    assert (r >= 0).all() and (r < torch.tensor([1, 2, 7, 1000])).all()
    assert set(r[:, 2].tolist()) == set(range(7))  # every value reachable
    # even when u * high rounds up to high in float32, the draw is clamped to high - 1
    big = _random.randint_below(torch.full((100000,), 2 ** 24 - 1), (100000,), gen(3), torch.device("cpu"))
    assert big.max() < 2 ** 24 - 1


def test_mask_tokens_counts_match_python_round_at_ties():
    # round(0.15 * 70) = round(10.5) = 10 (half to even); a float32 product would give 10.500001 -> 11
    ids = torch.randint(4, 50, (3, 70), generator=gen(0))
    _, _, mask = P.mask_tokens(ids, 50, [0, 1, 2, 3], 1, mask_ratio=0.15, generator=gen(1))
    assert (mask.sum(1) == round(0.15 * 70)).all()


def test_mask_tokens_makes_no_host_device_sync():
    ids = torch.empty(4, 16, dtype=torch.long, device="meta")  # stands in for an accelerator
    P.mask_tokens(ids, 50, [0, 1, 2, 3], mask_id=1)  # warm the per-(L, ratio, device) cache
    special = torch.tensor([0, 1, 2, 3], device="meta")
    with DeviceGuard() as g:
        inputs, targets, mask = P.mask_tokens(ids, 50, [0, 1, 2, 3], mask_id=1)
        P.mask_tokens(ids, 50, special, mask_id=1)
    assert not g.reads and not g.uploads, (g.reads, g.uploads)
    assert inputs.shape == targets.shape == mask.shape == (4, 16)


def test_mask_tokens_special_ids_as_cpu_tensor_equals_list():
    ids = torch.randint(0, 30, (6, 12), generator=gen(0))
    a = P.mask_tokens(ids, 30, [0, 3, 5], 1, generator=gen(1))
    b = P.mask_tokens(ids, 30, torch.tensor([0, 3, 5]), 1, generator=gen(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    # random replacement tokens are never special ids
    ids = torch.randint(6, 30, (400, 30), generator=gen(2))
    inputs, _, mask = P.mask_tokens(ids, 30, [0, 3, 5], 1, generator=gen(3))
    assert not torch.isin(inputs[mask & (inputs != 1)], torch.tensor([0, 3, 5])).any()


@pytest.mark.parametrize("special, match", [
    ([0, 50], r"special_ids=\[0, 50\]"), ([-1], "special_ids"), (list(range(50)), "whole vocabulary"),
    ("abc", "special_ids"), ([0.5], "special_ids"), (torch.tensor([0.0]), "integer"),
])
def test_mask_tokens_bad_special_ids(special, match):
    with pytest.raises(ValueError, match=match):
        P.mask_tokens(torch.ones(2, 5, dtype=torch.long), 50, special, 1)


def test_mask_indices_draws_what_random_masking_draws_without_gathering():
    tokens = torch.randn(3, 10, 5)
    full = P.random_masking(tokens, 0.6, generator=torch.Generator().manual_seed(4))
    ids = P.mask_indices(3, 10, 0.6, generator=torch.Generator().manual_seed(4))
    for a, b in zip((full.mask, full.ids_keep, full.ids_restore), ids):
        assert torch.equal(a, b)
    assert ids.mask.sum(1).tolist() == [6, 6, 6]
    with pytest.raises(ValueError, match="mask_ratio"):
        P.mask_indices(3, 10, 1.0)
    with pytest.raises(ValueError, match="num_tokens"):
        P.mask_indices(3, -1, 0.5)
