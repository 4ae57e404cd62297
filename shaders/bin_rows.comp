#version 430
// bin_rows.comp: after bin.comp PASS 0, each chunk's row differences become its tile counts: an
// inclusive prefix sum along every tile row of every chunk, one invocation per (chunk, tile row).
// Chunk c's row y starts at c * num_tiles + y * tiles_x = (c * tiles_y + y) * tiles_x in hist.
// Bindings: std430 4 hist uint[num_chunks * num_tiles] (in place).
// Uniforms: tiles_x, rows (num_chunks * tiles_y).
// Reference: the chunk walk it completes, bin.comp; twin: renderer/torch_backend/tiles.py.
layout(local_size_x = 64) in;

layout(std430, binding = 4) buffer Hist { uint hist[]; };

uniform uint tiles_x;
uniform uint rows;

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= rows) return;
    uint base = i * tiles_x;
    uint sum = 0u;
    for (uint x = 0u; x < tiles_x; ++x) {
        sum += hist[base + x];
        hist[base + x] = sum;
    }
}
