#version 430
// mk_raster.comp: the marker modes' z-buffer. One invocation per work item (g, chunk) scans its
// chunk of Gaussian g's pixel box (at most about CHUNK_PX pixels, so no invocation loops long)
// and tests each pixel centre:
//   points      (px + 0.5 - mean2d)^2 summed <= radius^2; depth = the mean's view z
//   ellipsoids  the ray (dx, dy, 1) meets {(x-t)^T A (x-t) <= k^2}; depth = the nearer root, kept
//               when > near (the twin's test and root, set up per row without its float
//               cancellation: see the comment in main).
// PASS 0: imageAtomicMin of the depth's float bits (positive floats order as uints) into zbuf.
// PASS 1: where a hit's depth bits equal zbuf's, imageAtomicMin of g into ids: among equal depths
//         the smallest index wins, as the twin's (depth, index) key. With SLOTS (the scene uploaded
//         in Morton order, renderer/gl_backend/locality.py) g is a slot and ids takes the scene's
//         own index of it, so that ties go as without slots.
// Both passes are this one program (the pass is a uniform), so a hit's bits are the same in each.
// Bindings: std430 0 recs vec4[6N], 1 boxes uvec4[N], 2 items uvec2[], with SLOTS 3 scene_index
//   uint[N] (slot -> the scene's index); images (r32ui) 0 zbuf, 1 ids. Defines: ELLIPSOIDS, SLOTS.
//   Twin: renderer/torch_backend/gaussians.py (_render_points, _render_ellipsoids).
#include "mk_common.glsl"

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Recs { vec4 recs[]; };
layout(std430, binding = 1) readonly buffer Boxes { uvec4 boxes[]; };
layout(std430, binding = 2) readonly buffer Items { uvec2 items[]; };
#ifdef SLOTS
layout(std430, binding = 3) readonly buffer SceneIndex { uint scene_index[]; };
#define TIE(g) scene_index[g]
#else
#define TIE(g) (g)
#endif
layout(r32ui, binding = 0) coherent uniform uimage2D zbuf;
layout(r32ui, binding = 1) coherent uniform uimage2D ids;

uniform uint total;       // work items
uniform int pass_id;      // 0: depth, 1: winning index
uniform vec4 intrinsics;  // fx, fy, cx, cy
uniform float near;

void hit(ivec2 p, uint g, uint zbits) {
    // Load first: most hits lose to a nearer one already there, and an atomic costs far more
    // than a load on llvmpipe (it runs lane by lane). Depths only fall, so a skipped hit loses.
    uint cur = imageLoad(zbuf, p).x;
    if (pass_id == 0) {
        if (zbits < cur) imageAtomicMin(zbuf, p, zbits);
    } else if (cur == zbits) {
        imageAtomicMin(ids, p, TIE(g));
    }
}

void main() {
    uint i = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * gl_WorkGroupSize.x
             + gl_LocalInvocationID.x;
    if (i >= total) return;
    uvec2 item = items[i];
    uint g = item.x;
    uvec4 b = boxes[g];
    uvec4 box = unpack_box(b);
    uint cols = b.z & 0xFFFFu, rows = b.z >> 16, nx = b.w;
    uint x0 = box.x + (item.y % nx) * cols, y0 = box.y + (item.y / nx) * rows;
    uint x1 = min(x0 + cols, box.z), y1 = min(y0 + rows, box.w);
    vec4 r0 = recs[REC * g];
#if ELLIPSOIDS
    // Nearer root z = gam / (d.At + sqrt(disc)), disc = (d.At)^2 - (d.A.d) gam: the twin's
    // (d.At - sqrt(disc)) / d.A.d rationalised, so neither it nor disc (in the silhouette's
    // vertex form, set up in double by mk_setup) cancels in float. A ray meeting the ellipsoid
    // behind the camera gets z < 0.
    vec4 r2 = recs[REC * g + 2u], r4 = recs[REC * g + 4u], r5 = recs[REC * g + 5u];
    float gam = r2.z;
    vec3 gv = r4.xyz;
    float fx = intrinsics.x, fy = intrinsics.y, cx = intrinsics.z, cy = intrinsics.w;
    if (r5.z > 0.0) {
        // Per row, the silhouette ellipse's chord: exactly the pixel centres inside are drawn.
        vec2 c = r5.xy;
        float m00 = r5.z, r01 = r5.w, schur = r2.w, D = r4.w;
        for (uint y = y0; y < y1; y++) {
            float dy = (float(y) + 0.5 - cy) / fy;
            float w = dy - c.y;
            float dxc = c.x - r01 * w;
            float d0 = D - schur * w * w;  // disc = d0 - m00 (dx - dxc)^2
            if (!(d0 >= 0.0)) continue;
            float hw = sqrt(d0 / m00);
            uint xa = uint(clamp(ceil(fx * (dxc - hw) + cx - 0.5), float(x0), float(x1)));
            uint xb = uint(clamp(floor(fx * (dxc + hw) + cx - 0.5) + 1.0, float(x0), float(x1)));
            float e = gv.y * dy + gv.z;
            for (uint x = xa; x < xb; x++) {
                float dx = (float(x) + 0.5 - cx) / fx;
                float u = dx - dxc;
                float z = gam / (gv.x * dx + e + sqrt(max(d0 - m00 * u * u, 0.0)));
                if (z > near) hit(ivec2(x, y), g, floatBitsToUint(z));
            }
        }
    } else {
        // The ellipsoid reaches behind the camera plane (rare: next to the camera): every pixel
        // of the chunk, disc in double.
        dmat3 A = dmat3(record_inverse(recs[REC * g + 1u], r2));
        dvec3 gd = A * dvec3(r0.xyz);
        double gamd = dot(dvec3(r0.xyz), gd) - double(r0.w);
        for (uint y = y0; y < y1; y++) {
            for (uint x = x0; x < x1; x++) {
                dvec3 d = dvec3(pixel_ray(uvec2(x, y), intrinsics));
                double b = dot(d, gd);
                double disc = b * b - dot(d, A * d) * gamd;
                if (!(disc >= 0.0LF)) continue;
                float z = float(gamd / (b + sqrt(disc)));
                if (z > near) hit(ivec2(x, y), g, floatBitsToUint(z));
            }
        }
    }
#else
    vec2 m = r0.xy;
    uint zbits = floatBitsToUint(r0.z);
    float r2 = r0.w;
    for (uint y = y0; y < y1; y++) {
        precise float dy = float(y) + 0.5 - m.y;
        precise float dy2 = dy * dy;
        for (uint x = x0; x < x1; x++) {
            precise float dx = float(x) + 0.5 - m.x;
            precise float d2 = dx * dx + dy2;
            if (d2 <= r2) hit(ivec2(x, y), g, zbits);
        }
    }
#endif
}
