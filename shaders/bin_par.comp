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
//                   are written to the pair-id image in that order. With BUCKETS, a list of up
//                   to BUCKET_LEN pairs is bucket-sorted instead: GROUP buckets over its
//                   [least, greatest] rank (counted, scanned and filled in shared memory), each
//                   bucket then sorted by insertion by its own invocation; ~25 barriers where the
//                   bitonic network takes 66 for 2048 pairs. A bucket over MAX_BUCKET pairs
//                   (ranks bunched) sends the list to the bitonic sort after all.
// Bindings (std430): 0 sorted_keys uint[], 1 sorted_vals uint[], 2 rects uvec4[N] (rectangle and
//   row spans, gs_common.glsl), 4 hist uint[num_tiles],
//   5 ranks uint[pairs];
//   image 0: pair ids (r32ui, PAIR_TEX_W wide, PASS 2).
// Defines: PASS, GROUP (local size), SORT_CAP (PASS 2), BUCKETS (PASS 2; GROUP buckets, GROUP a
//   power of two), BUCKET_LEN (<= SORT_CAP), MAX_BUCKET.
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
#ifdef BUCKETS
shared uint b_start[GROUP];   // counts, then each bucket's first position
shared uint b_fill[GROUP];    // scan scratch, then each bucket's fill cursor (its end once filled)
shared uint s_lo, s_hi, s_over;
#endif
#endif

uniform uint n_visible;
uniform uint tiles_x;

#if PASS == 2 && defined(BUCKETS)
// Bucket-sorts ranks[start .. start + len) (len <= BUCKET_LEN) into keys_sh; returns false (every
// invocation alike) when a bucket overflowed MAX_BUCKET and keys_sh is only a permutation.
bool bucket_sort(uint start, uint len, uint lid) {
    if (lid == 0u) { s_lo = 0xFFFFFFFFu; s_hi = 0u; s_over = 0u; }
    b_start[lid] = 0u;
    barrier();
    uint lo = 0xFFFFFFFFu, hi = 0u;
    for (uint i = lid; i < len; i += uint(GROUP)) {
        uint r = ranks[start + i];
        lo = min(lo, r);
        hi = max(hi, r);
    }
    atomicMin(s_lo, lo);
    atomicMax(s_hi, hi);
    barrier();
    // Bucket of rank r: monotonic in r (a float product by a positive constant, truncated), so
    // the buckets in order, each sorted, are the list sorted.
    uint base = s_lo;
    float scale = float(GROUP) / float(s_hi - base + 1u);
    for (uint i = lid; i < len; i += uint(GROUP)) {
        uint b = min(uint(GROUP) - 1u, uint(float(ranks[start + i] - base) * scale));
        atomicAdd(b_start[b], 1u);
    }
    barrier();
    uint cnt = b_start[lid];
    b_fill[lid] = cnt;
    barrier();
    for (uint off = 1u; off < uint(GROUP); off <<= 1) {   // inclusive scan (Hillis-Steele)
        uint add = lid >= off ? b_fill[lid - off] : 0u;
        barrier();
        b_fill[lid] += add;
        barrier();
    }
    uint first = b_fill[lid] - cnt;
    barrier();
    b_start[lid] = first;
    b_fill[lid] = first;
    barrier();
    for (uint i = lid; i < len; i += uint(GROUP)) {
        uint r = ranks[start + i];
        uint b = min(uint(GROUP) - 1u, uint(float(r - base) * scale));
        keys_sh[atomicAdd(b_fill[b], 1u)] = r;
    }
    barrier();
    uint b0 = b_start[lid], b1 = b_fill[lid];
    if (b1 - b0 > uint(MAX_BUCKET)) {
        s_over = 1u;
    } else {
        for (uint i = b0 + 1u; i < b1; ++i) {   // insertion sort of this bucket
            uint v = keys_sh[i];
            uint j = i;
            while (j > b0 && keys_sh[j - 1u] > v) { keys_sh[j] = keys_sh[j - 1u]; --j; }
            keys_sh[j] = v;
        }
    }
    barrier();
    return s_over == 0u;
}
#endif

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
    bool in_shared = len <= uint(SORT_CAP);
#ifdef BUCKETS
    bool done = len <= uint(BUCKET_LEN) && bucket_sort(start, len, lid);
#else
    bool done = false;
#endif
    if (!done) {
        uint n2 = 1u;
        while (n2 < len) n2 <<= 1;
        // Bitonic sort, every compare-exchange ascending (the first step of each merge compares i with
        // its mirror i ^ (k - 1)): positions >= len act as +infinity and are never touched, so no
        // padding is stored. Up to SORT_CAP ranks sort in shared memory, longer lists in place in
        // ranks[] (coherent, with a buffer barrier per step).
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
    }
    for (uint i = lid; i < len; i += uint(GROUP)) {
        uint r = in_shared ? keys_sh[i] : ranks[start + i];
        imageStore(pair_ids, pair_coord(start + i), uvec4(sorted_vals[r]));
    }
#endif
}
