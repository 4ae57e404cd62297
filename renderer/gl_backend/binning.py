"""Depth sort and tile binning shared by the splat pipelines (Gaussians, convex splats).

A pipeline's projection pass writes, per primitive i of n (shaders/gs_common.glsl layouts):
    keys[i]   float bits of the view-space depth, INVALID_KEY when culled (sorts last)
    vals[i]   i (or nothing, where the sort is told iota: the Gaussian projection)
    rects[i]  uvec4: the tile rectangle in blend tiles, packed (x0 | y0 << 16, x1 | y1 << 16), then
              the tiles each rectangle row really covers (Gaussians, unless exact_tiles;
              gs_common.glsl row_span) or FULL_SPANS (whole rows)
and counts into counters[0] the primitives with a valid key and into counters[2] the
(tile, primitive) pairs their rectangles (or spans) cover, or (HOST_COUNTS) stores each one's
pairs for TileBinning.host_counts to reduce with the keys. TileBinning then
    sort  [radix.comp, scan.comp]  stable radix sort of (key, index) on the GPU, or numpy on the CPU
    bin   [bin.comp, bin_rows.comp or bin_par.comp, scan.comp, or host_bin.py]  (BIN_METHODS: a
                                   counting sort on the host on CPU rasterizers, or chunk walks there,
                                   a work group per chunk whose lanes share each primitive's tiles;
                                   per-primitive atomics and a per-tile sort on GPUs)
                                   the depth-sorted primitives bucketed stably into per-tile lists:
                                   tile t's pairs are ends[t - 1] .. ends[t] (start 0 for t = 0),
                                   ends = hist[Bins.range_base:], and their primitive ids sit in an R32UI
                                   texture (pair_coord(p), PAIR_TEX_W wide) that blends texelFetch.
A global depth sort and a stable bucketing avoid sorting every (tile, primitive) pair (DESIGN,
Backends); the torch twin is renderer/torch_backend/tiles.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import host_bin
from .context import is_software
from .shaders import compute_shader
from .sort import (
    Scratch,
    copy_scan_total,
    exclusive_scan,
    groups,
    radix_sort,
    scan_total,
    set_uniforms,
    subgroup_size,
)

PAIR_TEX_W = 4096  # gs_common.glsl PAIR_TEX_W
INVALID_KEY = 0xFFFFFFFF  # gs_common.glsl INVALID_KEY: the sort key of a culled primitive
# Binning chunks: one work group of WALK lanes walks SPLIT chunks of depth-sorted primitives at
# once, LANES = WALK / SPLIT lanes a chunk sharing each primitive's tiles (bin.comp). llvmpipe ends
# any invocation after 65535 loop iterations in total (LP_MAX_TGSI_LOOP_ITERATIONS), silently; a
# walk takes about one iteration per LANES pairs plus one per primitive, so chunks are sized for
# WALK_ITERATIONS iterations on average (depth-sorted chunks are unbalanced: near primitives cover
# more tiles, the longest walk ~2.5x the mean), and the binned pair count is checked against the
# projection's: on a mismatch the frame is binned again with twice the chunks, and later frames
# start from the chunk count that worked.
# Measured (bench scene, 800x800, 8 x 16 px tiles, one process, alternating): SPLIT 2 (two chunks of
# 4 lanes: a primitive's 2 or 3 tile rows, or its ~9 tiles, left most of 8 lanes idle in each of
# llvmpipe's per-lane storage-buffer loops) with 16384 iterations a chunk took 0.876x and 0.884x the
# bin time of SPLIT 1 with 8192 at 100k Gaussians (21 against 27 chunks), 0.749x and 0.878x at
# 300k (63 against 81); SPLIT 1 with 16384: 0.994x (100k), 0.925x (300k). (Earlier, 8 px tiles and
# SPLIT 1: 8192 took 0.85x the bin time of 16384 at 100k, the same at 300k; 4096 0.94x and 1.1x.)
WALK_ITERATIONS = 16384
SPLIT = 2
SORT_MODES = ("auto", "gpu", "cpu")
# Bin methods: "host" is a counting sort on the host (host_bin.py: where the GL buffers are host
# memory, llvmpipe, and numba is there; the fast choice on CPU rasterizers); "chunks" walks
# depth-sorted chunks serially (bin.comp: a few work groups with long walks, the fast choice on
# llvmpipe without host binning); "parallel" is one invocation per primitive with per-tile atomic
# counters and a per-tile sort by depth rank (bin_par.comp: the fast choice on GPUs, where the
# serial walks took about half of a frame). "auto" picks host on CPU rasterizers (chunks without
# numba), parallel elsewhere. All give the same bins.
BIN_METHODS = ("auto", "host", "chunks", "parallel")
# Radix sort on CPU rasterizers (in-frame, one process, against 1024 keys a chunk, 8-bit digits and
# 64 chunks a work group): 2048 keys a chunk, digits up to 9 bits and 8 chunks a work group took
# 0.93x the sort time at 100k Gaussians (bench camera, 23 key bits: three 8-bit passes either way)
# and 0.81x with a nearer camera (25 key bits: three 9-bit passes instead of four); with 64 chunks
# a work group, 49 chunks made one work group and left the second thread idle.
SORT_CHUNK_CPU = 2048
SORT_DIGIT_BITS_CPU = 9
SORT_LOCAL_CPU = 8
# counters[PAIRS_BINNED] (the counters buffer of projection_buffers, unused by the shaders): the
# pairs the parallel binning counted, copied there on the GPU and checked after the frame.
PAIRS_BINNED = 7
# counters[NEXT_TILE]: the next tile of a software blend with dynamic tiles (pipeline.run_tiles);
# COUNTERS words in all.
NEXT_TILE = 8
COUNTERS = 12
SORT_CAP = 4096  # bin_par.comp: pairs a tile sorts in shared memory (16 KiB); longer lists in place
# bin_par.comp PASS 2 invocations per tile. H200, 1M Gaussians at 1920x1080 (13.4M pairs, 1584 of
# 8160 tiles over SORT_CAP): the bin stage took 3.4 ms with 1024, 4.5 ms with 256 (3M Gaussians:
# 11.3 and 18.2 ms); a SORT_CAP of 8192 gained nothing with 1024 and lost with 256 or 512.
SORT_GROUP = 1024
# bin_par.comp PASS 2 bucket-sorts tile lists of up to BUCKET_LEN pairs (BUCKETS) and falls back
# to the bitonic sort where a bucket holds more than MAX_BUCKET pairs (max_bucket 0: bitonic only).
# H200, 1920x1080, culled 16 px tiles, the bin stage: 1M Gaussians (about 1000 pairs a tile)
# 1.30 ms with buckets for every list that fits SORT_CAP against 1.77 ms bitonic. BUCKET_LEN
# 1024 / 2048 / 4096 (MAX_BUCKET 64, two rounds): 1M 2.11-2.40 / 1.88-1.90 / 1.30-1.31 ms;
# 3M (about 3000 a tile) 8.65 / 8.58 / 8.37-8.98 ms, a tie. MAX_BUCKET 64 against 32: 1.31
# against 1.40 ms at 1M, the same at 3M.
BUCKET_LEN = 4096
MAX_BUCKET = 64


def gpu_sort_chunk(n: int) -> int:
    """Keys per radix.comp invocation on GPUs: about 8k invocations a pass, 128 to 1024 keys each.
    (H200: 128 took 0.72x the sort time of 256 at 1M keys; at 3M, 256 and 512 tied and 128 took
    1.1x; 64 lost at both: more chunks, a longer scan of their digit counts.)"""
    return min(1024, max(128, 1 << max(0, (-(-n // 8192) - 1).bit_length())))


def unpack_spans(rects: np.ndarray, spans: np.ndarray | None) -> np.ndarray:
    """[n, 8, 2] first and end tile x of each rectangle row (gs_common.glsl row_span) from rects
    [n, 4] (x0, y0, x1, y1) and packed spans [n, 2] uint32 (None: whole rectangles)."""
    x0, x1 = rects[:, 0].astype(np.int64), rects[:, 2].astype(np.int64)
    out = np.repeat(np.stack([x0, x1], axis=1)[:, None, :], 8, axis=1)
    if spans is not None:
        byte = (spans.astype(np.uint64)[:, 0] | (spans.astype(np.uint64)[:, 1] << np.uint64(32)))
        b = (byte[:, None] >> (np.uint64(8) * np.arange(8, dtype=np.uint64))[None]) & np.uint64(0xFF)
        part = spans[:, 0] != 0xFFFFFFFF
        out[part, :, 0] = x0[part, None] + (b[part] & np.uint64(15)).astype(np.int64)
        out[part, :, 1] = x0[part, None] + (b[part] >> np.uint64(4)).astype(np.int64)
    rows = np.arange(8)[None, :] < (rects[:, 3].astype(np.int64) - rects[:, 1])[:, None]
    out[~rows] = 0
    return out


def nearest_texture(ctx, size: tuple[int, int], components: int, dtype: str = "f4"):
    """A texture for texelFetch/imageStore (NEAREST filtering)."""
    tex = ctx.texture(size, components, dtype=dtype)
    tex.filter = (ctx.NEAREST if hasattr(ctx, "NEAREST") else 0x2600,) * 2
    return tex


@dataclass
class Bins:
    """Per-tile pair lists of one frame (see the module doc for the layout of hist)."""

    hist: object  # moderngl.Buffer, uint[chunks * num_tiles], a row per chunk (bin.comp)
    chunks: int
    n_pairs: int
    num_tiles: int
    deferred: bool = False  # the pairs binned are in counters[PAIRS_BINNED] (TileBinning.check)

    @property
    def range_base(self) -> int:
        """Where the tile ranges' ends start in hist: the last chunk's row (the blends' uniform)."""
        return (self.chunks - 1) * self.num_tiles


class TileBinning:
    """Sorts depth keys and bins primitives into tiles; owns the pair-id texture.

    Args:
        ctx: moderngl context
        scratch: the owning pipeline's Scratch (keys, rects and counters live there too)
        sort: "gpu" (radix.comp), "cpu" (numpy sorts the read-back keys) or "auto" (cpu on CPU
            rasterizers, where the keys are in host memory: at 100k Gaussians the sort took 1.6 ms
            against 6.6 for radix.comp on llvmpipe, the frame 0.93x; gpu elsewhere)
        method: "auto" | "host" | "chunks" | "parallel" (see BIN_METHODS; "host" without numba
            raises)
    """

    def __init__(self, ctx, scratch: Scratch, sort: str = "gpu", method: str = "auto"):
        if sort not in SORT_MODES:
            raise ValueError(f"sort must be 'auto', 'gpu' or 'cpu', got {sort!r}")
        if method not in BIN_METHODS:
            raise ValueError(f"method must be one of {BIN_METHODS}, got {method!r}")
        if method == "host" and not host_bin.available():
            raise ValueError("bin method 'host' needs numba (pip install numba)")
        self.ctx = ctx
        if method == "auto":
            method = ("host" if host_bin.available() else "chunks") if is_software(ctx) else "parallel"
        self.method = method
        self._host_ids = None  # "host": the pair ids as written to pair_ids (its texels)
        self._host_rects = None  # "host": the rects read back [>= n, 4] uint32
        self._host_order = None  # (sorted indices [n_vis..n] uint32, n): the cpu sort's result
        self.scratch = scratch
        self.sort_mode = ("cpu" if is_software(ctx) else "gpu") if sort == "auto" else sort
        self._iota_cache = None  # the cpu sort's indices
        self.pair_ids = None  # R32UI texture, grown by 1.5x
        self.chunk_scale = 1  # chunks per WALK_ITERATIONS iterations, doubled when a walk overran the cap
        self.sort_cap = SORT_CAP  # (tests lower it to exercise the in-place sort of long tiles)
        self.max_bucket = MAX_BUCKET  # (tests lower it to exercise the bitonic fallback)
        # Chunk walks store pair ids into a buffer copied to the texture afterwards on CPU
        # rasterizers (llvmpipe's imageStore costs more than a buffer store plus the copy).
        self.software = is_software(ctx)
        self.pair_buffer = self.software
        # Largest storage buffer a shader may bind, in uint words (128 MiB on llvmpipe): binding a
        # bigger one is undefined and crashed Mesa, so dense frames switch method or fail clearly.
        self.max_words = int(ctx.info.get("GL_MAX_SHADER_STORAGE_BLOCK_SIZE", 1 << 27)) // 4
        self.max_pairs = PAIR_TEX_W * int(ctx.info.get("GL_MAX_TEXTURE_SIZE", 16384))
        # bin.comp's lanes per walk: the SIMD width on llvmpipe, where a work group of one subgroup
        # runs in lockstep and its shared-memory staging needs no barrier (LOCKSTEP); 8 elsewhere.
        self.lockstep = "llvmpipe" in str(ctx.info.get("GL_RENDERER", "")).lower()
        width = subgroup_size(ctx)
        self.walk = width if self.lockstep and width in (4, 8, 16) else 8
        self.lockstep = self.lockstep and width == self.walk
        # Chunks a work group walks at once (bin.comp SPLIT, LOCKSTEP only), walk // split lanes each.
        self.split = SPLIT

    # ---- buffers the projection fills --------------------------------------------------------
    def projection_buffers(self, n: int) -> tuple:
        """(rects, keys, vals, counters) for n primitives; counters come zeroed, but for
        counters[4] (the least sort key, gs_project.comp) at 0xFFFFFFFF."""
        counters = self.scratch.get("counters", 4 * COUNTERS)
        init = np.zeros(COUNTERS, np.uint32)
        init[4] = 0xFFFFFFFF
        self.scratch.upload(counters, init.tobytes())
        return (self.scratch.get("rects", 16 * n), self.scratch.get("keys", 4 * n),
                self.scratch.get("vals", 4 * n), counters)

    @staticmethod
    def host_counts(keys, npairs, n: int) -> tuple[int, int, tuple[int, int], np.ndarray]:
        """(visible, pairs, (least, greatest) valid key, the keys [n] uint32 as read) of a projection
        run with HOST_COUNTS (gs_project.comp), reduced on the host from keys [n] and npairs [n]
        (uint32 buffers); sort(host_keys=) takes the keys rather than reading them again."""
        k = np.frombuffer(keys.read(4 * n), dtype=np.uint32)
        invalid = k == INVALID_KEY
        n_vis = n - int(np.count_nonzero(invalid))
        pairs = int(np.frombuffer(npairs.read(4 * n), dtype=np.uint32).sum(dtype=np.int64))
        if n_vis == 0:
            return 0, pairs, (INVALID_KEY, 0), k
        # INVALID_KEY exceeds every valid key (positive float bits), so the least key is valid.
        return n_vis, pairs, (int(k.min()), int(np.max(k, where=~invalid, initial=0))), k

    def pair_texture(self, n_pairs: int):
        """R32UI texture of >= n_pairs texels: the primitive id of each pair."""
        rows = max(1, (n_pairs + PAIR_TEX_W - 1) // PAIR_TEX_W)
        cur = self.pair_ids
        if cur is None or cur.height < rows:
            if cur is not None:
                rows = max(rows, int(cur.height * 1.5))
                cur.release()
            self.pair_ids = nearest_texture(self.ctx, (PAIR_TEX_W, rows), 1, "u4")
        return self.pair_ids

    # ---- stages ------------------------------------------------------------------------------
    def sort(self, keys, vals, n: int, key_range: tuple[int, int] | None = None, iota: bool = False,
             slots=None, host_keys: np.ndarray | None = None):
        """Stable ascending sort of n (key, index) pairs; returns the buffers holding the result.

        key_range: (least, greatest) of the keys other than INVALID_KEY, if known: the radix sort
        then orders key - least over only the bits that range needs (3 passes instead of 4 when
        the depths span less than a factor of ~2^15 in float bits), the same order.
        iota: the values are the indices 0..n-1 (vals' contents unread; gs_project.comp stores none).
        slots: the scene was uploaded in this locality.SpatialOrder, so keys and values are by slot
        (cpu sort only): equal keys keep the order of the scene's own indices, as without slots.
        host_keys: keys' contents [n] uint32 where the caller has read them already (cpu sort).
        """
        if self.sort_mode == "cpu":
            k = host_keys if host_keys is not None else np.frombuffer(keys.read(4 * n), dtype=np.uint32)
            # (key, index) as one uint64 each: distinct, so numpy's unstable sort gives the stable
            # order, and faster than its stable argsort (100k keys: 1.3 ms against 9.2 ms)
            index = self._iota(n) if slots is None else slots.order
            pairs = (k.astype(np.uint64) << np.uint64(32)) | index
            pairs.sort()
            keys.write((pairs >> np.uint64(32)).astype(np.uint32).tobytes())
            ids = pairs.astype(np.uint32)
            if slots is not None:
                ids = np.take(slots.slot_of, ids)
            vals.write(ids.tobytes())
            self._host_order = (ids, n)  # (for the host binning)
            return keys, vals
        if slots is not None:
            raise ValueError("slots need the cpu sort (radix.comp breaks ties by slot)")
        # Elements per radix chunk: SORT_CHUNK_CPU on CPU rasterizers (1024 took 0.87x the sort
        # time of 256 at 100k Gaussians, 0.79x at 300k: fewer per-chunk histograms to clear and
        # scan), gpu_sort_chunk(n) on GPUs (enough invocations in flight).
        chunk = SORT_CHUNK_CPU if self.software else gpu_sort_chunk(n)
        offset, bits = 0, 32
        if key_range is not None and key_range[0] <= key_range[1]:
            # Keys become key - least, and INVALID_KEY all ones in every pass: it must exceed
            # every valid key, so one value more than the range needs.
            offset, bits = key_range[0], min(32, (key_range[1] - key_range[0] + 1).bit_length())
        return radix_sort(self.ctx, self.scratch, keys, vals, n, key_bits=bits, chunk=chunk,
                          key_offset=offset, iota=iota,
                          max_digit_bits=SORT_DIGIT_BITS_CPU if self.software else 8,
                          local=SORT_LOCAL_CPU if self.software else 64)

    def _iota(self, n: int) -> np.ndarray:
        """0..n-1 as uint64 (kept between frames)."""
        if self._iota_cache is None or len(self._iota_cache) < n:
            self._iota_cache = np.arange(n, dtype=np.uint64)
        return self._iota_cache[:n]

    def bin(self, keys, vals, rects, n_vis: int, expect_pairs: int, num_tiles: int, tiles_x: int) -> Bins:
        """Bucket the n_vis front depth-sorted primitives into tiles (empty lists when no pairs).

        rects: the projection's uvec4 per primitive (rectangle and row spans, see the module doc).
        Raises RuntimeError if the pairs binned never match the projection's count.
        """
        order, self._host_order = self._host_order, None
        if n_vis <= 0 or expect_pairs <= 0:
            return self.empty(num_tiles)
        if self.method == "host":
            if expect_pairs > self.max_pairs:
                raise RuntimeError(f"this frame has {expect_pairs:,} (tile, primitive) pairs, more than "
                                   f"this GL implementation can bin ({self.max_pairs:,}); lower the "
                                   "resolution or the splat scale")
            return self._bin_host(order, vals, rects, n_vis, expect_pairs, num_tiles, tiles_x)
        if expect_pairs > min(self.max_pairs, self.max_words):
            raise RuntimeError(f"this frame has {expect_pairs:,} (tile, primitive) pairs, more than this GL "
                               f"implementation can bin ({min(self.max_pairs, self.max_words):,}); "
                               "lower the resolution or the splat scale")
        # Loop iterations of all walks: one per LANES pairs, at most one more per primitive for its
        # last partial batch of tiles, one per LANES primitives staged (LANES = walk // split).
        iterations = (expect_pairs + n_vis) // (self.walk // self._split()) + n_vis
        chunks = min(n_vis, max(1, -(-iterations * self.chunk_scale // WALK_ITERATIONS)))
        # The chunk walk keeps a (tile, chunk) histogram; where it would not fit in one storage
        # buffer, the parallel method (a per-tile histogram) bins this frame instead.
        if self.method == "parallel" or num_tiles * chunks > self.max_words:
            return self._bin_parallel(keys, vals, rects, n_vis, expect_pairs, num_tiles, tiles_x)
        for _attempt in range(6):
            chunks, hist, n_pairs = self._bin_pass(keys, vals, rects, n_vis, chunks, num_tiles, tiles_x,
                                                   expect_pairs)
            if n_pairs == expect_pairs:
                return Bins(hist, chunks, n_pairs, num_tiles)
            chunks = min(n_vis, chunks * 2)  # a chunk overran the loop cap: split more
            self.chunk_scale = min(self.chunk_scale * 2, 64)
            if num_tiles * chunks > self.max_words:
                return self._bin_parallel(keys, vals, rects, n_vis, expect_pairs, num_tiles, tiles_x)
        raise RuntimeError(f"tile binning counted {n_pairs} pairs, expected {expect_pairs}")

    def _bin_host(self, order, vals, rects, n_vis, expect_pairs, num_tiles, tiles_x) -> Bins:
        """host_bin.bin_tiles on the sorted indices (the cpu sort's, else read back) and the rects
        read back; writes the tile ends into hist and the pair ids into the pair texture."""
        if order is None:  # (the sort ran on the GL side)
            ids = np.frombuffer(vals.read(4 * n_vis), dtype=np.uint32)
            n = int(ids.max()) + 1
        else:
            ids, n = order[0][:n_vis], order[1]
        # (into an array kept between frames: a new one each frame costs its page faults)
        if self._host_rects is None or len(self._host_rects) < n:
            self._host_rects = np.empty((max(n, 1024), 4), dtype=np.uint32)
        r = self._host_rects[:n]
        rects.read_into(r, size=16 * n)
        tex = self.pair_texture(expect_pairs)
        size = tex.width * tex.height
        if self._host_ids is None or len(self._host_ids) != size:
            self._host_ids = np.zeros(size, dtype=np.uint32)
        try:
            ends, n_pairs = host_bin.bin_tiles(ids, r, tiles_x, num_tiles // tiles_x, self._host_ids)
        except ValueError:
            n_pairs = -1  # (more pairs than the projection counted: not written)
        if n_pairs != expect_pairs:
            raise RuntimeError(f"tile binning counted {n_pairs} pairs, expected {expect_pairs}")
        hist = self.scratch.get("bin_hist", 4 * num_tiles)
        hist.write(ends.astype(np.uint32).tobytes())
        rows = -(-n_pairs // PAIR_TEX_W)
        tex.write(memoryview(self._host_ids[:rows * PAIR_TEX_W]), viewport=(0, 0, PAIR_TEX_W, rows))
        return Bins(hist, 1, n_pairs, num_tiles)

    def empty(self, num_tiles: int) -> Bins:
        """Bins with every tile's list empty."""
        hist = self.scratch.get("bin_hist", 4 * max(num_tiles, 1))
        self.scratch.zero(hist, hist.size)
        return Bins(hist, 1, 0, num_tiles)

    def _bin_pass(self, keys, vals, rects, n_vis, chunks, num_tiles, tiles_x, expect_pairs):
        """Count, scan and scatter the (tile, primitive) pairs; returns (chunks, hist, pairs counted)."""
        ctx = self.ctx
        chunk = -(-n_vis // chunks)
        chunks = -(-n_vis // chunk)
        m = num_tiles * chunks
        hist = self.scratch.get("bin_hist", 4 * m)
        self.scratch.zero(hist, 4 * m)
        self._bind_inputs(keys, vals, rects, hist)
        uni = dict(n_visible=n_vis, chunk=chunk, num_tiles=num_tiles, tiles_x=tiles_x)
        cs = compute_shader(ctx, "bin.comp", {"PASS": 0, **self._walk_defs()})
        set_uniforms(cs, **uni)
        cs.run(-(-chunks // self._split()))
        ctx.memory_barrier()
        rows = chunks * (num_tiles // tiles_x)  # PASS 0 counted differences along tile rows: sum them
        cs = compute_shader(ctx, "bin_rows.comp")
        set_uniforms(cs, tiles_x=tiles_x, rows=rows)
        cs.run(groups(rows))
        ctx.memory_barrier()
        # hist has a row of tile counters per chunk; the pairs are laid out tile by tile
        exclusive_scan(ctx, self.scratch, hist, m, transposed=(num_tiles, chunks))
        n_pairs = scan_total(self.scratch, m, transposed=(num_tiles, chunks))
        if n_pairs != expect_pairs:
            return chunks, hist, n_pairs
        pair_ids = self.pair_texture(n_pairs)
        self._bind_inputs(keys, vals, rects, hist)
        defs = {"PASS": 1, **self._walk_defs()}
        # (only where the copy fits one storage buffer binding: bigger ones are undefined)
        use_buffer = self.pair_buffer and pair_ids.width * pair_ids.height <= self.max_words
        if use_buffer:
            buf = self.scratch.get("pair_buf", 4 * pair_ids.width * pair_ids.height)
            buf.bind_to_storage_buffer(5)
            defs["PAIR_BUFFER"] = 1
        else:
            pair_ids.bind_to_image(0, read=False, write=True)
        cs = compute_shader(ctx, "bin.comp", defs)
        set_uniforms(cs, **uni)
        cs.run(-(-chunks // self._split()))
        ctx.memory_barrier()
        if use_buffer:
            pair_ids.write(buf)  # buffer to texture on the GL side (the blend reads a texture)
        return chunks, hist, n_pairs

    def _bin_parallel(self, keys, vals, rects, n_vis, expect_pairs, num_tiles, tiles_x) -> Bins:
        """bin_par.comp: count, scan, scatter, per-tile sort by depth rank."""
        ctx = self.ctx
        hist = self.scratch.get("bin_hist", 4 * num_tiles)
        self.scratch.zero(hist, 4 * num_tiles)
        # As many ranks as the pair texture holds, so that both grow in the same (row) steps: a
        # frame with a few more pairs than the last then allocates nothing.
        pair_ids = self.pair_texture(expect_pairs)
        ranks = self.scratch.get("bin_ranks", 4 * pair_ids.width * pair_ids.height)
        self._bind_inputs(keys, vals, rects, hist, ranks)
        uni = dict(n_visible=n_vis, tiles_x=tiles_x)
        cs = compute_shader(ctx, "bin_par.comp", {"PASS": 0, "GROUP": 128})
        set_uniforms(cs, **uni)
        cs.run(groups(n_vis, 128))
        ctx.memory_barrier()
        exclusive_scan(ctx, self.scratch, hist, num_tiles)
        # The count the scan found is checked once the frame's counters are read back (check):
        # reading it here would leave the GPU idle while the host waits for it.
        copy_scan_total(self.scratch, num_tiles, self.scratch.buffers["counters"], 4 * PAIRS_BINNED)
        n_pairs = expect_pairs
        self._bind_inputs(keys, vals, rects, hist, ranks)
        cs = compute_shader(ctx, "bin_par.comp", {"PASS": 1, "GROUP": 128})
        set_uniforms(cs, **uni)
        cs.run(groups(n_vis, 128))
        ctx.memory_barrier()
        pair_ids.bind_to_image(0, read=False, write=True)
        buckets = ({"BUCKETS": 1, "BUCKET_LEN": min(BUCKET_LEN, self.sort_cap), "MAX_BUCKET": self.max_bucket}
                   if self.max_bucket > 0 else {})
        cs = compute_shader(ctx, "bin_par.comp", {"PASS": 2, "GROUP": SORT_GROUP, "SORT_CAP": self.sort_cap,
                                                  **buckets})
        set_uniforms(cs, **uni)
        cs.run(num_tiles)
        ctx.memory_barrier()
        return Bins(hist, 1, n_pairs, num_tiles, deferred=True)

    @staticmethod
    def check(bins: Bins | None, counters: np.ndarray) -> None:
        """Raise if the parallel binning counted other pairs than the projection (counters: the
        frame's counters read back, at least PAIRS_BINNED + 1 of them)."""
        if bins is not None and bins.deferred and int(counters[PAIRS_BINNED]) != bins.n_pairs:
            raise RuntimeError(f"tile binning counted {int(counters[PAIRS_BINNED])} pairs, "
                               f"expected {bins.n_pairs}")

    def _bind_inputs(self, keys, vals, rects, hist, ranks=None) -> None:
        for i, b in ((0, keys), (1, vals), (2, rects), (4, hist), (5, ranks)):
            if b is not None:
                b.bind_to_storage_buffer(i)

    def _walk_defs(self) -> dict:
        return {"WALK": self.walk, "SPLIT": self._split(), **({"LOCKSTEP": 1} if self.lockstep else {})}

    def _split(self) -> int:
        """Chunks a bin.comp work group walks at once: self.split in lockstep with 8 or more lanes."""
        return self.split if self.lockstep and self.walk >= 8 else 1

    # ---- inspection and resources ------------------------------------------------------------
    def debug_state(self, keys, vals, n: int, bins: Bins | None) -> dict:
        """The last sort and bins read back (for tests): numpy arrays

        sorted_keys [n], sorted_vals [n], rects [n, 4] (x0, y0, x1, y1; max exclusive),
        spans [n, 8, 2] (per rectangle row, its first and end tile; rows past the rectangle 0, 0),
        tile_start [T+1] and ids [P] (primitive index per pair, tile-major, front to back).
        """
        T = bins.num_tiles if bins is not None else 0
        out = {"tile_start": np.zeros(T + 1, dtype=np.int64), "ids": np.zeros(0, dtype=np.int64)}
        if n == 0 or keys is None:
            return out
        out["sorted_keys"] = np.frombuffer(keys.read(4 * n), dtype=np.uint32).copy()
        out["sorted_vals"] = np.frombuffer(vals.read(4 * n), dtype=np.uint32).copy()
        r = np.frombuffer(self.scratch.buffers["rects"].read(16 * n), dtype=np.uint32).reshape(n, 4)
        out["rects"] = np.stack([r[:, 0] & 0xFFFF, r[:, 0] >> 16, r[:, 1] & 0xFFFF, r[:, 1] >> 16], axis=1)
        out["spans"] = unpack_spans(out["rects"], r[:, 2:])
        if bins is not None and bins.n_pairs > 0:
            C, P = bins.chunks, bins.n_pairs
            hist = np.frombuffer(bins.hist.read(4 * T * C), dtype=np.uint32)
            out["tile_start"][1:] = hist.reshape(C, T)[-1]
            out["ids"] = np.frombuffer(self.pair_ids.read(), dtype=np.uint32)[:P].astype(np.int64)
        return out

    @property
    def nbytes(self) -> int:
        t = self.pair_ids
        return 0 if t is None else t.width * t.height * 4

    @property
    def count(self) -> int:
        return 0 if self.pair_ids is None else 1

    def release(self) -> None:
        """Free the pair texture and the host's copy of it (the scratch buffers belong to the owner)."""
        if self.pair_ids is not None:
            self.pair_ids.release()
            self.pair_ids = None
        self._host_ids = self._host_rects = None


__all__ = ["TileBinning", "Bins", "PAIR_TEX_W", "WALK_ITERATIONS", "nearest_texture", "unpack_spans"]
