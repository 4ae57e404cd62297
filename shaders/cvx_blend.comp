#version 430
// cvx_blend.comp: front-to-back alpha blending of each tile's depth-sorted convex splats.
// One work group per BLEND_TILE^2 tile; each invocation shades PPT consecutive pixels of one
// column, so one fetch of a pair's record (CVX_REC texels) serves PPT pixels.
// Per pixel p and convex: v_k = z delta L_k(p) (record lines), phi = LSE_k v_k computed as
// m + log sum exp(v_k - m), I = 1 / (1 + exp(z sigma phi)), alpha = min(0.99, o I); skip
// alpha < 1/255, stop once T (1 - alpha) < 1e-4, else C += c alpha T (as gs_blend.comp).
// Tiles: one a work group (group_tile()), or with DYNAMIC_TILES taken in turn from a counter
// (group_tile.glsl FOR_EACH_TILE; the blend took 0.96x to 0.99x the time, 20k and 50k random
// convexes at 800x800, same image).
// Bindings: std430 0 hist (tile ranges, see bin.comp / binning.py), std430 1 counters
//   (counters[1] += pixel samples blended, counters[6] += columns cut short, counters[NEXT_TILE]
//   the next tile with DYNAMIC_TILES); samplers pair_ids
//   (usampler2D, convex per pair), rec (records, cvx_common.glsl), or with IMAGE_INPUTS images 2
//   and 3 (r32ui, rgba32f); the outputs of pixel_out.glsl.
// Limit: llvmpipe ends an invocation's loops after 65535 iterations in all, without notice; a
// column would need ~65k pairs over unsaturated pixels to reach it (the inner loops are unrolled;
// with DYNAMIC_TILES, 65535 - GRAB_BUDGET - 1).
// One that did (pairs left, a pixel open) is counted in counters[6]: the host raises.
// Defines: NPTS, BLEND_TILE (16 or 8 px), PPT (divides BLEND_TILE), STEP = BLEND_TILE / PPT,
//   OUT_BUFFERS (pixel_out.glsl), IMAGE_INPUTS (optional, see the bindings), DYNAMIC_TILES with
//   GRAB_BUDGET, NEXT_TILE and LOCKSTEP (group_tile.glsl).
// References: REFERENCE.md 4; convexsplatting/diff-convex-rasterization > cuda_rasterizer/forward.cu
// > renderCUDA; twin: renderer/torch_backend/convex.py convex_alpha_fn with rasterize.blend_tiles.
#include "gs_common.glsl"
#include "cvx_common.glsl"
#include "colormap.glsl"

layout(local_size_x = BLEND_TILE, local_size_y = STEP) in;

layout(std430, binding = 0) readonly buffer Hist { uint hist[]; };
layout(std430, binding = 1) buffer Counters { uint counters[]; };
#ifdef IMAGE_INPUTS
// CPU rasterizers: the pair ids and records through image loads, which llvmpipe runs as plain
// per-lane reads where a texelFetch goes through its sampler code (gs_blend.comp IMAGE_INPUTS).
layout(r32ui, binding = 2) readonly uniform uimage2D pair_ids;
layout(rgba32f, binding = 3) readonly uniform image2D rec;
#define FETCH(tex, c) imageLoad(tex, c)
#else
uniform usampler2D pair_ids;
uniform sampler2D rec;
#define FETCH(tex, c) texelFetch(tex, c, 0)
#endif

uniform ivec2 image_size;
#include "pixel_out.glsl"
#include "group_tile.glsl"
uniform uint tiles_x;
uniform uint range_base;   // tile t's pairs end at hist[range_base + t] (binning.py Bins)
uniform vec3 background;
uniform int mode;           // 0 rgb, 1 depth (colour-mapped), 2 alpha
uniform vec2 depth_range;   // mode 1: (near, far) of the colour map

const float MAX_ALPHA = 0.99;
const float ALPHA_MIN = 1.0 / 255.0;
const float T_MIN = 1e-4;
const float DEPTH_EPS = 1e-6;

