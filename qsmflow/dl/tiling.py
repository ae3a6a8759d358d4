"""A convolutional network over a large volume in overlapping tiles, with the same result.

The proximal U-Net is local: an output voxel depends only on the inputs within its
receptive field (voxels 20 before to 19 after it, measured on ``ProximalUNet`` by
perturbing one input voxel). A tile that reaches ``HALO_VOX`` voxels beyond the part it
keeps therefore computes that part exactly as the whole volume would, provided the tile
starts on the network's pooling grid (multiples of 4). Only the network is tiled; the
dipole convolutions stay global.

Full-resolution activations dominate the memory (width x 4 bytes per voxel for each of
the few alive at once), so tiling bounds the network's memory by the tile, not the
volume: a 0.5 mm 7T brain (about 340 x 400 x 300) needs some 2 GB per activation whole.
"""

from __future__ import annotations

import itertools
import math

import torch

# Voxels kept beyond each tile's core: the receptive field's reach (20) rounded up to the
# pooling grid.
HALO_VOX = 24
ALIGN_VOX = 4  # the U-Net pools twice by 2


def tile_cores(shape, max_voxels: int, *, halo: int = HALO_VOX,
               align: int = ALIGN_VOX) -> list[tuple[slice, ...]]:
    """Core slices that partition ``shape``; each core grown by ``halo`` (clipped to the
    volume) holds at most ``max_voxels`` voxels where that is possible.

    The axis with the longest cores is split first, into equal parts on multiples of
    ``align``. One core (the whole volume) when the volume fits. Cores are never split
    below ``2 * halo`` voxels, where a tile would be mostly halo: a budget too small for
    that is exceeded rather than met by thousands of tiles.
    """
    shape = tuple(int(n) for n in shape)
    counts = [1, 1, 1]

    def core_sizes():
        return [math.ceil(math.ceil(n / c) / align) * align
                for n, c in zip(shape, counts, strict=True)]

    def tile_voxels():
        return math.prod(min(n, s + 2 * halo)
                         for n, s in zip(shape, core_sizes(), strict=True))

    while tile_voxels() > max_voxels:
        sizes = core_sizes()
        axis = max(range(3), key=lambda a: sizes[a])
        if sizes[axis] <= 2 * halo:
            break
        counts[axis] += 1
    sizes = core_sizes()
    ranges = [[slice(start, min(n, start + size)) for start in range(0, n, size)]
              for n, size in zip(shape, sizes, strict=True)]
    return [tuple(core) for core in itertools.product(*ranges)]


def apply_in_tiles(network, inputs: list[torch.Tensor], max_voxels: int | None, *,
                   halo: int = HALO_VOX) -> torch.Tensor:
    """``network(*inputs)`` for tensors (B, C, X, Y, Z), tile by tile when the volume holds
    more than ``max_voxels`` voxels (``None``: never). For inference only: the tiles are
    computed one after another and only their cores kept."""
    shape = inputs[0].shape[-3:]
    if max_voxels is None or math.prod(shape) <= max_voxels:
        return network(*inputs)
    cores = tile_cores(shape, max_voxels, halo=halo)
    out = None
    for core in cores:
        grown = tuple(slice(max(0, c.start - halo), min(n, c.stop + halo))
                      for c, n in zip(core, shape, strict=True))
        piece = network(*(x[(..., *grown)] for x in inputs))
        if out is None:
            out = piece.new_zeros(piece.shape[:-3] + tuple(shape))
        keep = tuple(slice(c.start - g.start, c.stop - g.start)
                     for c, g in zip(core, grown, strict=True))
        out[(..., *core)] = piece[(..., *keep)]
        del piece
    return out
