#version 430
// bin.comp: stable bucketing of depth-sorted Gaussians into 16x16 pixel tiles.
// PASS 0 (count):   invocation c walks sorted[c*chunk .. ) and counts, per tile its rectangle
//                   touches, hist[tile * num_chunks + c] (own column, no atomics).
// PASS 1 (scatter): after an exclusive scan of hist, the same walk writes each (tile, Gaussian)
//                   pair at hist[tile * num_chunks + c]++: tile-major, and front to back within a
//                   tile because the walk follows the depth order. The pair's Gaussian id goes
//                   into an R32UI image so the blend reads textures, not buffers.
// After PASS 1, hist[t * num_chunks + num_chunks - 1] is the end of tile t's pair range.
// hist is zeroed by the host before PASS 0. llvmpipe stops any invocation after 65535 loop
// iterations in total, so the host sizes chunks to keep each walk far below that and checks the
// pair count against the projection's.
// Bindings (std430): 0 sorted_keys uint[], 1 sorted_vals uint[], 2 rects uvec2[N],
//   4 hist uint[num_tiles * num_chunks]; image 0: pair ids (r32ui, PAIR_TEX_W wide), or with
//   PAIR_BUFFER std430 5 uint[] in the same order.
// Defines: PASS, BIN_GROUP (local size), PAIR_BUFFER. References: REFERENCE.md 1.3 (duplicateWithKeys / identifyTileRanges in INRIA's
// rasterizer_impl.cu do the same with a 64-bit key sort); twin: renderer/torch_backend/tiles.py.
#include "gs_common.glsl"

layout(local_size_x = BIN_GROUP) in;

layout(std430, binding = 0) readonly buffer SortedKeys { uint sorted_keys[]; };
layout(std430, binding = 1) readonly buffer SortedVals { uint sorted_vals[]; };
layout(std430, binding = 2) readonly buffer Rects { uvec2 rects[]; };
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
        // One flat loop over the rectangle's tiles, row by row: llvmpipe's iteration cap counts
        // every loop iteration, so no separate row loop (and no integer division per tile).
        uint count = (r.z - r.x) * (r.w - r.y);
        uint tx = r.x, row = r.y * tiles_x;
        for (uint i = 0u; i < count; ++i) {
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
            bool wrap = tx + 1u == r.z;
            tx = wrap ? r.x : tx + 1u;
            row = wrap ? row + tiles_x : row;
        }
    }
}
