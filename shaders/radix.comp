#version 430
// radix.comp: one pass of a stable LSD radix sort of (key, value) uint pairs, in chunks.
// PASS 0 (count):   invocation c counts the digits of keys[c*chunk .. (c+1)*chunk) into
//                   hist[SLOT(digit)] (its own slots: no atomics needed): c * RADIX + digit, or
//                   with DIGIT_MAJOR digit * num_chunks + c.
// PASS 1 (scatter): after an exclusive scan of hist in digit-major order (scan.comp, TRANSPOSED
//                   unless DIGIT_MAJOR), invocation c walks its chunk in order and writes each pair
//                   to hist[SLOT(digit)]++, which keeps equal digits in input order (stable).
// Each invocation walks its chunk serially: on CPU rasterizers (llvmpipe) that beats a wide
// shared-memory sort, which they run slowly.
// Bindings (std430): 0 keys_in uint[n], 1 vals_in uint[n], 2 keys_out uint[n], 3 vals_out uint[n],
//                    4 hist uint[num_chunks * RADIX].
// Defines: PASS (0 or 1), RADIX_BITS (digit width), LOCAL (local size), DIGIT_MAJOR, IOTA (PASS 1:
//   value i for input i, so that the projection need not store its indices: 0.93x to 0.96x of
//   gs_project.comp). The digits are those of key - key_offset (a uniform: the least valid key,
//   so that a narrow key range takes fewer passes), INVALID_KEY kept all ones.
// Reference: the textbook chunked counting sort (e.g. Merrill & Grimshaw, "High performance and
// scalable radix sorting", 2011, upsweep/scan/downsweep).
layout(local_size_x = LOCAL) in;

layout(std430, binding = 0) readonly buffer KeysIn { uint keys_in[]; };
layout(std430, binding = 1) readonly buffer ValsIn { uint vals_in[]; };
layout(std430, binding = 2) writeonly buffer KeysOut { uint keys_out[]; };
layout(std430, binding = 3) writeonly buffer ValsOut { uint vals_out[]; };
layout(std430, binding = 4) buffer Hist { uint hist[]; };

const uint RADIX = 1u << RADIX_BITS;
const uint MASK = RADIX - 1u;

uniform uint n;
uniform uint chunk;
uniform uint num_chunks;
uniform uint shift;
uniform uint key_offset;   // digits of key - key_offset; INVALID_KEY (all ones) stays all ones

#ifdef DIGIT_MAJOR
#define SLOT(d) ((d) * num_chunks + c)
#else
// CPU rasterizers: chunk c's counters lie together (digit-major slots took 1.1x the sort time at
// 100k Gaussians on llvmpipe, every counter a cache line of its own); the scan reads them digit by
// digit. GPUs keep DIGIT_MAJOR, whose scan runs a block per 256 counters rather than per digit.
#define SLOT(d) (c * RADIX + (d))
#endif

uint digit(uint k) {
    return ((k == 0xFFFFFFFFu ? k : k - key_offset) >> shift) & MASK;
}

void main() {
    uint c = gl_GlobalInvocationID.x;
    if (c >= num_chunks) return;
    uint begin = c * chunk;
    uint end = min(n, begin + chunk);
#if PASS == 0
    for (uint d = 0u; d < RADIX; ++d) hist[SLOT(d)] = 0u;
    for (uint i = begin; i < end; ++i) {
        uint d = digit(keys_in[i]);
        hist[SLOT(d)] += 1u;
    }
#else
    for (uint i = begin; i < end; ++i) {
        uint k = keys_in[i];
        uint slot = SLOT(digit(k));
        uint pos = hist[slot];
        hist[slot] = pos + 1u;
        keys_out[pos] = k;
#ifdef IOTA
        vals_out[pos] = i;   // the first pass of a sort of indices: vals_in is not read
#else
        vals_out[pos] = vals_in[i];
#endif
    }
#endif
}
