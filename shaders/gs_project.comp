#version 430
// gs_project.comp: per-Gaussian EWA projection, culling, tile rectangle and SH colour (one pass).
// Bindings (std430 storage buffers):
//   0 geom  vec4[3N]  per Gaussian (mean.xyz, opacity), then (quat wxyz) and (scale.xyz, 0),
//                     or with HAS_COVARS: (c00, c01, c02, c11) and (c12, c22, 0, 0)
//   1 sh    float[N*K*3]  SH coefficients, INRIA order, coefficient-major then channel (sh.glsl; K = SH_K)
//   with IMAGE_INPUTS, images 2 and 3 (rgba32f) in their place, the same words in texel order
//   images 0 rec0 (rgba32f), 1 rec1 (rgba32ui), PAIR_TEX_W wide: out, projected record of Gaussian
//            g at pair_coord(g) (gs_common.glsl); with REC_BUFFERS std430 7 vec4[], 8 uvec4[] by g
//   3 rects uvec4[N]  out: tile rectangle in blend tiles (BLEND_TILE px), packed, and its row spans
//                     (CULL_TILES, row_spans below; else FULL_SPANS), gs_common.glsl
//   4 keys  uint[N]   out: depth sort key (float bits of view z; INVALID_KEY when culled)
//   (the sort's values start as the Gaussian indices without being stored: radix.comp IOTA)
//   6 counters uint[] counters[0] += visible Gaussians, counters[2] += (tile, Gaussian) pairs,
//                     counters[4] = min, counters[5] = max of the visible Gaussians' sort keys
//   11 npairs uint[N] out, HOST_COUNTS only: tile pairs per Gaussian (0 when culled)
// Defines: BLEND_TILE (8 or 16 px), CULL_TILES (the tiles of the twin's 16 px rectangle, in blend
//   tiles, that the alpha ellipse reaches; without it (16 px only) the twin's rectangles exactly),
//   HAS_COVARS, GROUP_ATOMICS (GPUs: counters added once per work group through shared memory),
//   HOST_COUNTS (CPU rasterizers: no counters; the host sums npairs and reduces keys),
//   SH_K (SH coefficients stored per Gaussian, sh.glsl), REC_BUFFERS.
// References: REFERENCE.md 1.1-1.3; gsplat Utils.cuh persp_proj (guard band), INRIA forward.cu
// preprocessCUDA (radius) and auxiliary.h getRect (tile rectangle); twin: renderer/torch_backend/project.py.
#include "gs_common.glsl"

layout(local_size_x = 128) in;

layout(std430, binding = 0) readonly buffer Geom { vec4 geom[]; };
#ifdef IMAGE_INPUTS
// CPU rasterizers: geom and SH read from RGBA32F images (texel i at (i % PAIR_TEX_W, i / PAIR_TEX_W))
// with imageLoad, which llvmpipe runs as plain per-lane reads where a storage-buffer read is a
// loop over the lanes (gaussians.py _SceneBuffers).
layout(rgba32f, binding = 2) readonly uniform image2D geom_img;
layout(rgba32f, binding = 3) readonly uniform image2D sh_img;
#define GEOM(i) imageLoad(geom_img, pair_coord(i))
#define SH_IMAGE sh_img
#else
#define GEOM(i) geom[i]
#endif
#ifdef REC_BUFFERS
// CPU rasterizers: storage buffers laid out as the record textures (the host copies them over),
// as llvmpipe's imageStore costs more than a buffer store.
layout(std430, binding = 7) writeonly buffer Rec0 { vec4 rec0[]; };
layout(std430, binding = 8) writeonly buffer Rec1 { uvec4 rec1[]; };
#else
layout(rgba32f, binding = 0) writeonly uniform image2D rec0;
layout(rgba32ui, binding = 1) writeonly uniform uimage2D rec1;
#endif
layout(std430, binding = 3) writeonly buffer Rects { uvec4 rects[]; };
layout(std430, binding = 4) writeonly buffer Keys { uint keys[]; };
layout(std430, binding = 6) buffer Counters { uint counters[]; };
#ifdef HOST_COUNTS
layout(std430, binding = 11) writeonly buffer NPairs { uint npairs[]; };
#endif
#include "sh.glsl"

