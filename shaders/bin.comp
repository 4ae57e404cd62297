#version 430
// bin.comp: stable bucketing of depth-sorted primitives into blend tiles (16 or 8 px), by chunk
// walks. Chunk c (LANES lanes; a work group of WALK lanes takes SPLIT chunks at once, see SPLIT
// below) walks the depth-sorted primitives c*chunk .. (c+1)*chunk in
// order, one primitive at a time, its lanes sharing that primitive's tiles (lane j takes the
// primitive's j-th, (j+LANES)-th, ... tile, row-major over its rectangle or row spans): a primitive
// never touches a tile twice, so the lanes' tiles differ and need no atomics.
// hist holds one row of num_tiles counters per chunk (slot c * num_tiles + tile): a walk's
// counters lie together: the bin stage took 0.91x (100k Gaussians) and 0.90x (300k) of its time
// with tile-major slots (tile * num_chunks + c), where every access was a cache line of its own.
// PASS 0 (count):   per chunk c, the tile counts of its primitives as differences along tile rows:
//                   for each row span [xa, xb) of a primitive, hist[c * num_tiles + row start + xa]
//                   += 1 and (unless xb ends the row) hist[... + xb] -= 1; lane k takes rectangle
//                   rows k, k + LANES, ... (two updates a row where the tile walk made one a tile: the
//                   count pass took 0.66x as long at 100k Gaussians, 0.68x at 300k). bin_rows.comp
//                   then sums each chunk's rows, leaving hist[c * num_tiles + tile] = the pairs of
//                   chunk c in that tile.
// PASS 1 (scatter): after an exclusive scan of hist in tile-major order (tile, then chunk; scan.comp
//                   TRANSPOSED), a walk over each primitive's tiles writes each (tile, primitive) pair at
//                   hist[c * num_tiles + tile]++: tile-major, and front to back within a tile
//                   because the walk follows the depth order. The pair's primitive id goes into an
//                   R32UI image (or with PAIR_BUFFER a storage buffer the host copies into it) so
//                   that the blend reads textures.
// After PASS 1, the last chunk's row, hist[(num_chunks - 1) * num_tiles + t], holds the end of each
// tile t's pair range (binning.py Bins.range_base).
// Why lanes share a primitive (CPU rasterizers, where a work group runs as SIMD lanes): lanes that
// each walked their own chunk idled half the time (rectangles differ in size) and hit hist at
// scattered addresses; sharing a primitive keeps ~all lanes busy, touches neighbouring tiles, and
// needs one hist column per work group instead of per lane (a smaller hist and scan). The
// primitives' records are staged WALK at a time in shared memory (one gather each) and read back
// one by one. With LOCKSTEP (llvmpipe: a work group of one subgroup runs as one SIMD vector) the
// staging needs no barrier; otherwise barrier() orders it.
// hist is zeroed by the host before PASS 0. llvmpipe stops any invocation after 65535 loop
// iterations in total (one per LANES primitives staged, one per LANES tiles of a primitive in PASS
// 1, one per LANES rows of it in PASS 0), so the
// host sizes chunks to keep each walk far below that and checks the pair count against the
// projection's.
// Bindings (std430): 1 sorted_vals uint[], 2 rects uvec4[N] (rectangle and row spans,
//   gs_common.glsl), 4 hist uint[num_chunks * num_tiles];
//   image 0: pair ids (r32ui, PAIR_TEX_W wide), or with PAIR_BUFFER std430 5 uint[].
// Defines: PASS, WALK (local size), SPLIT (chunks a work group walks at once: 1, or 2 with
//   LOCKSTEP; LANES = WALK / SPLIT lanes a chunk), LOCKSTEP, PAIR_BUFFER.
// References: REFERENCE.md 1.3 (duplicateWithKeys / identifyTileRanges in INRIA's
// rasterizer_impl.cu give the same lists with a 64-bit key sort); twin: renderer/torch_backend/tiles.py.
#include "gs_common.glsl"

#ifndef SPLIT
#define SPLIT 1
#endif
layout(local_size_x = WALK) in;
// SPLIT 2 (LOCKSTEP only): the work group's lanes take two chunks at once, LANES each (chunks 2w
// and 2w + 1, their own hist rows: no conflicts), so that one lane loop of a storage-buffer access
// (llvmpipe) serves two primitives where one primitive's rows or tiles would leave lanes idle.
const uint LANES = uint(WALK / SPLIT);

layout(std430, binding = 1) readonly buffer SortedVals { uint sorted_vals[]; };
layout(std430, binding = 2) readonly buffer Rects { uvec4 rects[]; };   // gs_common.glsl
layout(std430, binding = 4) buffer Hist { uint hist[]; };
#if PASS == 1 && defined(PAIR_BUFFER)
// CPU rasterizers: a storage buffer (the host copies it into the pair texture), as llvmpipe's
// imageStore costs more than a buffer store.
layout(std430, binding = 5) writeonly buffer PairIds { uint pair_buf[]; };
#elif PASS == 1
layout(r32ui, binding = 0) writeonly uniform uimage2D pair_ids;
#endif

uniform uint n_visible;
uniform uint chunk;
uniform uint num_tiles;
uniform uint tiles_x;

