"""Tile binning shared by every splat rasterizer (3DGS, convex splats, ...): REFERENCE 1.3.

Instead of sorting every (tile, primitive) pair by a 64-bit (tile, depth) key as the CUDA
rasterizers do, the primitives are sorted once by depth and the pairs, emitted in that order,
are then bucketed into tiles by a stable integer sort keyed on the tile id alone (a radix /
counting sort in torch), so each tile's list stays front to back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TileBins:
    """Primitive ids per tile, front to back.

    The ids of tile t are ids[tile_start[t]:tile_start[t+1]]; tiles are numbered row-major,
    t = ty * tiles_x + tx.
    """

    ids: Tensor  # [P] long, primitive index (into the arrays given to bin_tiles) of each pair
    tile_start: Tensor  # [T+1] long, offsets into ids
    counts: Tensor  # [T] long, pairs per tile
    tiles_x: int
    tiles_y: int
    tile: int  # tile edge in pixels
    width: int
    height: int

    @property
    def num_tiles(self) -> int:
        return self.tiles_x * self.tiles_y

    @property
    def num_pairs(self) -> int:
        return int(self.ids.shape[0])

    def tile_ids(self, t: int) -> Tensor:
        """[k] primitive ids of tile t, front to back."""
        s = self.tile_start
        return self.ids[int(s[t]):int(s[t + 1])]


def tile_grid(width: int, height: int, tile: int = 16) -> tuple[int, int]:
    """(tiles_x, tiles_y) = (ceil(W/tile), ceil(H/tile))."""
    return (width + tile - 1) // tile, (height + tile - 1) // tile


def tile_rects(means2d: Tensor, radii: Tensor, width: int, height: int,
               tile: int = 16) -> tuple[Tensor, Tensor]:
    """Tile rectangle of each primitive, as INRIA's getRect (REFERENCE 1.3).

    rect_min = clamp(floor((mu - r) / tile)), rect_max = clamp(floor((mu + r + tile - 1) / tile)),
    both clamped to the grid; rect_max is exclusive.

    Args:
        means2d: Tensor  # [N, 2] pixel coordinates
        radii: Tensor  # [N] or [N, 2] radius in pixels (per axis for [N, 2]); <= 0 touches nothing
    Returns:
        (rect_min, rect_max): Tensor  # [N, 2] long each, (tx, ty)
    """
    tx, ty = tile_grid(width, height, tile)
    m = means2d.detach().double()
    r = radii.detach().double()
    if r.ndim == 1:
        r = r[:, None].expand(-1, 2)
    hi = torch.tensor([tx, ty], dtype=torch.long, device=means2d.device)
    m = torch.nan_to_num(m, nan=-1e9)
    # Clamp before the integer cast so far-away means cannot overflow int64.
    lo_f = ((m - r) / tile).floor().clamp(-1, 1 << 30)
    hi_f = ((m + r + (tile - 1)) / tile).floor().clamp(-1, 1 << 30)
    rmin = torch.minimum(lo_f.long().clamp_min(0), hi)
    rmax = torch.minimum(hi_f.long().clamp_min(0), hi)
    dead = (r <= 0).any(dim=1, keepdim=True)
    rmax = torch.where(dead, rmin, rmax)
    return rmin, rmax


def depth_order(depths: Tensor, keep: Tensor) -> Tensor:
    """Indices of the kept primitives sorted front to back (stable: ties keep index order).

    Args:
        depths: Tensor  # [N] view-space z
        keep: Tensor  # [N] bool
    Returns:
        Tensor  # [M] long
    """
    idx = torch.nonzero(keep, as_tuple=False).flatten()
    if idx.numel() == 0:
        return idx
    order = torch.sort(depths.detach()[idx], stable=True).indices
    return idx[order]


def bin_sorted(order: Tensor, rect_min: Tensor, rect_max: Tensor, width: int, height: int,
               tile: int = 16) -> TileBins:
    """Bucket primitives, already in depth order, into the tiles their rectangles touch.

    Args:
        order: Tensor  # [M] long, primitive ids front to back
        rect_min, rect_max: Tensor  # [N, 2] long tile rectangles (tile_rects), indexed by primitive id
    Returns:
        TileBins
    """
    tx, ty = tile_grid(width, height, tile)
    n_tiles = tx * ty
    device = rect_min.device
    lo = rect_min[order]  # [M, 2]
    ext = (rect_max[order] - lo).clamp_min(0)  # [M, 2] tiles spanned in x, y
    per = ext[:, 0] * ext[:, 1]  # [M]
    nz = per > 0
    order, lo, ext, per = order[nz], lo[nz], ext[nz], per[nz]
    n_pairs = int(per.sum()) if per.numel() else 0
    if n_pairs == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        counts = torch.zeros(n_tiles, dtype=torch.long, device=device)
        return TileBins(empty, torch.zeros(n_tiles + 1, dtype=torch.long, device=device), counts,
                        tx, ty, tile, width, height)
    # Pairs in primitive-major (depth) order: pair k of primitive i is tile (k % ext_x, k // ext_x)
    # inside its rectangle.
    src = torch.repeat_interleave(torch.arange(order.numel(), device=device), per)  # [P]
    first = torch.cumsum(per, 0) - per  # [M] offset of each primitive's first pair
    k = torch.arange(n_pairs, device=device) - first[src]
    ex = ext[src, 0]
    tile_id = (lo[src, 1] + k // ex) * tx + (lo[src, 0] + k % ex)  # [P]
    # Stable bucketing by tile id only; int32 keys take torch's radix-sort path on CPU.
    key = tile_id.to(torch.int32) if n_tiles < 2**31 else tile_id
    perm = torch.sort(key, stable=True).indices
    ids = order[src[perm]]
    counts = torch.bincount(tile_id, minlength=n_tiles)
    tile_start = torch.zeros(n_tiles + 1, dtype=torch.long, device=device)
    tile_start[1:] = torch.cumsum(counts, 0)
    return TileBins(ids, tile_start, counts, tx, ty, tile, width, height)


def bin_tiles(means2d: Tensor, radii: Tensor, depths: Tensor, valid: Tensor, width: int, height: int,
              tile: int = 16) -> TileBins:
    """Per-tile primitive lists in front-to-back order.

    Args:
        means2d: Tensor  # [N, 2] pixel coordinates (pixel centres at i + 0.5)
        radii: Tensor  # [N] or [N, 2] screen radius in pixels; 0 = culled
        depths: Tensor  # [N] view-space z, the sort key
        valid: Tensor  # [N] bool
    Returns:
        TileBins with ids indexing the N inputs.
    """
    rmin, rmax = tile_rects(means2d, radii, width, height, tile)
    order = depth_order(depths, valid)
    return bin_sorted(order, rmin, rmax, width, height, tile)


__all__ = ["TileBins", "tile_grid", "tile_rects", "depth_order", "bin_sorted", "bin_tiles"]