uniform uint n;
uniform mat3 view_rot;      // world -> camera rotation (OpenCV axes)
uniform vec3 view_trans;
uniform vec3 cam_pos;       // camera centre, world
uniform vec4 intrinsics;    // fx, fy, cx, cy
uniform ivec2 image_size;
uniform uvec2 tiles;        // tiles_x, tiles_y
uniform vec2 near_far;
uniform float splat_scale;
uniform int mip;            // 1: "mip" opacity compensation, 0: "classic"
uniform int sh_degree;      // degree evaluated (<= the stored one)

const float EPS2D = 0.3;               // INRIA / gsplat low-pass dilation
const float MIP_MIN_RATIO = 0.000025;  // 0.005^2, REFERENCE 1.1 "Anti-aliased mode"

#ifndef BLEND_TILE_H
#define BLEND_TILE_H BLEND_TILE
#endif
#if (BLEND_TILE != 16 || BLEND_TILE_H != 16) && !defined(CULL_TILES)
#error "tiles other than 16 x 16 px are always culled (rects hold blend tiles; the twin's rectangle is in 16 px ones)"
#endif
#ifdef CULL_TILES
const float TPX = float(BLEND_TILE), TPY = float(BLEND_TILE_H);   // tile width, height in pixels
// Row spans of the blend-tile rectangle [rmin, rmax) (gs_common.glsl row_span): per tile row, the
// tiles whose pixel centres the ellipse {alpha >= 1/255} can reach. With the dilated 2D covariance
// (a, b; b, c) and k2 = 2 ln(255 o), the ellipse is d^T inv(cov) d <= k2 (d = pixel - mean). Its
// x extent over a slab of rows y in [ya, yb]: for fixed y the x interval is centred at
// (b / c) (y - my) with half-width sqrt((k2 c - (y - my)^2) det) / c; its right end is concave in y,
// maximal at y - my = b sqrt(k2 / a) (clamped into the slab), the left end symmetric. Rows beyond
// the ellipse come out empty and are trimmed off the rectangle; rectangles over 8 rows or 15 tiles
// wide keep FULL_SPANS (their bounding box). Margins (+1e-3 relative on k2, 0.01 px) keep float
// rounding on the conservative side: a tile left out cannot hold a pixel with alpha >= 1/255.
// (Exact tile-ellipse culling as in Speedy-Splat's "AccuTile", Hanson et al. 2025.)
uint row_spans(vec2 m, vec3 cov, float k2, inout ivec2 rmin, inout ivec2 rmax, out uvec2 sp) {
    sp = uvec2(FULL_SPANS, 0u);
    int h = rmax.y - rmin.y, w = rmax.x - rmin.x;
    if (h <= 0 || w <= 0) return 0u;
    if (h > 8 || w > 15) return uint(w * h);
    float a = cov.x, b = cov.y, c = cov.z;
    float inv_c = 1.0 / c, sdet = sqrt(a * c - b * b);
    float k = k2 * 1.001 + 1e-4;
    float ymax = sqrt(k * c);                  // the ellipse's half-height
    float yopt = b * sqrt(k / a);              // y - my where x reaches its extremes
    uvec2 bits = uvec2(0u);
    int first = -1, last = -1;
    uint count = 0u, pending = 0u;   // tiles up to the last row hit; of rows since then
    for (int i = 0; i < h; ++i) {
        float ya = TPY * float(rmin.y + i) + 0.5 - m.y - 0.01;
        float lo = max(ya, -ymax), hi = min(ya + (TPY - 0.98), ymax);
        float y1 = clamp(yopt, lo, hi), y2 = clamp(-yopt, lo, hi);
        float xr = (b * y1 + sqrt(max(k * c - y1 * y1, 0.0)) * sdet) * inv_c;   // right end - mx
        float xl = (b * y2 - sqrt(max(k * c - y2 * y2, 0.0)) * sdet) * inv_c;   // left end - mx
        int xa = clamp(int(ceil((m.x + xl - 0.01 - (TPX - 0.5)) / TPX)), rmin.x, rmax.x) - rmin.x;
        int xb = clamp(int(floor((m.x + xr + 0.01 - 0.5) / TPX)) + 1, rmin.x, rmax.x) - rmin.x;
        bool hit = lo <= hi && xb > xa;
        first = (hit && first < 0) ? i : first;
        last = hit ? i : last;
        // A row between two that are hit is never empty (the ellipse and the slab are convex);
        // should rounding say otherwise, it keeps one tile so that the bin walk never meets an
        // empty row inside [first, last].
        xa = min(xa, w - 1);
        xb = max(xb, xa + 1);
        uint width = first >= 0 ? uint(xb - xa) : 0u;
        count += hit ? pending + width : 0u;
        pending = hit ? 0u : pending + width;
        int pos = i - max(first, 0);
        uint byte_ = (first >= 0) ? (uint(xa) | (uint(xb) << 4)) << (8 * (pos & 3)) : 0u;
        if (pos < 4) bits.x |= byte_; else bits.y |= byte_;
    }
    if (first < 0) { rmin = rmax = ivec2(0); return 0u; }
    rmax.y = rmin.y + last + 1;
    rmin.y += first;
    // Rows past the last hit one were packed too: clear them.
    int rows = last - first + 1;
    if (rows <= 4) { bits.y = 0u; if (rows < 4) bits.x &= (1u << (8 * rows)) - 1u; }
    else if (rows < 8) bits.y &= (1u << (8 * (rows - 4))) - 1u;
    sp = bits;
    return count;
}
#endif

