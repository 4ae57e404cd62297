#version 430
// bin.comp: stable bucketing of depth-sorted primitives into blend tiles (16 or 8 px).
// PASS 0 (count):   invocation c walks sorted[c*chunk .. ) and counts, per tile its rectangle
//                   (or its row spans) touches, hist[tile * num_chunks + c] (own column, no
//                   atomics).
// PASS 1 (scatter): after an exclusive scan of hist, the same walk writes each (tile, Gaussian)
//                   pair at hist[tile * num_chunks + c]++: tile-major, and front to back within a
//                   tile because the walk follows the depth order. The pair's Gaussian id goes
//                   into an R32UI image so the blend reads textures, not buffers.
// After PASS 1, hist[t * num_chunks + num_chunks - 1] is the end of tile t's pair range.
// hist is zeroed by the host before PASS 0. llvmpipe stops any invocation after 65535 loop
// iterations in total, so the host sizes chunks to keep each walk far below that and checks the
// pair count against the projection's.
// Bindings (std430): 0 sorted_keys uint[], 1 sorted_vals uint[], 2 rects uvec2[N],
//   3 spans uvec2[N] (with ROW_SPANS: the tiles of each rectangle row, gs_common.glsl),
//   4 hist uint[num_tiles * num_chunks]; image 0: pair ids (r32ui, PAIR_TEX_W wide), or with
//   PAIR_BUFFER std430 5 uint[] in the same order.
// Defines: PASS, BIN_GROUP (local size), PAIR_BUFFER, ROW_SPANS. References: REFERENCE.md 1.3
// (duplicateWithKeys / identifyTileRanges in INRIA's rasterizer_impl.cu do the same with a 64-bit
// key sort); twin: renderer/torch_backend/tiles.py.
#include "gs_common.glsl"

layout(local_size_x = BIN_GROUP) in;

layout(std430, binding = 0) readonly buffer SortedKeys { uint sorted_keys[]; };
layout(std430, binding = 1) readonly buffer SortedVals { uint sorted_vals[]; };
layout(std430, binding = 2) readonly buffer Rects { uvec2 rects[]; };
layout(std430, binding = 4) buffer Hist { uint hist[]; };
#ifdef ROW_SPANS
layout(std430, binding = 3) readonly buffer Spans { uvec2 spans[]; };   // gs_common.glsl row_span
#endif
#if PASS == 1 && defined(PAIR_BUFFER)
// CPU rasterizers: a storage buffer (the host copies it into the pair texture), as llvmpipe's
// imageStore costs more than a buffer store.
layout(std430, binding = 5) writeonly buffer PairIds { uint pair_buf[]; };
#elif PASS == 1
layout(r32ui, binding = 0) writeonly uniform uimage2D pair_ids;
#endif

uniform uint n_visible;
uniform uint chunk;
uniform uint num_chunks;
uniform uint num_tiles;
uniform uint tiles_x;

void main() {
    uint c = gl_GlobalInvocationID.x;
    if (c >= num_chunks) return;
    uint begin = c * chunk;
    uint end = min(n_visible, begin + chunk);
    for (uint s = begin; s < end; ++s) {
        if (sorted_keys[s] == INVALID_KEY) break;
        uint g = sorted_vals[s];
        uvec4 r = unpack_rect(rects[g]);
#ifdef ROW_SPANS
        uvec2 sp = spans[g];
#else
        const uvec2 sp = uvec2(FULL_SPANS, 0u);
#endif
        // One flat loop over the rows' tiles: llvmpipe's iteration cap counts every loop iteration,
        // so no separate row loop. Every row of a rectangle holds at least one tile (spans are
        // never empty inside a rectangle; a rectangle of zero width has no rows here).
        uint h = r.z > r.x ? r.w - r.y : 0u;
        bool full = sp.x == FULL_SPANS;
        uint lo = sp.x, hi = sp.y;   // spans of the rows from this one on, a byte each
        uint xe = full ? r.z : r.x + ((lo >> 4) & 15u);
        uint tx = full ? r.x : r.x + (lo & 15u), row = r.y * tiles_x;
        for (uint i = 0u; i < h;) {
            uint slot = (row + tx) * num_chunks + c;
#if PASS == 0
            hist[slot] += 1u;
#else
            uint pos = hist[slot];
            hist[slot] = pos + 1u;
#ifdef PAIR_BUFFER
            pair_buf[pos] = g;
#else
            imageStore(pair_ids, pair_coord(pos), uvec4(g));
#endif
#endif
            bool wrap = tx + 1u >= xe;
            i += wrap ? 1u : 0u;
            lo = wrap ? (lo >> 8) | (hi << 24) : lo;
            hi = wrap ? hi >> 8 : hi;
            xe = full ? r.z : r.x + ((lo >> 4) & 15u);
            tx = wrap ? (full ? r.x : r.x + (lo & 15u)) : tx + 1u;
            row += wrap ? tiles_x : 0u;
        }
    }
}
