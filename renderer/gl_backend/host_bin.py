"""Tile binning on the host, for CPU rasterizers (binning.TileBinning method "host").

On llvmpipe the "GPU" is this CPU: its buffers live in host memory and the depth sort already runs
here (TileBinning.sort "cpu"). A counting sort in compiled loops buckets the depth-sorted
primitives into per-tile lists: the primitives' records gathered in depth order (one random read
each, where the passes below would make two), a count pass, a scan, a scatter pass. The lists are
the ones bin.comp makes (tile-major, front to back within a tile); the caller writes the pair
texture and the tile ends.

The depth-sorted primitives are cut into PARTS runs of about equal pairs, counted and scattered
by as many threads at once (numba's nogil: the main thread takes the first run); each run's pairs
of a tile follow the run before it, so the lists are the same.
Measured (bench scene, 800x800, 8 x 16 px tiles, 2 cores; same process, one bins after another):
gathering first took 0.875x the time of reading the records in place at 100k Gaussians, 0.672x
at 300k; two threads 0.61x and 0.47x of one (numba prange, same split). bin.comp's chunk walks
took about twice the single-threaded time in a frame.

The loops are compiled by numba (cached on disk after the first use); without numba, available()
is False and TileBinning bins on the GL side.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # (optional at import: TileBinning falls back to bin.comp without it)
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; this guards broken installs
    numba = None

FULL_SPANS = 0xFFFFFFFF  # gs_common.glsl FULL_SPANS: every row spans the whole rectangle
PARTS = max(1, min(4, os.cpu_count() or 1))  # runs binned at once (threads)
_pool: ThreadPoolExecutor | None = None  # PARTS - 1 workers, made on first use
_pool_lock = threading.Lock()


def available() -> bool:
    """True where numba compiles the binning loops."""
    return numba is not None


def _jit(fn):
    """numba.njit, cached on disk where numba finds a writable place (else compiled per process)."""
    if numba is None:
        return fn
    try:
        return numba.njit(cache=True, nogil=True, boundscheck=False)(fn)
    except RuntimeError:  # "cannot cache ... no locator available": a read-only install and home
        return numba.njit(nogil=True, boundscheck=False)(fn)


@_jit
def _rect(rects, i, tiles_x, tiles_y):
    """Record i's tile rows [y0, y1), clipped to the grid (the projections clip already: this keeps
    a bad record from writing out of bounds), its x0, x1, row spans (the 64-bit word) and whether
    they are FULL_SPANS."""
    r0, r1, sx = np.int64(rects[i, 0]), np.int64(rects[i, 1]), np.int64(rects[i, 2])
    y0 = r0 >> 16
    spans = sx | (np.int64(rects[i, 3]) << 32)
    return y0, max(y0, min(r1 >> 16, tiles_y)), r0 & 0xFFFF, r1 & 0xFFFF, spans, sx == FULL_SPANS


@_jit
def _span(x0, x1, spans, full, i, tiles_x):
    """Tiles [xa, xb) of rectangle row i (gs_common.glsl row_span), clipped to the grid."""
    if full:
        return min(x0, tiles_x), min(x1, tiles_x)
    b = (spans >> (8 * i)) & 0xFF
    return min(x0 + (b & 15), tiles_x), min(x0 + (b >> 4), tiles_x)


@_jit
def _gather(order, rects, tiles_x, tiles_y, out, cum):
    """out[i] = rects[order[i]] ([m, 4] uint32) and cum[i] the tiles of the rectangles of records
    0..i ([m] int64; their row spans may hold fewer: a measure to balance the runs by)."""
    total = 0
    for i in range(order.shape[0]):
        s = order[i]
        for c in range(4):
            out[i, c] = rects[s, c]
        y0, y1, x0, x1, _, _ = _rect(out, i, tiles_x, tiles_y)
        total += (y1 - y0) * max(min(x1, tiles_x) - x0, 0)
        cum[i] = total


@_jit
def _count(srects, tiles_x, tiles_y, diff):
    """Per-tile pair counts of the records srects [m, 4] as differences along each tile row:
    diff [tiles_y * (tiles_x + 1)] int32 (zeroed) gets +1 at each row span's first tile and -1 at
    its end."""
    stride = tiles_x + 1
    for i in range(srects.shape[0]):
        y0, y1, x0, x1, spans, full = _rect(srects, i, tiles_x, tiles_y)
        for y in range(y0, y1):
            xa, xb = _span(x0, x1, spans, full, y - y0, tiles_x)
            if xb > xa:
                diff[y * stride + xa] += 1
                diff[y * stride + xb] -= 1


@_jit
def _starts(diff, tiles_x, tiles_y, cursor):
    """Each run's first pair in each tile (tile-major, runs in order: an exclusive scan of the
    counts in diff [runs, tiles_y * (tiles_x + 1)]) into cursor [runs, tiles] int32; returns the
    pairs in all."""
    runs = diff.shape[0]
    run = np.zeros(runs, np.int64)
    total = 0
    for y in range(tiles_y):
        run[:] = 0
        for x in range(tiles_x):
            for p in range(runs):
                run[p] += diff[p, y * (tiles_x + 1) + x]
                cursor[p, y * tiles_x + x] = total
                total += run[p]
    return total


@_jit
def _scatter(order, srects, tiles_x, tiles_y, cursor, ids):
    """Primitive order[i] (its record srects[i]) into its tiles' lists, in order: ids [>= pairs]
    uint32; cursor [tiles] int32 from _starts, left at each tile's end of this run."""
    for i in range(srects.shape[0]):
        s = order[i]
        y0, y1, x0, x1, spans, full = _rect(srects, i, tiles_x, tiles_y)
        for y in range(y0, y1):
            xa, xb = _span(x0, x1, spans, full, y - y0, tiles_x)
            for t in range(y * tiles_x + xa, y * tiles_x + xb):
                ids[cursor[t]] = s
                cursor[t] += 1