// Projects Gaussian g; vis = 1 when it passes the twin's culling, pairs = its tile pairs, key its
// sort key, rect its rects[] entry, r0 and r1 its record. A culled Gaussian leaves them as they
// came (main's culled values): main stores them once, outside any branch, since llvmpipe runs
// every store of every path under a lane mask (a loop over the lanes each): with the stores in
// each culling branch the pass took 1.1x as long (100k and 300k Gaussians, 800x800).
void project(uint g, inout uint vis, inout uint pairs, inout uint key, inout uvec4 rect, inout vec4 r0,
             inout uvec4 r1) {
    vec4 g0 = GEOM(3u * g);
    vec4 g1 = GEOM(3u * g + 1u);
    vec4 g2 = GEOM(3u * g + 2u);
    vec3 mean = g0.xyz;
    float opacity = g0.w;

    vec3 pc = view_rot * mean + view_trans;
    if (!(pc.z >= near_far.x && pc.z <= near_far.y)) return;

    mat3 cov;
#ifdef HAS_COVARS
    float s2 = splat_scale * splat_scale;
    cov = s2 * mat3(g1.x, g1.y, g1.z,  g1.y, g1.w, g2.x,  g1.z, g2.x, g2.y);
#else
    vec4 q = normalize(g1);
    float w = q.x, x = q.y, y = q.z, z = q.w;
    // Columns of R (GLSL matrices are column-major); R as in INRIA computeCov3D.
    mat3 R = mat3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
                  2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
                  2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
    mat3 M = R * mat3(g2.x * splat_scale, 0.0, 0.0, 0.0, g2.y * splat_scale, 0.0, 0.0, 0.0, g2.z * splat_scale);
    cov = M * transpose(M);
#endif
    mat3 cov_c = view_rot * cov * transpose(view_rot);

    float fx = intrinsics.x, fy = intrinsics.y, cx = intrinsics.z, cy = intrinsics.w;
    float W = float(image_size.x), H = float(image_size.y);
    // Guard band: the Jacobian is taken at the mean clamped to 1.3x the half field of view.
    float tan_x = 0.5 * W / fx, tan_y = 0.5 * H / fy;
    float lim_xp = (W - cx) / fx + 0.3 * tan_x, lim_xn = cx / fx + 0.3 * tan_x;
    float lim_yp = (H - cy) / fy + 0.3 * tan_y, lim_yn = cy / fy + 0.3 * tan_y;
    float zc = pc.z;
    float tx = zc * clamp(pc.x / zc, -lim_xn, lim_xp);
    float ty = zc * clamp(pc.y / zc, -lim_yn, lim_yp);
    // J is 2x3; as a GLSL mat3x2 it has 3 columns of 2 rows.
    mat3x2 J = mat3x2(fx / zc, 0.0,  0.0, fy / zc,  -fx * tx / (zc * zc), -fy * ty / (zc * zc));
    mat2 cov2 = J * cov_c * transpose(J);
    vec2 mean2d = vec2(fx * pc.x / zc + cx, fy * pc.y / zc + cy);

    float a0 = cov2[0][0], c0 = cov2[1][1];
    float b = 0.5 * (cov2[0][1] + cov2[1][0]);
    float det_orig = a0 * c0 - b * b;
    float a = a0 + EPS2D, c = c0 + EPS2D;
    float det = a * c - b * b;
    if (!(det > 0.0) || isinf(det) || isnan(mean2d.x) || isnan(mean2d.y) || isinf(mean2d.x) || isinf(mean2d.y)) {
        return;
    }

    // Radius from the larger eigenvalue (INRIA preprocessCUDA), then the tile rectangle in double
    // so that boundary cases round as the float64 twin does.
    float h = 0.5 * (a + c);
    float lam = h + sqrt(max(h * h - det, 0.1));
    float radius = ceil(3.0 * sqrt(max(lam, 0.0)));
    if (!(radius > 0.0)) return;
    dvec2 m = dvec2(mean2d);
    double r = double(radius);
    dvec2 lo_f = clamp(floor((m - r) / 16.0LF), dvec2(-1.0LF), dvec2(1073741824.0LF));
    dvec2 hi_f = clamp(floor((m + r + 15.0LF) / 16.0LF), dvec2(-1.0LF), dvec2(1073741824.0LF));
    ivec2 tmax = ivec2(tiles);
    ivec2 rmin = min(max(ivec2(lo_f), ivec2(0)), tmax);
    ivec2 rmax = min(max(ivec2(hi_f), ivec2(0)), tmax);
    if (rmax.x <= rmin.x || rmax.y <= rmin.y) return;

    float op = opacity;
    if (mip != 0) op *= sqrt(max(det_orig / det, MIP_MIN_RATIO));
    vis = 1u;  // visible: passed the twin's culling (even if it blends nowhere)

    uvec2 sp = uvec2(FULL_SPANS, 0u);   // row spans: whole rows unless CULL_TILES
#ifdef CULL_TILES
    // Blend tiles (8 or 16 px wide, 8 or 16 px tall) inside the 16 px rectangle, kept only where
    // they can reach a pixel centre with alpha >= 1/255: o exp(-q/2) >= 1/255 <=> q <= 2 ln(255 o),
    // whose ellipse spans +-sqrt(2 ln(255 o) cov_xx) in x (likewise y). Pixels outside it are
    // skipped by the blend's alpha test anyway, so the image is unchanged; only fewer pixels test
    // this Gaussian.
    float k2 = 2.0 * log(255.0 * op);
    uint span_pairs = 0u;
    if (!(k2 > 0.0)) { rmin = rmax = ivec2(0); }
    else {
        // A small relative margin leaves float-rounding borderline pixels to the exact test.
        vec2 ext = sqrt(k2 * vec2(a, c)) * 1.0001 + 1e-3;
        const vec2 TP = vec2(TPX, TPY);
        const ivec2 TILE_PX = ivec2(BLEND_TILE, BLEND_TILE_H);
        ivec2 lo_t = ivec2(ceil((mean2d - ext - (TP - 0.5)) / TP));
        ivec2 hi_t = ivec2(floor((mean2d + ext - 0.5) / TP)) + 1;
        ivec2 grid = (image_size + TILE_PX - 1) / TILE_PX;
        const ivec2 SUB = 16 / TILE_PX;   // blend tiles per 16 px tile side
        rmin = clamp(max(SUB * rmin, lo_t), ivec2(0), grid);
        rmax = clamp(min(SUB * rmax, hi_t), ivec2(0), grid);
        rmax = max(rmax, rmin);
        span_pairs = row_spans(mean2d, vec3(a, b, c), k2, rmin, rmax, sp);
    }
#endif

    vec3 dir = normalize(mean - cam_pos);
    uint rgb = pack_rgb9e5(max(eval_sh(g, sh_degree, dir) + 0.5, vec3(0.0)));

    float inv_det = 1.0 / det;
    vec3 conic = vec3(c * inv_det, -b * inv_det, a * inv_det);
    // The blends evaluate log2(alpha) = log2(op) + q.x dx^2 + q.y dx dy + q.z dy^2 (dx, dy: mean
    // minus pixel centre), i.e. log2 e times the twin's power -(conic.x dx^2 + conic.z dy^2)/2
    // - conic.y dx dy, so that a pixel costs one exp2 and no multiply by the opacity.
    const float LOG2E = 1.4426950408889634;
    vec3 lq = vec3(-0.5 * LOG2E * conic.x, -LOG2E * conic.y, -0.5 * LOG2E * conic.z);
    r0 = vec4(mean2d, lq.x, lq.y);
    r1 = uvec4(floatBitsToUint(vec3(lq.z, log2(op), zc)), rgb);
    rect = uvec4(uint(rmin.x) | (uint(rmin.y) << 16), uint(rmax.x) | (uint(rmax.y) << 16), sp);
    // Total (tile, Gaussian) pairs: sizes the binning chunks and checks the binning's count.
    uint touched = uint(rmax.x - rmin.x) * uint(rmax.y - rmin.y);
#ifdef CULL_TILES
    touched = span_pairs;
#endif
    pairs = touched;
    key = floatBitsToUint(zc);
}

