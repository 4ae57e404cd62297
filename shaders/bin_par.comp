#version 430
// bin_par.comp: parallel tile binning for GPUs (binning.py picks bin.comp's serial chunk walks on
// CPU rasterizers, where they are faster). Same result as bin.comp with one chunk: hist[t] = end
// of tile t's pair range, and the pairs of a tile are in depth order (sorted index order).
// PASS 0 (count):   one invocation per depth-sorted primitive s: hist[t] += 1 (atomic) for every
//                   tile t of its rectangle. The host then scans hist exclusively (scan.comp).
// PASS 1 (scatter): one invocation per s: pos = atomicAdd(hist[t], 1), ranks[pos] = s. After it,
//                   hist[t] is tile t's range end, but a range's order depends on the atomics.
// PASS 2 (order):   one work group per tile: its ranks are sorted in shared memory (bitonic sort)
//                   (in ranks[] itself beyond SORT_CAP pairs) and the primitive ids vals[rank]
//                   are written to the pair-id image in that order.
// Bindings (std430): 0 sorted_keys uint[], 1 sorted_vals uint[], 2 rects uvec4[N] (rectangle and
//   row spans, gs_common.glsl), 4 hist uint[num_tiles],
//   5 ranks uint[pairs];
//   image 0: pair ids (r32ui, PAIR_TEX_W wide, PASS 2).
// Defines: PASS, GROUP (local size), SORT_CAP (power of two, PASS 2).
// Reference: per-tile counters, a scan and a scatter as in Laine & Karras, "High-performance
// software rasterization on GPUs" (HPG 2011, bin and coarse raster stages); bitonic sort: Batcher,
// "Sorting networks and their applications" (1968). Twin: renderer/torch_backend/tiles.py.
#include "gs_common.glsl"

layout(local_size_x = GROUP) in;

layout(std430, binding = 0) readonly buffer SortedKeys { uint sorted_keys[]; };
layout(std430, binding = 1) readonly buffer SortedVals { uint sorted_vals[]; };
layout(std430, binding = 2) readonly buffer Rects { uvec4 rects[]; };   // gs_common.glsl
layout(std430, binding = 4) buffer Hist { uint hist[]; };
layout(std430, binding = 5) coherent buffer Ranks { uint ranks[]; };
#if PASS == 2
layout(r32ui, binding = 0) writeonly uniform uimage2D pair_ids;
shared uint keys_sh[SORT_CAP];
#endif

uniform uint n_visible;
uniform uint tiles_x;

void main() {
#if PASS < 2
    uint s = gl_GlobalInvocationID.x;
    if (s >= n_visible || sorted_keys[s] == INVALID_KEY) return;
    uint g = sorted_vals[s];
    uvec4 rs = rects[g];
    uvec4 r = unpack_rect(rs.xy);
    uvec2 sp = rs.zw;
    for (uint ty = r.y; ty < r.w; ++ty) {
        uvec2 span = row_span(r, sp, ty - r.y);
        for (uint tx = span.x; tx < span.y; ++tx) {
            uint t = ty * tiles_x + tx;
#if PASS == 0
            atomicAdd(hist[t], 1u);
#else
            ranks[atomicAdd(hist[t], 1u)] = s;
#endif
        }
    }
#else
    uint t = gl_WorkGroupID.x;
    uint end = hist[t];
    uint start = t == 0u ? 0u : hist[t - 1u];
    uint len = end - start;
    uint lid = gl_LocalInvocationID.x;
    if (len < 2u) {
        if (len == 1u && lid == 0u) imageStore(pair_ids, pair_coord(start), uvec4(sorted_vals[ranks[start]]));
        return;
    }
    uint n2 = 1u;
    while (n2 < len) n2 <<= 1;
    // Bitonic sort, every compare-exchange ascending (the first step of each merge compares i with
    // its mirror i ^ (k - 1)): positions >= len act as +infinity and are never touched, so no
    // padding is stored. Up to SORT_CAP ranks sort in shared memory, longer lists in place in
    // ranks[] (coherent, with a buffer barrier per step).
    bool in_shared = len <= uint(SORT_CAP);
    if (in_shared) {
        for (uint i = lid; i < len; i += uint(GROUP)) keys_sh[i] = ranks[start + i];
    }
    barrier();
    for (uint k = 2u; k <= n2; k <<= 1) {
        for (uint j = k >> 1; j > 0u; j >>= 1) {
            uint mirror = j == (k >> 1) ? k - 1u : j;   // first step of a merge: mirrored partner
            for (uint i = lid; i < n2; i += uint(GROUP)) {
                uint l = i ^ mirror;
                if (l > i && l < len) {
                    if (in_shared) {
                        uint a = keys_sh[i], b = keys_sh[l];
                        if (a > b) { keys_sh[i] = b; keys_sh[l] = a; }
                    } else {
                        uint a = ranks[start + i], b = ranks[start + l];
                        if (a > b) { ranks[start + i] = b; ranks[start + l] = a; }
                    }
                }
            }
            memoryBarrierBuffer();
            barrier();
        }
    }
    for (uint i = lid; i < len; i += uint(GROUP)) {
        uint r = in_shared ? keys_sh[i] : ranks[start + i];
        imageStore(pair_ids, pair_coord(start + i), uvec4(sorted_vals[r]));
    }
#endif
}
