#version 430
// gs_blend_hw.comp: front-to-back alpha blending of each tile's depth-sorted Gaussians (GPUs).
// One work group per BLEND_TILE^2 tile and one invocation per pixel. The group loads the tile's
// pairs in batches of BLEND_TILE^2 records into shared memory (one texelFetch per invocation),
// then every pixel walks the batch; the group stops once all of its pixels have stopped. Same
// per-pixel arithmetic as gs_blend.comp (the llvmpipe blend), so both give the same image but
// for the exp2 (the GPU's here, a cubic there: alpha within 1e-4 relative).
// Bindings: std430 0 hist (tile ranges, see bin.comp), std430 1 counters (counters[1] += pixel
//   blends); samplers pair_ids (usampler2D, Gaussian per pair), rec0, rec1 (records, see
//   gs_project.comp); the outputs of pixel_out.glsl (images 0 out_rgba, 1 out_depth; or, with
//   OUT_BUFFERS OUT_DISPLAY, display-ready RGBA8 words for a viewer or an 8-bit read-back).
// Defines: BLEND_TILE (8 or 16 px), MODE (0 rgb, 1 depth colour-mapped, 2 alpha), OUT_BUFFERS,
//   OUT_DISPLAY (pixel_out.glsl).
// Reference: REFERENCE.md 1.4 (INRIA forward.cu renderCUDA: the shared-memory batch scheme and
//   its constants; gsplat Common.h: MAX_ALPHA 0.99, ALPHA_THRESHOLD 1/255, TRANSMITTANCE_THRESHOLD
//   1e-4); twin: renderer/torch_backend/rasterize.py. Colour map: colormap.glsl.
#include "gs_common.glsl"
#include "colormap.glsl"

layout(local_size_x = BLEND_TILE, local_size_y = BLEND_TILE) in;
const uint NT = uint(BLEND_TILE * BLEND_TILE);

layout(std430, binding = 0) readonly buffer Hist { uint hist[]; };
layout(std430, binding = 1) buffer Counters { uint counters[]; };
uniform usampler2D pair_ids;
uniform sampler2D rec0;
uniform usampler2D rec1;

uniform ivec2 image_size;
#include "pixel_out.glsl"
uniform uint tiles_x;
uniform uint range_base;   // tile t's pairs end at hist[range_base + t] (binning.py Bins)
uniform vec3 background;
uniform vec2 depth_range;   // mode 1: (near, far) of the colour map

const float MAX_ALPHA = 0.99;
const float LOG2_ALPHA_MIN = -7.9943534;   // log2(1 / 255)
const float T_MIN = 1e-4;
const float DEPTH_EPS = 1e-6;

shared vec4 s0[NT];
shared uvec4 s1[NT];
shared uint n_done;
shared uint n_blended;

void main() {
    uint tile = gl_WorkGroupID.y * tiles_x + gl_WorkGroupID.x;
    uint end = hist[range_base + tile];
    uint start = tile == 0u ? 0u : hist[range_base + tile - 1u];
    ivec2 pix = ivec2(gl_WorkGroupID.xy) * BLEND_TILE + ivec2(gl_LocalInvocationID.xy);
    uint tid = gl_LocalInvocationIndex;
    bool inside = pix.x < image_size.x && pix.y < image_size.y;
    vec2 centre = vec2(pix) + 0.5;

    float T = 1.0;
    vec3 C = vec3(0.0);
    float D = 0.0;
    bool done = !inside;
    uint blended = 0u;
    if (tid == 0u) n_blended = 0u;

    for (uint base = start; base < end; base += NT) {
        if (tid == 0u) n_done = 0u;
        barrier();
        if (done) atomicAdd(n_done, 1u);
        uint p = base + tid;
        if (p < end) {
            ivec2 pc = pair_coord(texelFetch(pair_ids, pair_coord(p), 0).r);
            s0[tid] = texelFetch(rec0, pc, 0);
            s1[tid] = texelFetch(rec1, pc, 0);
        }
        barrier();
        if (n_done == NT) break;   // uniform: every pixel of the tile has stopped
        uint cnt = min(NT, end - base);
        for (uint j = 0u; j < cnt && !done; ++j) {
            vec4 r0 = s0[j];
            vec2 r1 = uintBitsToFloat(s1[j].xy);   // (q.z, log2 opacity)
            vec2 d = r0.xy - centre;
            float lg = r1.y + r0.z * d.x * d.x + d.y * (r0.w * d.x + r1.x * d.y);
            if (lg < LOG2_ALPHA_MIN) continue;
            float a = min(MAX_ALPHA, exp2(lg));
            float nt = T - T * a;
            if (nt < T_MIN) { done = true; break; }
            float w = a * T;
            vec4 col = vec4(unpack_rgb9e5(s1[j].w), uintBitsToFloat(s1[j].z));
            C += w * col.rgb;
            D += w * col.a;
            T = nt;
            blended += 1u;
        }
        barrier();   // the batch's records are read before the next batch overwrites them
    }
    if (blended > 0u) atomicAdd(n_blended, blended);
    barrier();
    if (tid == 0u && n_blended > 0u) atomicAdd(counters[1], n_blended);
    if (!inside) return;

    float a = 1.0 - T;
    float depth = a > DEPTH_EPS ? D / a : 0.0;
    vec3 rgb;
    if (MODE == 1) {  // MODE is a define: llvmpipe would run every branch of a uniform `if`
        float t = 1.0 - (depth - depth_range.x) / max(depth_range.y - depth_range.x, 1e-9);
        rgb = turbo(t) * a + background * (1.0 - a);
    } else if (MODE == 2) {
        rgb = vec3(a) + background * (1.0 - a);
    } else {
        rgb = C + T * background;
    }
    STORE_PIXEL(pix.x, pix.y, vec4(rgb, a), depth)
}
