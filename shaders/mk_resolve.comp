#version 430
// mk_resolve.comp: one invocation per pixel shades the marker modes' winner into the output images
// (row 0 = the top image row, as the splatting blend writes them).
//   MODE 0 points      rgb = the winner's DC colour
//   MODE 1 ellipsoids  rgb = DC colour * (0.25 + 0.75 max(0, n . -view)) (a headlight)
//   MODE 2 normals     rgb = world normal * 0.5 + 0.5
// n = normalize(A (z d - t)) at the hit z d (the gradient of the quadric), in world axes R^T n.
// Empty pixels: rgb = background, alpha 0, depth 0, normal 0. Covered pixels: alpha 1, depth = the
// winner's view z (zbuf's bits).
// Bindings: std430 0 recs vec4[6N]; images 0 zbuf (r32ui), 1 ids (r32ui), 2 out_rgba (rgba32f),
//   3 out_depth (r32f), 4 out_normals (rgba32f, MODE 1 and 2: (world normal, 0)); with SLOTS
//   std430 1 slot_of uint[N] (ids holds the scene's indices; recs are by slot, see mk_raster.comp).
// Defines: MODE, SLOTS. Twin: renderer/torch_backend/gaussians.py (_render_points,
//   _render_ellipsoids).
#include "mk_common.glsl"

layout(local_size_x = 16, local_size_y = 16) in;

layout(std430, binding = 0) readonly buffer Recs { vec4 recs[]; };
#ifdef SLOTS
layout(std430, binding = 1) readonly buffer SlotOf { uint slot_of[]; };
#endif
layout(r32ui, binding = 0) readonly uniform uimage2D zbuf;
layout(r32ui, binding = 1) readonly uniform uimage2D ids;
layout(rgba32f, binding = 2) writeonly uniform image2D out_rgba;
layout(r32f, binding = 3) writeonly uniform image2D out_depth;
#if MODE != 0
layout(rgba32f, binding = 4) writeonly uniform image2D out_normals;
#endif

uniform ivec2 image_size;
uniform vec3 background;
uniform mat3 view_rot;    // world -> camera rotation
uniform vec4 intrinsics;  // fx, fy, cx, cy

void main() {
    ivec2 p = ivec2(gl_GlobalInvocationID.xy);
    if (p.x >= image_size.x || p.y >= image_size.y) return;
    uint g = imageLoad(ids, p).x;
    if (g == NONE) {
        imageStore(out_rgba, p, vec4(background, 0.0));
        imageStore(out_depth, p, vec4(0.0));
#if MODE != 0
        imageStore(out_normals, p, vec4(0.0));
#endif
        return;
    }
#ifdef SLOTS
    g = slot_of[g];
#endif
    float z = uintBitsToFloat(imageLoad(zbuf, p).x);
    vec3 rgb = recs[REC * g + 3u].rgb;
#if MODE != 0
    vec4 r0 = recs[REC * g];
    mat3 A = record_inverse(recs[REC * g + 1u], recs[REC * g + 2u]);
    vec3 d = pixel_ray(uvec2(p), intrinsics);
    vec3 n_cam = normalize(A * (z * d - r0.xyz));
    vec3 n_world = n_cam * view_rot;  // R^T n
#if MODE == 1
    rgb *= 0.25 + 0.75 * max(0.0, dot(n_cam, -normalize(d)));
#else
    rgb = n_world * 0.5 + 0.5;
#endif
    imageStore(out_normals, p, vec4(n_world, 0.0));
#endif
    imageStore(out_rgba, p, vec4(rgb, 1.0));
    imageStore(out_depth, p, vec4(z, 0.0, 0.0, 0.0));
}
