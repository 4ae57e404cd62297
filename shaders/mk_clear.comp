#version 430
// mk_clear.comp: empties the marker modes' z-buffer and id buffer (every texel NONE) before a frame.
// Bindings: images (r32ui) 0 zbuf, 1 ids. Host: renderer/gl_backend/markers.py.
#include "mk_common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;

layout(r32ui, binding = 0) writeonly uniform uimage2D zbuf;
layout(r32ui, binding = 1) writeonly uniform uimage2D ids;

uniform ivec2 image_size;

void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (p.x >= image_size.x || p.y >= image_size.y) return;
    imageStore(zbuf, p, uvec4(NONE));
    imageStore(ids, p, uvec4(NONE));
}
