"""Classic pretext tasks: labels invert the transforms, references by loops, bad arguments."""
import pytest
import torch
import torchvision.transforms.v2.functional as TF

import sslkit.pretext as P


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_rotation_matches_rot90_and_inverts():
    x = torch.rand(12, 3, 8, 8)
    rotated, labels = P.rotate(x, generator=gen(0))
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for i in range(12):
        assert torch.equal(rotated[i], torch.rot90(x[i], int(labels[i]), dims=(-2, -1)))
    assert torch.equal(P.rotate_by(rotated, -labels), x)
    assert P.rotate(torch.empty(4, 3, 8, 8, device="meta"))[0].shape == (4, 3, 8, 8)


def test_jigsaw_permutations():
    perms = P.jigsaw_permutations(24, grid=2, seed=0)
    assert perms.shape == (24, 4) and len({tuple(p) for p in perms.tolist()}) == 24
    p9 = P.jigsaw_permutations(30, grid=3, seed=1)
    assert (p9.sort(1).values == torch.arange(9)).all()
    d = (p9[:, None] != p9[None]).sum(-1) + 100 * torch.eye(30, dtype=torch.long)
    assert d.min() >= 6  # maximal-Hamming selection keeps classes far apart (random: often 2)
    assert torch.equal(P.jigsaw_permutations(30, grid=3, seed=1), p9)


def test_jigsaw_labels_reassemble_the_image():
    x = torch.rand(5, 3, 12, 12)
    perms = P.jigsaw_permutations(24, grid=2)
    tiles, labels = P.jigsaw(x, perms, grid=2, generator=gen(0))
    assert tiles.shape == (5, 4, 3, 6, 6)
    cells = torch.empty_like(tiles)
    for b in range(5):
        cells[b, perms[labels[b]]] = tiles[b]
    back = cells.reshape(5, 2, 2, 3, 6, 6).permute(0, 3, 1, 4, 2, 5).reshape(5, 3, 12, 12)
    assert torch.equal(back, x)


def test_jigsaw_tile_jitter_crops_inside_cell():
    x = torch.rand(3, 1, 12, 12)
    perms = P.jigsaw_permutations(24, grid=2)
    tiles, labels = P.jigsaw(x, perms, grid=2, generator=gen(0), tile_size=4)
    for b in range(3):
        for i, cell in enumerate(perms[labels[b]].tolist()):
            r, c = divmod(cell, 2)
            region = x[b, :, 6 * r:6 * r + 6, 6 * c:6 * c + 6]
            assert any(torch.equal(tiles[b, i], region[:, oy:oy + 4, ox:ox + 4]) for oy in range(3) for ox in range(3))


def test_corruptions():
    x = torch.full((8, 3, 16, 16), 0.5)
    noisy = P.gaussian_corrupt(x, 0.1, generator=gen(0))
    assert abs((noisy - x).std() - 0.1) < 0.01
    sp = P.salt_and_pepper(x, 0.2, generator=gen(0))
    hit = (sp != 0.5).any(1)
    assert abs(hit.float().mean() - 0.2) < 0.03 and set(sp[:, 0][hit].unique().tolist()) <= {0.0, 1.0}
    out, holes = P.inpaint_holes(x, n_holes=1, size=0.25, generator=gen(0))
    assert holes.shape == (8, 1, 16, 16) and (holes.sum((1, 2, 3)) == 16).all()
    assert (out[holes.expand_as(x)] == 0).all() and (out[~holes.expand_as(x)] == 0.5).all()


def test_colorization_and_next_step():
    x = torch.rand(4, 3, 8, 8)
    gray, target = P.colorization(x)
    torch.testing.assert_close(gray, TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)
    assert torch.equal(target, x)
    sig = torch.rand(2, 3, 10)
    ctx, tgt = P.next_step(sig, horizon=2)
    assert ctx.shape == tgt.shape == (2, 3, 8) and torch.equal(tgt[..., 0], sig[..., 2])
    clips = torch.rand(2, 6, 1, 4, 4)
    ctx, tgt = P.next_step(clips)
    assert torch.equal(tgt[:, -1], clips[:, -1]) and torch.equal(ctx[:, 0], clips[:, 0])


BAD = [
    (lambda: P.rotate_by(torch.rand(1, 3, 4, 6), 1), "square"),
    (lambda: P.jigsaw_permutations(25, grid=2), "k=25"),
    (lambda: P.jigsaw_permutations(0), "k=0"),
    (lambda: P.jigsaw(torch.rand(1, 3, 9, 9), torch.zeros(3, 9, dtype=torch.long)), "permutation"),
    (lambda: P.jigsaw(torch.rand(1, 3, 9, 9), P.jigsaw_permutations(4, grid=2)), r"needs \(K, 9\)"),
    (lambda: P.salt_and_pepper(torch.rand(1, 3, 4, 4), 1.5), "amount=1.5"),
    (lambda: P.inpaint_holes(torch.rand(1, 3, 4, 4), n_holes=0), "n_holes=0"),
    (lambda: P.colorization(torch.rand(1, 1, 4, 4)), "channels"),
    (lambda: P.next_step(torch.rand(2, 3, 4), horizon=4), "horizon=4"),
]


@pytest.mark.parametrize("call,match", BAD)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# -- accelerator friendliness: no host-device traffic per call -------------------------------------
from devguard import DeviceGuard  # noqa: E402


def test_rotate_by_builds_its_table_on_the_device_once():
    x = torch.empty(4, 3, 8, 8, device="meta")  # stands in for an accelerator
    P.rotate_by(x, 1)  # warm the per-(H, W, device) cache
    with DeviceGuard() as g:
        P.rotate_by(x, 1)
        P.rotate(x)
    assert not g.uploads and not g.reads, (g.uploads, g.reads)


def test_jigsaw_validate_false_skips_the_host_check_only():
    perms = P.check_permutations(P.jigsaw_permutations(24, grid=2), 2)
    x = torch.rand(6, 3, 8, 8)
    a = P.jigsaw(x, perms, grid=2, generator=gen(0))
    b = P.jigsaw(x, perms, grid=2, generator=gen(0), validate=False)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    xm, pm = torch.empty(6, 3, 8, 8, device="meta"), torch.empty(24, 4, dtype=torch.long, device="meta")
    with DeviceGuard() as g:
        tiles, labels = P.jigsaw(xm, pm, grid=2, validate=False)
    assert not g.reads and not g.uploads, (g.reads, g.uploads)
    assert tiles.shape == (6, 4, 3, 4, 4)
    with DeviceGuard() as g:
        P.jigsaw(x, perms, grid=2)
    assert g.reads  # the default still checks the values
    with pytest.raises(ValueError, match=r"needs \(K, 4\)"):  # shapes are checked either way
        P.jigsaw(x, perms[:, :3], grid=2, validate=False)
    with pytest.raises(ValueError, match="permutation of 0..3"):
        P.check_permutations(torch.zeros(2, 4, dtype=torch.long), 2)
