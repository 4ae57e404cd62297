"""Tile binning on the host, for CPU rasterizers (binning.TileBinning method "host").

On llvmpipe the "GPU" is this CPU: its buffers live in host memory and the depth sort already runs
here (TileBinning.sort "cpu"). A counting sort in compiled loops buckets the depth-sorted
primitives into per-tile lists in one count pass and one scatter pass, about 5 ns a pair on one
thread, where bin.comp's chunk walks (storage-buffer access a lane loop each on llvmpipe) spend
about 20 ns a pair on two threads. The lists are the ones bin.comp makes (tile-major, front to back
within a tile); the host then writes the pair texture and the tile ends.

The loops are compiled by numba (cached on disk after the first use, ~1.5 s); without numba,
available() is False and TileBinning bins on the GL side.
"""

from __future__ import annotations

import numpy as np

try:  # (optional at import: TileBinning falls back to bin.comp without it)
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; this guards broken installs
    numba = None

FULL_SPANS = 0xFFFFFFFF  # gs_common.glsl FULL_SPANS: every row spans the whole rectangle


def available() -> bool:
    """True where numba compiles the binning loops."""
    return numba is not None


def _jit(fn):
    return numba.njit(cache=True, nogil=True, boundscheck=False)(fn) if numba is not None else fn


@_jit
def _rect(rects, s, tiles_x, tiles_y):
    """Primitive s's tile rows [y0, y1), clipped to the grid (the projections clip already: this
    keeps a bad record from writing out of bounds), its x0, x1, row spans (the 64-bit word) and
    whether they are FULL_SPANS."""
    r0, r1, sx = np.int64(rects[s, 0]), np.int64(rects[s, 1]), np.int64(rects[s, 2])
    y0 = r0 >> 16
    spans = sx | (np.int64(rects[s, 3]) << 32)
    return y0, max(y0, min(r1 >> 16, tiles_y)), r0 & 0xFFFF, r1 & 0xFFFF, spans, sx == FULL_SPANS


@_jit
def _span(x0, x1, spans, full, i, tiles_x):
    """Tiles [xa, xb) of rectangle row i (gs_common.glsl row_span), clipped to the grid."""
    if full:
        return min(x0, tiles_x), min(x1, tiles_x)
    b = (spans >> (8 * i)) & 0xFF
    return min(x0 + (b & 15), tiles_x), min(x0 + (b >> 4), tiles_x)


@_jit
def _count(order, rects, tiles_x, tiles_y, diff):
    """Per-tile pair counts as differences along each tile row: diff [tiles_y * (tiles_x + 1)]
    int32 (zeroed) gets +1 at each row span's first tile and -1 at its end (gs_common.glsl
    row_span). order [m] uint32, rects [n, 4] uint32."""
    stride = tiles_x + 1
    for gi in range(order.shape[0]):
        s = order[gi]
        y0, y1, x0, x1, spans, full = _rect(rects, s, tiles_x, tiles_y)
        for y in range(y0, y1):
            xa, xb = _span(x0, x1, spans, full, y - y0, tiles_x)
            if xb > xa:
                diff[y * stride + xa] += 1
                diff[y * stride + xb] -= 1


@_jit
def _starts(diff, tiles_x, tiles_y, starts):
    """Each tile's first pair (tile-major exclusive scan of the counts in diff) into starts
    [tiles_y * tiles_x] int32; returns the pairs in all."""
    total = 0
    for y in range(tiles_y):
        run = 0
        for x in range(tiles_x):
            run += diff[y * (tiles_x + 1) + x]
            starts[y * tiles_x + x] = total
            total += run
    return total


@_jit
def _scatter(order, rects, tiles_x, tiles_y, cursor, ids):
    """Each primitive's id into its tiles' lists, in order (front to back): ids [>= pairs] uint32;
    cursor [tiles] int32 from _starts, left at each tile's end."""
    for gi in range(order.shape[0]):
        s = order[gi]
        y0, y1, x0, x1, spans, full = _rect(rects, s, tiles_x, tiles_y)
        for y in range(y0, y1):
            xa, xb = _span(x0, x1, spans, full, y - y0, tiles_x)
            for t in range(y * tiles_x + xa, y * tiles_x + xb):
                ids[cursor[t]] = s
                cursor[t] += 1


def bin_tiles(order: np.ndarray, rects: np.ndarray, tiles_x: int, tiles_y: int,
              ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Bucket primitives into tiles, stably.

    order [m] uint32: the primitives front to back (indices into rects); rects [n, 4] uint32: the
    projection's packed rectangles and row spans (gs_common.glsl); ids [capacity] uint32: receives
    the primitive of each pair, tile-major. Returns (ends [tiles_y * tiles_x] int32: tile t's pairs
    are ends[t - 1] .. ends[t], pairs). Raises ValueError, writing nothing, if ids is too short.
    """
    diff = np.zeros(tiles_y * (tiles_x + 1), np.int32)
    _count(order, rects, tiles_x, tiles_y, diff)
    cursor = np.empty(tiles_y * tiles_x, np.int32)
    pairs = int(_starts(diff, tiles_x, tiles_y, cursor))
    if pairs > len(ids):
        raise ValueError(f"{pairs} pairs do not fit {len(ids)} ids")
    _scatter(order, rects, tiles_x, tiles_y, cursor, ids)
    return cursor, pairs


__all__ = ["available", "bin_tiles"]