def _each_run(fn, runs: list) -> None:
    """fn(*args) for every args in runs, the first on this thread and the others on the pool."""
    global _pool
    if len(runs) > 1 and _pool is None:
        with _pool_lock:  # (renderers in two threads: one pool)
            if _pool is None:
                _pool = ThreadPoolExecutor(PARTS - 1, thread_name_prefix="radview-bin")
    futures = [_pool.submit(fn, *args) for args in runs[1:]]
    fn(*runs[0])
    for f in futures:
        f.result()


def bin_tiles(order: np.ndarray, rects: np.ndarray, tiles_x: int, tiles_y: int,
              ids: np.ndarray, parts: int | None = None) -> tuple[np.ndarray, int]:
    """Bucket primitives into tiles, stably.

    order [m] uint32: the primitives front to back (indices into rects); rects [n, 4] uint32: the
    projection's packed rectangles and row spans (gs_common.glsl); ids [capacity] uint32: receives
    the primitive of each pair, tile-major; parts: runs binned at once (None: PARTS). Returns
    (ends [tiles_y * tiles_x] int32: tile t's pairs are ends[t - 1] .. ends[t], pairs). Raises
    ValueError, writing nothing, if ids is too short.
    """
    m = len(order)
    parts = max(1, min(PARTS if parts is None else parts, m))
    srects = np.empty((m, 4), np.uint32)
    cum = np.empty(m, np.int64)
    # Gathered in runs of equal primitives (about equal work here), each run's sums then offset.
    cuts = [m * k // parts for k in range(parts + 1)]
    _each_run(_gather, [(order[a:b], rects, tiles_x, tiles_y, srects[a:b], cum[a:b])
                        for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    for a, b in zip(cuts[1:-1], cuts[2:], strict=True):
        cum[a:b] += cum[a - 1]
    # Runs of about equal tiles (depth-sorted: the near primitives cover more).
    cuts = [0, *(int(np.searchsorted(cum, cum[-1] * k // parts)) for k in range(1, parts)), m]
    runs = list(zip(cuts[:-1], cuts[1:], strict=True))
    diff = np.zeros((parts, tiles_y * (tiles_x + 1)), np.int32)
    _each_run(_count, [(srects[a:b], tiles_x, tiles_y, diff[p]) for p, (a, b) in enumerate(runs)])
    cursor = np.empty((parts, tiles_y * tiles_x), np.int32)
    pairs = int(_starts(diff, tiles_x, tiles_y, cursor))
    if pairs > len(ids):
        raise ValueError(f"{pairs} pairs do not fit {len(ids)} ids")
    _each_run(_scatter, [(order[a:b], srects[a:b], tiles_x, tiles_y, cursor[p], ids)
                         for p, (a, b) in enumerate(runs)])
    return cursor[-1], pairs


__all__ = ["available", "bin_tiles", "PARTS"]
