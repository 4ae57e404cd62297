#version 430
// scan.comp: exclusive prefix sum of uint data[m], in place, in three dispatches.
// MODE 0: invocation b writes the sum of block b (block_size elements) to partial[b].
// MODE 1: one invocation scans partial[0 .. num_blocks) exclusively; partial[num_blocks] = total.
// MODE 2: invocation b rewrites block b as its exclusive prefix plus partial[b].
// Bindings (std430): 0 data uint[m], 1 partial uint[num_blocks + 1]. Define: MODE.
// Reference: Blelloch, "Prefix sums and their applications" (1990), the reduce-then-scan scheme.
layout(local_size_x = 64) in;

layout(std430, binding = 0) buffer Data { uint data[]; };
layout(std430, binding = 1) buffer Partial { uint partial[]; };

uniform uint m;
uniform uint block_size;
uniform uint num_blocks;

void main() {
    uint b = gl_GlobalInvocationID.x;
#if MODE == 0
    if (b >= num_blocks) return;
    uint begin = b * block_size, end = min(m, begin + block_size);
    uint s = 0u;
    for (uint i = begin; i < end; ++i) s += data[i];
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
    uint begin = b * block_size, end = min(m, begin + block_size);
    uint s = partial[b];
    for (uint i = begin; i < end; ++i) {
        uint v = data[i];
        data[i] = s;
        s += v;
    }
#endif
}
