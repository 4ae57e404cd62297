#version 430
// scan.comp: exclusive prefix sum of uint data[m], in place, in three dispatches.
// MODE 0: invocation b writes the sum of block b (block_size elements) to partial[b].
// MODE 1: one invocation scans partial[0 .. num_blocks) exclusively; partial[num_blocks] = total.
// MODE 2: invocation b rewrites block b as its exclusive prefix plus partial[b].
// TRANSPOSED: the order scanned is that of data read as a num_blocks x block_size matrix stored
// column by column (bin.comp's hist: a row of tile counters per chunk, scanned tile by tile): block
// b is matrix row b, data[q * num_blocks + b] for q < block_size, so that neighbouring invocations
// read neighbouring words.
// Bindings (std430): 0 data uint[m], 1 partial uint[num_blocks + 1]. Defines: MODE, TRANSPOSED.
// Reference: Blelloch, "Prefix sums and their applications" (1990), the reduce-then-scan scheme.
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer Data { uint data[]; };
layout(std430, binding = 1) buffer Partial { uint partial[]; };

uniform uint m;
uniform uint block_size;
uniform uint num_blocks;

#ifdef TRANSPOSED
#define ADDR(b, i) ((i) * num_blocks + (b))   // i: the element's index within its block
#else
#define ADDR(b, i) ((b) * block_size + (i))
#endif

void main() {
    uint b = gl_GlobalInvocationID.x;
#if MODE == 0
    if (b >= num_blocks) return;
    uint len = min(m - b * block_size, block_size);
    uint s = 0u;
    for (uint i = 0u; i < len; ++i) s += data[ADDR(b, i)];
    partial[b] = s;
#elif MODE == 1
    if (b != 0u) return;
    uint s = 0u;
    for (uint i = 0u; i < num_blocks; ++i) {
        uint v = partial[i];
        partial[i] = s;
        s += v;
    }
    partial[num_blocks] = s;
#else
    if (b >= num_blocks) return;
    uint len = min(m - b * block_size, block_size);
    uint s = partial[b];
    for (uint i = 0u; i < len; ++i) {
        uint a = ADDR(b, i);
        uint v = data[a];
        data[a] = s;
        s += v;
    }
#endif
}