// Blends tile wg; returns the most loop iterations it may take (its pairs, at least one). A tile
// past the grid (FOR_EACH_TILE's last grab, every lane masked) reads the last tile's range.
uint blend_tile(uvec2 wg) {
    uint tile = min(wg.y * tiles_x + wg.x, num_tiles - 1u);
    uint end = hist[range_base + tile];
    uint start = tile == 0u ? 0u : hist[range_base + tile - 1u];
    int px = int(wg.x * BLEND_TILE + gl_LocalInvocationID.x);
    int py0 = int(wg.y * BLEND_TILE + gl_LocalInvocationID.y * PPT);

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
    float fy0 = float(py0) + 0.5;
    uint blended = 0u;
    // do-while: llvmpipe runs a loop body once more, masked, when its condition fails at the top;
    // an empty tile runs it once with a pair past its end (which blends nothing).
    uint p = start;
    do {
        bool in_tile = p < end;
        uint g = FETCH(pair_ids, pair_coord(min(p, max(end, 1u) - 1u))).r;
        vec4 r0 = FETCH(rec, cvx_coord(g, 0));
        vec4 r1 = FETCH(rec, cvx_coord(g, 1));
        float e[4 * CVX_EDGE_TEXELS];
        for (int j = 0; j < CVX_EDGE_TEXELS; ++j) {
            vec4 t = FETCH(rec, cvx_coord(g, 2 + j));
            e[4 * j] = t.x; e[4 * j + 1] = t.y; e[4 * j + 2] = t.z; e[4 * j + 3] = t.w;
        }
        float dx = fx - r0.x;
        float dy0 = fy0 - r0.y;
        // v_k at the column's first pixel; each next pixel adds B_k.
        float v0[NPTS];
        for (int k = 0; k < NPTS; ++k) v0[k] = e[3 * k] * dx + e[3 * k + 1] * dy0 + e[3 * k + 2];
        // Branch-free body: CPU rasterizers run every branch under a lane mask anyway.
        live = 0;
        for (int k = 0; k < PPT; ++k) {
            float v[NPTS];
            float m = -3e38;
            for (int j = 0; j < NPTS; ++j) {
                v[j] = v0[j] + float(k) * e[3 * j + 1];
                m = max(m, v[j]);
            }
            float s = 0.0;
            for (int j = 0; j < NPTS; ++j) s += exp(v[j] - m);
            float phi = m + log(s);
            float ind = 1.0 / (1.0 + exp(r0.z * phi));
            float alpha = min(MAX_ALPHA, r0.w * ind);
            bool ok = in_tile && !done[k] && alpha >= ALPHA_MIN;
            float nt = T[k] * (1.0 - alpha);
            bool stop = ok && nt < T_MIN;
            float w = (ok && !stop) ? alpha * T[k] : 0.0;
            C[k] += w * r1.rgb;
            D[k] += w * r1.w;
            T[k] = (ok && !stop) ? nt : T[k];
            blended += (ok && !stop) ? 1u : 0u;
            done[k] = done[k] || stop;
            live += done[k] ? 0 : 1;
        }
        ++p;
    } while (p < end && live > 0);
    if (blended > 0u) atomicAdd(counters[1], blended);
    if (p < end && live > 0) atomicAdd(counters[6], 1u);   // only llvmpipe's loop limit ends it so

    for (int k = 0; k < PPT; ++k) {
        int py = py0 + k;
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
        // A masked store, not `continue`: a loop with a continue is not unrolled, and an array
        // indexed by a loop variable lives in memory for the whole shader on llvmpipe (every
        // T[k], C[k] access a per-lane gather or scatter: the blend took 1.35x as long).
        if (px < image_size.x && py < image_size.y) STORE_PIXEL(px, py, vec4(rgb, a), depth)
    }
    return max(end - start, 1u);
}

void main() {
#ifdef DYNAMIC_TILES
    FOR_EACH_TILE(counters[NEXT_TILE], blend_tile)
#else
    blend_tile(group_tile());
#endif
}
