#version 430
// bin.comp: stable bucketing of depth-sorted Gaussians into 16x16 pixel tiles.
// PASS 0 (count):   invocation c walks sorted[c*chunk .. ) and counts, per tile its rectangle
//                   touches, hist[tile * num_chunks + c] (own column, no atomics).
// PASS 1 (scatter): after an exclusive scan of hist, the same walk writes each (tile, Gaussian)
//                   pair at hist[tile * num_chunks + c]++: tile-major, and front to back within a
//                   tile because the walk follows the depth order. The pair's projected record is
//                   copied into three RGBA32F images so the blend reads textures, not buffers.
// After PASS 1, hist[t * num_chunks + num_chunks - 1] is the end of tile t's pair range.
// Bindings (std430): 0 sorted_keys uint[], 1 sorted_vals uint[], 2 rects uvec2[N], 3 proj vec4[3N],
//   4 hist uint[num_tiles * num_chunks]; images 0..2: pair records (rgba32f, PAIR_TEX_W wide).
// Defines: PASS. References: REFERENCE.md 1.3 (duplicateWithKeys / identifyTileRanges in INRIA's
// rasterizer_impl.cu do the same with a 64-bit key sort); twin: renderer/torch_backend/tiles.py.
#include "gs_common.glsl"

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer SortedKeys { uint sorted_keys[]; };
layout(std430, binding = 1) readonly buffer SortedVals { uint sorted_vals[]; };
layout(std430, binding = 2) readonly buffer Rects { uvec2 rects[]; };
layout(std430, binding = 3) readonly buffer Proj { vec4 proj[]; };
layout(std430, binding = 4) buffer Hist { uint hist[]; };
#if PASS == 1
layout(rgba32f, binding = 0) writeonly uniform image2D pair0;
layout(rgba32f, binding = 1) writeonly uniform image2D pair1;
layout(rgba32f, binding = 2) writeonly uniform image2D pair2;
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
#if PASS == 0
    for (uint t = 0u; t < num_tiles; ++t) hist[t * num_chunks + c] = 0u;
#endif
    for (uint s = begin; s < end; ++s) {
        if (sorted_keys[s] == INVALID_KEY) break;
        uint g = sorted_vals[s];
        uvec4 r = unpack_rect(rects[g]);
#if PASS == 1
        vec4 r0 = proj[3u * g], r1 = proj[3u * g + 1u], r2 = proj[3u * g + 2u];
#endif
        for (uint ty = r.y; ty < r.w; ++ty) {
            for (uint tx = r.x; tx < r.z; ++tx) {
                uint slot = (ty * tiles_x + tx) * num_chunks + c;
#if PASS == 0
                hist[slot] += 1u;
#else
                uint pos = hist[slot];
                hist[slot] = pos + 1u;
                ivec2 pc = pair_coord(pos);
                imageStore(pair0, pc, r0);
                imageStore(pair1, pc, r1);
                imageStore(pair2, pc, r2);
#endif
            }
        }
    }
}