// Staged primitives: (x0 | y0 << 16, x1 | y1 << 16, FULL_SPANS, id) for whole rectangles, else
// (x0 | y0 << 16, id, row spans): the rows are then the spans' non-empty bytes (one read each).
shared uvec4 s_rect[WALK];   // slots LANES * part .. : the primitives staged for chunk part
#ifdef LOCKSTEP
#define SYNC()
#else
#define SYNC() barrier()
#endif

uint c;
uint lane;   // lane within this chunk's LANES
uint part;   // which of the work group's SPLIT chunks

#if PASS == 0
// The staged primitive j's row spans as differences (see PASS 0 above): lane `lane` takes rows
// lane, lane + LANES, ... (row spans have at most 8 rows, the rest empty; whole rectangles any).
void walk(uint j) {
    uvec4 R = s_rect[part * LANES + j];
    bool full = R.z == FULL_SPANS;
    uvec4 r = unpack_rect(R.xy);   // (for row spans .zw are not the rectangle's: R.y is the id)
    uint rows = full ? r.w - r.y : 8u;
    uint k = lane;
    do {
        uint b = ((k < 4u ? R.z : R.w) >> (8u * (k & 3u))) & 0xFFu;
        uint xa = full ? 0u : b & 15u;
        uint xb = full ? r.z - r.x : b >> 4;
        uint row = c * num_tiles + (r.y + k) * tiles_x + r.x;
        if (k < rows && xb > xa) {
            hist[row + xa] += 1u;
            if (r.x + xb < tiles_x) hist[row + xb] -= 1u;   // (uint wrap-around: the sums are right)
        }
        k += LANES;
    } while (k < rows);
}
#else
// Every tile of the staged primitive j: lane `lane` takes tiles lane, lane + LANES, ... of its
// row-major list.
void walk(uint j) {
    uvec4 R = s_rect[part * LANES + j];
    bool full = R.z == FULL_SPANS;
    uint g = full ? R.w : R.y;
    uvec4 r = unpack_rect(R.xy);
    uvec2 sp = R.zw;
    uint w = r.z - r.x, h = r.w - r.y;   // (whole rectangles only)
    // Row spans: per row k < 8, its first tile offset and the number of tiles before it.
    uint first[8];
    uint before[9];
    before[0] = 0u;
    for (int k = 0; k < 8; ++k) {
        uint b = ((k < 4 ? sp.x : sp.y) >> (8 * (k & 3))) & 0xFFu;
        uint n = (b >> 4) - (b & 15u);   // 0 past the last row
        first[k] = b & 15u;
        before[k + 1] = before[k] + n;
    }
    uint count = full ? w * h : before[8];
    float inv_w = 1.0 / float(max(w, 1u));
    // do-while: llvmpipe runs a loop body once more, masked, when its condition fails at the top
    // (a primitive takes one or two rounds here: 0.78x the count pass, 0.89x the scatter).
    uint i = lane;
    do {
        // Whole rows: row = i / w (exact in float for these sizes); spans: the rows whose first
        // pair is at or before i.
        uint row_f = uint((float(i) + 0.5) * inv_w);
        uint row_s = 0u, base = 0u, off = first[0];
        for (int k = 1; k < 8; ++k) {
            bool past = i >= before[k];
            row_s = past ? uint(k) : row_s;
            base = past ? before[k] : base;
            off = past ? first[k] : off;
        }
        uint row = full ? row_f : row_s;
        uint tx = r.x + (full ? i - row_f * w : off + i - base);
        uint slot = c * num_tiles + (r.y + row) * tiles_x + tx;
        if (i < count) {
            uint pos = hist[slot];
            hist[slot] = pos + 1u;
#ifdef PAIR_BUFFER
            pair_buf[pos] = g;
#else
            imageStore(pair_ids, pair_coord(pos), uvec4(g));
#endif
        }
        i += LANES;
    } while (i < count);
}
#endif

void main() {
    part = gl_LocalInvocationID.x / LANES;
    lane = gl_LocalInvocationID.x % LANES;
    c = gl_WorkGroupID.x * uint(SPLIT) + part;
    uint begin = c * chunk;
    uint end = min(n_visible, begin + chunk);   // (a chunk past the last: begin >= end, no rounds)
    for (uint s0 = begin; s0 < end; s0 += LANES) {
        uint s = s0 + lane;
        uint g = sorted_vals[min(s, end - 1u)];
        uvec4 rs = rects[g];
        uvec2 r = rs.xy, sp = rs.zw;
        // Past the chunk's end: an empty rectangle.
        s_rect[gl_LocalInvocationID.x] = s >= end ? uvec4(0u, 0u, FULL_SPANS, 0u)
                     : (sp.x == FULL_SPANS ? uvec4(r, FULL_SPANS, g) : uvec4(r.x, g, sp));
        SYNC();
        walk(0u); walk(1u);
#if WALK / SPLIT > 2
        walk(2u); walk(3u);
#endif
#if WALK / SPLIT > 4
        walk(4u); walk(5u); walk(6u); walk(7u);
#endif
#if WALK / SPLIT > 8
        walk(8u); walk(9u); walk(10u); walk(11u); walk(12u); walk(13u); walk(14u); walk(15u);
#endif
        SYNC();
    }
}
