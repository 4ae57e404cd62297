#version 430
// gs_blend.comp: front-to-back alpha blending of each 16x16 tile's depth-sorted Gaussians.
// One work group per BLEND_TILE^2 tile; each invocation shades PPT consecutive pixels of one
// column, so one texelFetch of a pair's record serves PPT pixels (fetches dominate on CPU rasterizers).
// Bindings: std430 0 hist (tile ranges, see bin.comp), std430 1 counters (counters[1] += pairs
//   blended); samplers pair_ids (usampler2D, Gaussian per pair), rec0..rec2 (records,
//   gs_common.glsl); images 0 out_rgba (rgba32f: colour
//   after the mode's mapping, alpha), 1 out_depth (r32f: expected depth normalised by alpha).
// Limit: llvmpipe ends an invocation after 65535 loop iterations, so a tile whose pixels stay
// unsaturated through more than ~65k pairs would be cut short there (not seen in practice).
// Defines: BLEND_TILE (16 or 8 px), PPT (pixels per invocation, divides BLEND_TILE), STEP = BLEND_TILE / PPT. Reference: REFERENCE.md 1.4 (INRIA forward.cu
// renderCUDA; gsplat Common.h: MAX_ALPHA 0.99, ALPHA_THRESHOLD 1/255, TRANSMITTANCE_THRESHOLD 1e-4);
// twin: renderer/torch_backend/rasterize.py. Colour map: colormap.glsl (twin renderer/colormap.py).
#include "gs_common.glsl"
#include "colormap.glsl"

// STEP (invocations per column) is given as a define: the layout qualifier needs a literal.
layout(local_size_x = BLEND_TILE, local_size_y = STEP) in;

layout(std430, binding = 0) readonly buffer Hist { uint hist[]; };
layout(std430, binding = 1) buffer Counters { uint counters[]; };
uniform usampler2D pair_ids;
uniform sampler2D rec0;
uniform sampler2D rec1;
uniform sampler2D rec2;
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
const float DEPTH_EPS = 1e-6;   // alpha below which a pixel has no depth (torch twin: DEPTH_EPS)

void main() {
    uint tile = gl_WorkGroupID.y * tiles_x + gl_WorkGroupID.x;
    uint end = hist[tile * num_chunks + num_chunks - 1u];
    uint start = tile == 0u ? 0u : hist[tile * num_chunks - 1u];
    int px = int(gl_WorkGroupID.x * BLEND_TILE + gl_LocalInvocationID.x);
    int py0 = int(gl_WorkGroupID.y * BLEND_TILE + gl_LocalInvocationID.y * PPT);

    float T[PPT];
    vec3 C[PPT];
    float D[PPT];
    bool done[PPT];
    int live = 0;
    for (int k = 0; k < PPT; ++k) {
        T[k] = 1.0; C[k] = vec3(0.0); D[k] = 0.0;
        done[k] = px >= image_size.x || py0 + k >= image_size.y;
        live += done[k] ? 0 : 1;
    }
    float fx = float(px) + 0.5;
    uint blended = 0u;
    for (uint p = start; p < end && live > 0; ++p) {
        ivec2 pc = pair_coord(texelFetch(pair_ids, pair_coord(p), 0).r);
        vec4 r0 = texelFetch(rec0, pc, 0);
        vec4 r1 = texelFetch(rec1, pc, 0);
        vec4 r2 = texelFetch(rec2, pc, 0);
        // Branch-free body: CPU rasterizers run every branch under a lane mask anyway, so
        // selects are cheaper than ifs; one fetch of the record serves PPT pixels.
        live = 0;
        for (int k = 0; k < PPT; ++k) {
            vec2 d = r0.xy - vec2(fx, float(py0 + k) + 0.5);
            float power = -0.5 * (r0.z * d.x * d.x + r1.x * d.y * d.y) - r0.w * d.x * d.y;
            float alpha = min(MAX_ALPHA, r1.y * exp(power));
            bool ok = !done[k] && power <= 0.0 && alpha >= ALPHA_MIN;
            float nt = T[k] * (1.0 - alpha);
            bool stop = ok && nt < T_MIN;
            float w = (ok && !stop) ? alpha * T[k] : 0.0;
            C[k] += w * r2.rgb;
            D[k] += w * r2.w;
            T[k] = (ok && !stop) ? nt : T[k];
            blended += (ok && !stop) ? 1u : 0u;
            done[k] = done[k] || stop;
            live += done[k] ? 0 : 1;
        }
    }
    if (blended > 0u) atomicAdd(counters[1], blended);

    for (int k = 0; k < PPT; ++k) {
        int py = py0 + k;
        if (px >= image_size.x || py >= image_size.y) continue;
        float a = 1.0 - T[k];
        float depth = a > DEPTH_EPS ? D[k] / a : 0.0;
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
