#version 430
// scan_par.comp: exclusive prefix sum of uint partial[num_blocks] by one work group of GROUP
// invocations (GPUs): scan.comp's MODE 1 walks the block sums in a single invocation, which on a
// GPU costs milliseconds for the radix sort's thousands of blocks. Each invocation sums a
// contiguous slice, the slice sums are scanned in shared memory, then each slice is rewritten.
// partial[num_blocks] = total, as scan.comp MODE 1 leaves it.
// Bindings (std430): 1 partial uint[num_blocks + 1]. Defines: GROUP (local size, power of two).
// Reference: Blelloch, "Prefix sums and their applications" (1990): reduce, scan the reductions,
// then downsweep; the shared-memory step is the Hillis-Steele scan (1986).
layout(local_size_x = GROUP) in;

layout(std430, binding = 1) buffer Partial { uint partial[]; };

uniform uint num_blocks;

shared uint sums[GROUP];

void main() {
    uint t = gl_LocalInvocationID.x;
    uint per = (num_blocks + uint(GROUP) - 1u) / uint(GROUP);
    uint begin = min(num_blocks, t * per), end = min(num_blocks, begin + per);
    uint s = 0u;
    for (uint i = begin; i < end; ++i) s += partial[i];
    sums[t] = s;
    barrier();
    // Inclusive Hillis-Steele scan of the slice sums.
    for (uint d = 1u; d < uint(GROUP); d <<= 1) {
        uint v = t >= d ? sums[t - d] : 0u;
        barrier();
        sums[t] += v;
        barrier();
    }
    uint run = sums[t] - s;   // exclusive prefix of this slice
    for (uint i = begin; i < end; ++i) {
        uint v = partial[i];
        partial[i] = run;
        run += v;
    }
    if (t == uint(GROUP) - 1u) partial[num_blocks] = sums[t];
}
