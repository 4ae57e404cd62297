#version 430
// gs_blend.comp: front-to-back alpha blending of each 16x16 tile's depth-sorted Gaussians.
// One work group per tile; each invocation shades PPT pixels of one column (rows STEP apart), so
// one texelFetch of a pair's record serves PPT pixels (fetches dominate on CPU rasterizers).
// Bindings: std430 0 hist (tile ranges, see bin.comp), std430 1 counters (counters[1] += pairs
//   blended); samplers pair0..pair2 (records, gs_common.glsl); images 0 out_rgba (rgba32f: colour
//   after the mode's mapping, alpha), 1 out_depth (r32f: expected depth normalised by alpha).
// Defines: PPT (pixels per invocation, divides 16). Reference: REFERENCE.md 1.4 (INRIA forward.cu
// renderCUDA; gsplat Common.h: MAX_ALPHA 0.99, ALPHA_THRESHOLD 1/255, TRANSMITTANCE_THRESHOLD 1e-4);
// twin: renderer/torch_backend/rasterize.py. Colour map: colormap.glsl (twin renderer/colormap.py).
#include "gs_common.glsl"
#include "colormap.glsl"

const int STEP = 16 / PPT;
layout(local_size_x = 16, local_size_y = STEP) in;

layout(std430, binding = 0) readonly buffer Hist { uint hist[]; };
layout(std430, binding = 1) buffer Counters { uint counters[]; };
uniform sampler2D pair0;
uniform sampler2D pair1;
uniform sampler2D pair2;
layout(rgba32f, binding = 0) writeonly uniform image2D out_rgba;
layout(r32f, binding = 1) writeonly uniform image2D out_depth;

uniform ivec2 image_size;
uniform uint tiles_x;
uniform uint num_chunks;
uniform vec3 background;
uniform int mode;           // 0 rgb, 1 depth (colour-mapped), 2 alpha
uniform vec2 depth_range;   // mode 1: (near, far) of the colour map

const float MAX_ALPHA = 0.99;
const float ALPHA_MIN = 1.0 / 255.0;
const float T_MIN = 1e-4;

void main() {
    uint tile = gl_WorkGroupID.y * tiles_x + gl_WorkGroupID.x;
    uint end = hist[tile * num_chunks + num_chunks - 1u];
    uint start = tile == 0u ? 0u : hist[tile * num_chunks - 1u];
    int px = int(gl_WorkGroupID.x * TILE + gl_LocalInvocationID.x);
    int py0 = int(gl_WorkGroupID.y * TILE + gl_LocalInvocationID.y);

    float T[PPT];
    vec3 C[PPT];
    float D[PPT];
    bool done[PPT];
    int live = 0;
    for (int k = 0; k < PPT; ++k) {
        T[k] = 1.0; C[k] = vec3(0.0); D[k] = 0.0;
        done[k] = px >= image_size.x || py0 + k * STEP >= image_size.y;
        live += done[k] ? 0 : 1;
    }
    float fx = float(px) + 0.5;
    uint blended = 0u;
    for (uint p = start; p < end && live > 0; ++p) {
        ivec2 pc = pair_coord(p);
        vec4 r0 = texelFetch(pair0, pc, 0);
        vec4 r1 = texelFetch(pair1, pc, 0);
        bool have2 = false;
        vec4 r2 = vec4(0.0);
        for (int k = 0; k < PPT; ++k) {
            if (done[k]) continue;
            vec2 d = r0.xy - vec2(fx, float(py0 + k * STEP) + 0.5);
            float power = -0.5 * (r0.z * d.x * d.x + r1.x * d.y * d.y) - r0.w * d.x * d.y;
            // power_min (r1.z) rejects alpha < 1/255 without exp(); the margin leaves every
            // borderline case to the exact test below.
            if (power > 0.0 || power < r1.z - 1e-3) continue;
            float alpha = min(MAX_ALPHA, r1.y * exp(power));
            if (alpha < ALPHA_MIN) continue;
            float nt = T[k] * (1.0 - alpha);
            if (nt < T_MIN) { done[k] = true; live -= 1; continue; }
            if (!have2) { r2 = texelFetch(pair2, pc, 0); have2 = true; }
            float w = alpha * T[k];
            C[k] += w * r2.rgb;
            D[k] += w * r2.w;
            T[k] = nt;
            blended += 1u;
        }
    }
    if (blended > 0u) atomicAdd(counters[1], blended);

    for (int k = 0; k < PPT; ++k) {
        int py = py0 + k * STEP;
        if (px >= image_size.x || py >= image_size.y) continue;
        float a = 1.0 - T[k];
        float depth = a > 0.0 ? D[k] / a : 0.0;
        vec3 rgb;
        if (mode == 1) {
            float t = 1.0 - (depth - depth_range.x) / max(depth_range.y - depth_range.x, 1e-9);
            rgb = turbo(t) * a + background * (1.0 - a);
        } else if (mode == 2) {
            rgb = vec3(a) + background * (1.0 - a);
        } else {
            rgb = C[k] + T[k] * background;
        }
        imageStore(out_rgba, ivec2(px, py), vec4(rgb, a));
        imageStore(out_depth, ivec2(px, py), vec4(depth));
    }
}
