"""The proximal network in overlapping tiles gives the whole-volume result."""

import math

import numpy as np
import pytest
import torch

from qsmflow.dl.nsidl import NSIDL, NSIDLConfig, ProximalUNet
from qsmflow.dl.operators import DipoleOperator
from qsmflow.dl.tiling import HALO_VOX, apply_in_tiles, tile_cores


def _perturbed_unet(width=4, seed=0):
    torch.manual_seed(seed)
    net = ProximalUNet(width)
    with torch.no_grad():  # the shipped init is the identity map: make it do something
        for p in net.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    return net.eval()


def test_cores_partition_the_volume_and_respect_the_budget():
    shape, budget = (350, 401, 297), 12_000_000  # a 0.5 mm crop, the inference budget
    cores = tile_cores(shape, budget)
    assert 4 <= len(cores) <= 8
    covered = np.zeros(shape, int)
    for core in cores:
        covered[core] += 1
        assert all(c.start % 4 == 0 for c in core)  # on the U-Net's pooling grid
        grown = [min(n, (c.stop - c.start) + 2 * HALO_VOX)
                 for c, n in zip(core, shape, strict=True)]
        assert math.prod(grown) <= budget
    assert (covered == 1).all()
    assert tile_cores(shape, math.prod(shape)) == [tuple(slice(0, n) for n in shape)]
    # a budget below what the halo allows: cores stop at 2 x halo, not at 4 voxels
    small = tile_cores((120, 100, 90), 1000)
    assert 1 < len(small) <= 27
    assert all(c.stop - c.start >= HALO_VOX or c.stop == n
               for core in small for c, n in zip(core, (120, 100, 90), strict=True))


def test_receptive_field_is_within_the_halo():
    """One perturbed input voxel changes outputs at most HALO_VOX voxels away."""
    net = _perturbed_unet()
    n, centre = 80, 41
    z, field = torch.zeros(1, 1, n, n, n), torch.zeros(1, 1, n, n, n)
    with torch.no_grad():
        base = net(z, field)
        z[0, 0, centre, centre, centre] = 1.0
        changed = (net(z, field) - base).abs()[0, 0] > 1e-7
    reach = np.abs(np.argwhere(changed.numpy()) - centre).max()
    assert 15 <= reach <= HALO_VOX, reach


@pytest.mark.parametrize("shape, budget, n_tiles", [((161, 72, 64), 650_000, 2),
                                                    ((150, 141, 61), 910_000, 4)])
def test_tiled_network_equals_whole_network(shape, budget, n_tiles):
    net = _perturbed_unet(seed=1)
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(1, 1, *shape, generator=gen)
    field = torch.randn(1, 1, *shape, generator=gen)
    assert len(tile_cores(shape, budget)) == n_tiles
    with torch.no_grad():
        whole = net(z, field)
        tiled = apply_in_tiles(net, [z, field], budget)
    scale = whole.abs().max().item()
    assert scale > 1.0
    # float32 sums in another order only
    np.testing.assert_allclose(tiled.numpy(), whole.numpy(), atol=1e-5 * scale)


def test_a_halo_too_small_is_seen():
    """The test above can fail: with a 4-voxel halo the tiles' edges differ."""
    net = _perturbed_unet(seed=1)
    shape = (64, 64, 64)
    z, field = torch.randn(1, 1, *shape), torch.randn(1, 1, *shape)
    with torch.no_grad():
        whole = net(z, field)
        tiled = apply_in_tiles(net, [z, field], 40_000, halo=4)
    assert (tiled - whole).abs().max().item() > 1e-2 * whole.abs().max().item()


def test_nsidl_with_tiles_equals_nsidl_whole():
    torch.manual_seed(4)
    model = NSIDL(NSIDLConfig(n_iterations=2, width=4, shared_prox=False))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    shape, vsz, b0 = (112, 60, 56), (1.0, 1.0, 1.0), (0.0, 0.1, 0.995)
    gen = torch.Generator().manual_seed(5)
    field = 0.05 * torch.randn(1, 1, *shape, generator=gen)
    mask = torch.ones(1, 1, *shape)
    op = DipoleOperator(shape, vsz, b0)
    with torch.no_grad():
        whole = model(op, field, mask, mask, 10.0)
        tiled = model(op, field, mask, mask, 10.0, max_prox_voxels=300_000)
    np.testing.assert_allclose(tiled.numpy(), whole.numpy(),
                               atol=1e-5 * whole.abs().max().item())