#ifdef GROUP_ATOMICS
shared uint group_vis, group_pairs, group_kmin, group_kmax;
#endif

void main() {
    // No `if (g < n)` around the work, and the records stored here rather than in project() under
    // its culling's mask: llvmpipe masks every access inside a branch (a loop over the lanes
    // each); the pass took 0.909x the time (100k Gaussians, 800x800, same process). Invocations
    // past n redo Gaussian n - 1 and store what its own invocation stores; they count nothing.
    // (The host dispatches none for n = 0.)
    uint g = min(gl_GlobalInvocationID.x, n - 1u);
    uint vis = 0u, pairs = 0u, key = INVALID_KEY;
    uvec4 rect = uvec4(0u, 0u, FULL_SPANS, 0u);
    vec4 r0 = vec4(0.0);    // a culled Gaussian's record: never read (it has no tile pairs)
    uvec4 r1 = uvec4(0u);
    project(g, vis, pairs, key, rect, r0, r1);
    keys[g] = key;
    rects[g] = rect;
#ifdef HOST_COUNTS
    npairs[g] = pairs;
#endif
#ifdef REC_BUFFERS
    rec0[g] = r0;
    rec1[g] = r1;
#else
    ivec2 rc = pair_coord(g);
    imageStore(rec0, rc, r0);
    imageStore(rec1, rc, r1);
#endif
    bool extra = gl_GlobalInvocationID.x >= n;
    vis = extra ? 0u : vis;
    pairs = extra ? 0u : pairs;
#ifdef GROUP_ATOMICS
    // GPUs: one global atomic per work group. A million same-address atomics (one per Gaussian)
    // serialise; llvmpipe, where a barrier costs more than its atomics, adds per invocation.
    if (gl_LocalInvocationIndex == 0u) {
        group_vis = 0u; group_pairs = 0u; group_kmin = 0xFFFFFFFFu; group_kmax = 0u;
    }
    barrier();
    if (vis > 0u) {
        atomicAdd(group_vis, vis);
        atomicMin(group_kmin, key);
        atomicMax(group_kmax, key);
    }
    if (pairs > 0u) atomicAdd(group_pairs, pairs);
    barrier();
    if (gl_LocalInvocationIndex == 0u) {
        if (group_vis > 0u) {
            atomicAdd(counters[0], group_vis);
            atomicMin(counters[4], group_kmin);
            atomicMax(counters[5], group_kmax);
        }
        if (group_pairs > 0u) atomicAdd(counters[2], group_pairs);
    }
#elif !defined(HOST_COUNTS)
    // (HOST_COUNTS, CPU rasterizers: no atomics. On llvmpipe each is a loop over the SIMD lanes of
    // locked instructions, which wait for the pass's scattered stores: the four took 20% of this
    // pass; the host reduces keys and npairs in about a millisecond instead.)
    if (vis > 0u) {
        atomicAdd(counters[0], vis);
        atomicMin(counters[4], key);
        atomicMax(counters[5], key);
    }
    if (pairs > 0u) atomicAdd(counters[2], pairs);
#endif
}
