#version 430
// gs_blend.comp: front-to-back alpha blending of each tile's depth-sorted Gaussians (CPU rasterizers).
// One work group per BLEND_TILE x BLEND_TILE_H tile; each invocation shades PPT consecutive pixels
// of one column.
// Tuned for llvmpipe (gaussians.py picks gs_blend_hw.comp on GPUs), where a work group runs as
// 8-wide SIMD vectors: the pairs are walked in batches of BATCH (the subgroup size), unrolled, and
// every lane loads each pair's id and record itself (load_pair: image loads at the same texel in
// every lane). A pair's loads serve PPT rows (PPT 16: 16 rows a pair). Before, each lane fetched
// one pair's record into shared memory and every lane read the batch from there; on llvmpipe a
// shared-memory vec4 read is a loop over the lanes inside any loop (Mesa 22's scalar read-and-
// broadcast applies outside control flow only: ~14 ns of a thread a read), and the direct loads
// took 0.92x to 0.98x the blend time (bench scene at 10k to 300k Gaussians, biker.spz,
// guitar.compressed.ply; 8 x 16 px tiles, same image); readInvocationARB was a lane loop per float. The batch loop's condition is
// subgroup-uniform (anyInvocationARB). Per pixel: alpha from a log2-scaled quadratic
// (coefficients prepared per lane and pair; exp2 at one row, ratios between rows, see pair_setup)
// and a branch-free update (llvmpipe runs both sides of an `if` under a lane mask): a finished
// pixel keeps -T, so no separate `done` flags.
// Tiles: with DYNAMIC_TILES work groups take tiles in turn from a counter (group_tile.glsl
// FOR_EACH_TILE): the blend took 0.74x the time at 10k Gaussians, 0.84x to 0.92x at 100k and
// 0.75x to 0.88x at 300k (bench scene, 800x800, 8 x 16 px tiles, same image; trained scenes 0.80x
// to 0.98x). Otherwise a work group blends tile group_tile().
// Bindings: std430 0 hist (tile ranges, see bin.comp), std430 1 counters (counters[1] += pixel
//   blends with COUNT_BLENDS, counters[6] += tiles cut short, see below, counters[NEXT_TILE] the
//   next tile with DYNAMIC_TILES, zeroed by the host); samplers pair_ids
//   (usampler2D, Gaussian per pair), rec0, rec1 (records, see gs_project.comp), or with
//   IMAGE_INPUTS images 2, 3, 4 (r32ui, rgba32f, rgba32ui); the outputs of pixel_out.glsl.
// Limit: llvmpipe ends an invocation's loops after 65535 iterations in all, without notice; one
//   iteration here is a batch, so a tile may blend up to ~65535 * BATCH pairs (with DYNAMIC_TILES
//   (65535 - GRAB_BUDGET - 1) * BATCH). A tile that ran into the limit (pairs left and a pixel
//   still open) is counted in counters[6]: the host raises.
// Defines: BLEND_TILE (16 or 8 px), BLEND_TILE_H (the tile height, 8 or 16 px; default BLEND_TILE),
//   PPT (pixels per invocation: 8 or 16 take the row-ratio path, FAST_ROWS; divides BLEND_TILE_H),
//   STEP = BLEND_TILE_H / PPT, BATCH (the subgroup size, 8 on AVX2 llvmpipe), MODE (0 rgb, 1 depth
//   colour-mapped, 2 alpha), LOCKSTEP (optional: a subgroup runs as one SIMD vector, llvmpipe; see
//   DYNAMIC_TILES), OUT_BUFFERS (pixel_out.glsl), NO_DEPTH
//   (modes 0 and 2: no depth accumulated or stored, for callers that only show colour),
//   IMAGE_INPUTS (optional, see the bindings), COUNT_BLENDS (optional: count the pixel blends into
//   counters[1]; three vector ops a pixel row, the blend took 0.922x the time without them),
//   DYNAMIC_TILES with GRAB_BUDGET (loop iterations after which a work group takes no more tiles)
//   and NEXT_TILE (the counter's index; see Tiles).
// Reference: REFERENCE.md 1.4 (INRIA forward.cu renderCUDA; gsplat Common.h: MAX_ALPHA 0.99,
//   ALPHA_THRESHOLD 1/255, TRANSMITTANCE_THRESHOLD 1e-4); twin: renderer/torch_backend/rasterize.py.
//   Colour map: colormap.glsl (twin renderer/colormap.py).
#if BATCH > 1
#extension GL_ARB_shader_group_vote : require
#endif
#include "gs_common.glsl"
#include "colormap.glsl"

#ifndef BLEND_TILE_H
#define BLEND_TILE_H BLEND_TILE   // tile height (px); STEP * PPT
#endif
// STEP (invocations per column) is given as a define: the layout qualifier needs a literal.
layout(local_size_x = BLEND_TILE, local_size_y = STEP) in;

layout(std430, binding = 0) readonly buffer Hist { uint hist[]; };
layout(std430, binding = 1) buffer Counters { uint counters[]; };
#ifdef IMAGE_INPUTS
// CPU rasterizers: the pair ids and records through image loads, which llvmpipe runs as plain
// per-lane reads where a texelFetch goes through its sampler code (a random vec4 fetch took 0.51x
// the time; the blend 0.937x at 100k Gaussians, 0.845x at 300k, bench scene, 8 x 16 px tiles).
layout(r32ui, binding = 2) readonly uniform uimage2D pair_ids;
layout(rgba32f, binding = 3) readonly uniform image2D rec0;
layout(rgba32ui, binding = 4) readonly uniform uimage2D rec1;
#define FETCH(tex, c) imageLoad(tex, c)
#else
uniform usampler2D pair_ids;
uniform sampler2D rec0;
uniform usampler2D rec1;
#define FETCH(tex, c) texelFetch(tex, c, 0)
#endif

uniform ivec2 image_size;
#include "pixel_out.glsl"
#include "group_tile.glsl"
uniform uint tiles_x;
uniform uint range_base;   // tile t's pairs end at hist[range_base + t] (binning.py Bins)
uniform vec3 background;
uniform vec2 depth_range;   // mode 1: (near, far) of the colour map

const float MAX_ALPHA = 0.99;
const float ALPHA_MIN = 1.0 / 255.0;
const float T_MIN = 1e-4;
const float DEPTH_EPS = 1e-6;   // alpha below which a pixel has no depth (torch twin: DEPTH_EPS)

#ifdef DYNAMIC_TILES
#if defined(LOCKSTEP) && BLEND_TILE * STEP > BATCH
// llvmpipe runs a work group's subgroups one after another between barriers: without one, the
// first would take every tile before the others read s_tile.
#error "DYNAMIC_TILES with LOCKSTEP needs a work group of one subgroup"
#endif
#endif

float T[PPT];   // transmittance; -T once the pixel has stopped (T would drop below T_MIN)
vec3 C[PPT];
float D[PPT];
uint blended = 0u;

// 2^x for x in [-126, 127] (callers clamp, or select 0 below -126): 2^floor(x) put into the
// exponent bits of a cubic for 2^f on [0, 1) (relative error at most 1.04e-4, exact at f = 0 and
// 1; coefficients fitted here by weighted least squares). llvmpipe's exp2 is a degree-5 polynomial
// with clamps of its own; with this the blend took 0.971x the time (100k Gaussians, 8 x 16 px
// tiles, same process). The twin's exp differs by the 1e-4 in alpha: far below a 1/255 step.
float exp2_cubic(float x) {
    float i = floor(x);
    float f = x - i;
    float p = 1.0 + f * (0.69542435 + f * (0.22630768 + f * 0.07826797));
    return intBitsToFloat(floatBitsToInt(p) + (int(i) << 23));
}

// One pixel row k of blend_one: e = opacity * exp(-power / 2) there (before the 0.99 cap).
// Branch-free (llvmpipe runs both sides of an `if` under a lane mask): a finished pixel keeps -T.
// alpha >= 1/255 only. No "power > 0" test: the quadratic form is positive definite, so only
// rounding next to the mean could make it fail, and the twin never skips there.
#ifdef NO_DEPTH
#define ADD_DEPTH(k, w)
#else
#define ADD_DEPTH(k, w) D[k] += (w) * col.a;
#endif
#ifdef COUNT_BLENDS
#define COUNT(w) blended += (w) > 0.0 ? 1u : 0u;   /* = take && in_ (w >= 1e-4 / 255 there), one test fewer */
#else
#define COUNT(w)
#endif
#define ROW(k, e) { \
        bool in_ = (e) >= ALPHA_MIN; \
        float a = in_ ? min(MAX_ALPHA, (e)) : 0.0; \
        float t = T[k]; \
        float w = a * t; \
        float nt = t - w; \
        bool take = nt >= T_MIN;   /* false once stopped (t < 0) and where this one stops it */ \
        w = take ? w : 0.0; \
        C[k] += w * col.rgb; \
        ADD_DEPTH(k, w) \
        T[k] = take ? nt : -abs(t);   /* a = 0: a live pixel keeps nt = t, a stopped one -|t| */ \
        COUNT(w) }

// A pair's record: r0 = (mean2d, q.x, q.y), r1 = (q.z, lo, depth, RGB9E5 colour bits) as floats,
// with q = (a, b, c) of the log2 quadratic log2(alpha) = lo + a dx^2 + b dx dy + c dy^2 (dx, dy:
// mean - pixel centre) and lo = log2(opacity); (fx, fy): this invocation's first pixel centre.
#if PPT == 8 || PPT == 16
#define FAST_ROWS
#endif

#ifdef FAST_ROWS
// Per pair, its record becomes terms for the tile's columns (pair_terms): with the column
// x = 0..BLEND_TILE-1 of this lane (origin (x0, fy): the pixel centre of its tile's column 0 and
// of this lane's first row), m = mean.x - x0 (dx = m - x) and d = mean.y - fy - 3
// (dy at row 3), alpha at row 3 of column x is 2^p(x) with p(x) = V0 + x (V1 + a x), V0 = lo +
// m (a m + b d) + c d^2, V1 = -(2 a m + b d). exp2 at row 3 only (an exp2 per row took 10% more of
// the blend): a row up multiplies alpha by 2^(p(dy+1) - p(dy)) = 2^(b dx + c (2 dy + 1)), at row 3
// 2^(W0 - b x) with W0 = b m + c (2 d + 1); each further row's factor is g = 2^(2c) times the last,
// and the first factor down is g over the first one up. Where alpha reaches 1/255 in some row of
// the column, p at row 3 is above -90 (the dilation keeps c >= -log2(e) / 0.6, and the row is at
// most four away), so 2^p there does not underflow; elsewhere row 3 may be flushed to 0 (p < -126)
// and the factor up is clamped (the one down with it), so nothing reaches 1/255 that should not.
// PPT 8: s0 = (V0, V1, a, W0), s1 = (b, g, depth, colour bits); PPT 16: the inputs of these terms
// (pair_setup16 below). `past` (beyond the tile's list): lo = -1e30, which blends nothing.

// Row terms (V0, V1, W0) of an 8-row block whose row 3 is d below the mean (d = mean.y - row 3).
vec3 row_terms(float lo, float m, float d, float a, float b, float c) {
    return vec3(lo + m * (a * m + b * d) + c * d * d, -(2.0 * a * m + b * d), b * m + c * (2.0 * d + 1.0));
}

void pair_terms(vec4 r0, vec4 r1, bool past, float x0, float fy, out vec4 s0, out vec4 s1) {
    float m = r0.x - x0;
    float a = r0.z, b = r0.w, c = r1.x;
#if PPT == 8
    vec3 t = row_terms(past ? -1e30 : r1.y, m, r0.y - fy - 3.0, a, b, c);
    s0 = vec4(t.xy, a, t.z);
    s1 = vec4(b, exp2_cubic(max(2.0 * c, -126.0)), r1.zw);
#else
    // PPT 16: the terms of each 8-row block are computed per lane (pair_setup16) from these, with
    // the expressions above, so that the image is the one of 8 x 8 px tiles bit for bit.
    s0 = vec4(m, r0.y, a, b);
    s1 = vec4(c, past ? -1e30 : r1.y, r1.zw);
#endif
}

// Column x's alpha at row 3 (before the cap), first factor up, g and colour (rgb, depth).
void pair_setup(vec4 s0, vec4 s1, float x, out float e3, out float up, out float g, out vec4 col) {
    float p = s0.x + x * (s0.y + s0.z * x);
    e3 = p < -126.0 ? 0.0 : exp2_cubic(p);
    g = s1.y;
    up = exp2_cubic(clamp(s0.w - s1.x * x, -126.0, 126.0));
    col = vec4(unpack_rgb9e5(floatBitsToUint(s1.w)), s1.z);
}

#if PPT == 16
// PPT 16: rows 0 to 7 and 8 to 15 as two blocks anchored at rows 3 and 11 (fy and fy + 8: the
// first pixel rows of the 8 x 8 tiles they would be), both from one pair's loads: on llvmpipe
// those are the costly part, so a pair serves 16 rows for them.
void block_setup(vec4 s0, vec4 s1, float x, float fy, out float e3, out float up) {
    vec3 t = row_terms(s1.y, s0.x, s0.y - fy - 3.0, s0.z, s0.w, s1.x);
    float p = t.x + x * (t.y + s0.z * x);
    e3 = p < -126.0 ? 0.0 : exp2_cubic(p);
    up = exp2_cubic(clamp(t.z - s0.w * x, -126.0, 126.0));
}

void pair_setup16(vec4 s0, vec4 s1, float x, float fy, out float e3, out float up, out float e11,
                  out float up11, out float g, out vec4 col) {
    block_setup(s0, s1, x, fy, e3, up);
    block_setup(s0, s1, x, fy + 8.0, e11, up11);
    g = exp2_cubic(max(2.0 * s1.x, -126.0));
    col = vec4(unpack_rgb9e5(floatBitsToUint(s1.w)), s1.z);
}
#endif

// Rows o + 3 to o, then (rows_down) rows o + 4 to o + 7 (o: 0, or 8 for PPT 16's second half).
void rows_up(const int o, float e, float up, float g, vec4 col) {
    ROW(o + 3, e)
    e *= up; up *= g;
    ROW(o + 2, e)
    e *= up; up *= g;
    ROW(o + 1, e)
    e *= up;
    ROW(o, e)
}

void rows_down(const int o, float e3, float up, float g, vec4 col) {
    float down = g / up;
    float e = e3 * down; down *= g;
    ROW(o + 4, e)
    e *= down; down *= g;
    ROW(o + 5, e)
    e *= down; down *= g;
    ROW(o + 6, e)
    e *= down;
    ROW(o + 7, e)
}
#endif

// Blend one Gaussian (its record r0, r1) into this invocation's PPT pixels; x0, x: as pair_terms.
void blend_one(vec4 r0, vec4 r1, float x0, float x, float fx, float fy) {
#if PPT == 8
    vec4 s0, s1;
    pair_terms(r0, r1, false, x0, fy, s0, s1);
    float e3, up, g;
    vec4 col;
    pair_setup(s0, s1, x, e3, up, g, col);
    rows_up(0, e3, up, g, col);
    rows_down(0, e3, up, g, col);
#elif PPT == 16
    vec4 s0, s1;
    pair_terms(r0, r1, false, x0, fy, s0, s1);
    float e3, up, e11, up11, g;
    vec4 col;
    pair_setup16(s0, s1, x, fy, e3, up, e11, up11, g, col);
    rows_up(0, e3, up, g, col);
    rows_down(0, e3, up, g, col);
    rows_up(8, e11, up11, g, col);
    rows_down(8, e11, up11, g, col);
#else
    float dx = r0.x - fx, dy0 = r0.y - fy;
    vec3 q = vec3(r0.zw, r1.x);
    vec4 col = vec4(unpack_rgb9e5(floatBitsToUint(r1.w)), r1.z);
    float A = r1.y + q.x * dx * dx;
    float B = q.y * dx;
    for (int k = 0; k < PPT; ++k) {
        float dy = dy0 - float(k);
        float p = A + dy * (B + q.z * dy);
        float e = p < -126.0 ? 0.0 : exp2_cubic(p);
        ROW(k, e)
    }
#endif
}

#if BATCH > 1
#define EACH(M) M(0) M(1) M(2) M(3) EACH4(M) EACH8(M)
#if BATCH > 4
#define EACH4(M) M(4) M(5) M(6) M(7)
#else
#define EACH4(M)
#endif
#if BATCH > 8
#define EACH8(M) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#else
#define EACH8(M)
#endif
#endif

// Pair p's record, loaded by every lane (p at or past end: the tile's last pair, or pair 0 for
// an empty tile, which the caller marks past: it blends nothing).
void load_pair(uint p, uint end, out vec4 r0, out vec4 r1) {
    ivec2 pc = pair_coord(FETCH(pair_ids, pair_coord(min(p, max(end, 1u) - 1u))).r);
    r0 = FETCH(rec0, pc);
    r1 = uintBitsToFloat(FETCH(rec1, pc));   // (q.z, log2 o, depth, colour bits)
}

#ifdef FAST_ROWS
// Terms of pair base + j of the batch (pair_terms); uses blend_tile's locals.
#define TERMS(j) vec4 s0, s1; { uint p = base + uint(j); vec4 r0, r1; load_pair(p, end, r0, r1); \
                                pair_terms(r0, r1, p >= end, x0, fy, s0, s1); }
#endif
#if BATCH > 1 && PPT == 8
// A batch in three phases: every pair's setup, then rows 3 to 0 of each pair in order,
// then rows 4 to 7 (same arithmetic as blend_one, so the same image). Half the pixels' state (T,
// C, D of four rows) stays in registers through a phase; pair after pair over all eight rows
// kept it in memory: the blend took 0.95x to 0.96x as long (100k, 300k Gaussians; 0.97x at 10k).
float b_e3[BATCH], b_up[BATCH], b_g[BATCH];
vec4 b_col[BATCH];
#define SETUP(j) { TERMS(j) pair_setup(s0, s1, x, b_e3[j], b_up[j], b_g[j], b_col[j]); }
#define UP(j) rows_up(0, b_e3[j], b_up[j], b_g[j], b_col[j]);
#define DOWN(j) rows_down(0, b_e3[j], b_up[j], b_g[j], b_col[j]);
#elif BATCH > 1 && PPT == 16
// The same with rows 8 to 15 as two more phases.
float b_e3[BATCH], b_up[BATCH], b_e11[BATCH], b_up11[BATCH], b_g[BATCH];
vec4 b_col[BATCH];
#define SETUP(j) { TERMS(j) pair_setup16(s0, s1, x, fy, b_e3[j], b_up[j], b_e11[j], b_up11[j], b_g[j], \
                                         b_col[j]); }
#define UP(j) rows_up(0, b_e3[j], b_up[j], b_g[j], b_col[j]);
#define DOWN(j) rows_down(0, b_e3[j], b_up[j], b_g[j], b_col[j]);
#define UP11(j) rows_up(8, b_e11[j], b_up11[j], b_g[j], b_col[j]);
#define DOWN11(j) rows_down(8, b_e11[j], b_up11[j], b_g[j], b_col[j]);
#endif

// Blends tile wg; returns the loop iterations it took (its batches). A tile past the grid (the
// last grab of FOR_EACH_TILE, run with every lane masked) reads the last tile's range.
uint blend_tile(uvec2 wg) {
    uint tile = min(wg.y * tiles_x + wg.x, num_tiles - 1u);
    uint end = hist[range_base + tile];
    uint start = tile == 0u ? 0u : hist[range_base + tile - 1u];
    int px = int(wg.x * BLEND_TILE + gl_LocalInvocationID.x);
    int py0 = int(wg.y * BLEND_TILE_H + gl_LocalInvocationID.y * PPT);

    for (int k = 0; k < PPT; ++k) {
        // Pixels outside the image start stopped.
        bool outside = px >= image_size.x || py0 + k >= image_size.y;
        T[k] = outside ? -1.0 : 1.0; C[k] = vec3(0.0); D[k] = 0.0;
    }
    float fx = float(px) + 0.5;
    float fy = float(py0) + 0.5;
    float x0 = float(wg.x * BLEND_TILE) + 0.5, x = float(gl_LocalInvocationID.x);
    bool live = true;
    blended = 0u;
#if BATCH > 1
    // do-while: llvmpipe runs a loop body once more, masked, when its condition fails at the top
    // (0.84x the blend at 10k Gaussians, 0.97x at 100k); an empty tile runs it once with every
    // pair past its end (which blends nothing).
    uint base = start, iters = 0u;
    do {
        ++iters;
        // Unrolled by hand (EACH(M): M(j) for every pair j of the batch): no loop bookkeeping.
#ifdef FAST_ROWS
        EACH(SETUP)
        EACH(UP)
        EACH(DOWN)
#if PPT == 16
        EACH(UP11)
        EACH(DOWN11)
#endif
#else
        // Past the tile's end: a log2(opacity) that fails every test.
#define PAIR(j) { uint p = base + uint(j); vec4 r0, r1; load_pair(p, end, r0, r1); \
                  blend_one(r0, vec4(r1.x, p < end ? r1.y : -1e30, r1.zw), x0, x, fx, fy); }
        EACH(PAIR)
#endif
        live = false;
        for (int k = 0; k < PPT; ++k) live = live || T[k] > 0.0;
        base += uint(BATCH);
    } while (base < end && anyInvocationARB(live));
    // Left the loop with pairs to go and a pixel open: only llvmpipe's loop limit does that.
    if (base < end && anyInvocationARB(live) && gl_LocalInvocationIndex == 0u) atomicAdd(counters[6], 1u);
#else
    // No subgroups (BATCH 1): a pair at a time.
    for (uint p = start; p < end && live; ++p) {
        vec4 r0, r1;
        load_pair(p, end, r0, r1);
        blend_one(r0, r1, x0, x, fx, fy);
        live = false;
        for (int k = 0; k < PPT; ++k) live = live || T[k] > 0.0;
    }
#endif
#ifdef COUNT_BLENDS
    if (blended > 0u) atomicAdd(counters[1], blended);
#endif

    for (int k = 0; k < PPT; ++k) {
        int py = py0 + k;
        float tk = abs(T[k]);
        float a = 1.0 - tk;
        float depth = a > DEPTH_EPS ? D[k] / a : 0.0;
        vec3 rgb;
        if (MODE == 1) {  // MODE is a define: llvmpipe would run every branch of a uniform `if`
            float t = 1.0 - (depth - depth_range.x) / max(depth_range.y - depth_range.x, 1e-9);
            rgb = turbo(t) * a + background * (1.0 - a);
        } else if (MODE == 2) {
            rgb = vec3(a) + background * (1.0 - a);
        } else {
            rgb = C[k] + tk * background;
        }
        // A masked store, not `continue`: a loop with a continue is not unrolled, and an array
        // indexed by a loop variable lives in memory for the whole shader on llvmpipe (every
        // T[k], C[k] access a per-lane gather or scatter: the blend took 1.35x as long).
#ifdef NO_DEPTH
        if (px < image_size.x && py < image_size.y) STORE_RGBA(px, py, vec4(rgb, a))
#else
        if (px < image_size.x && py < image_size.y) STORE_PIXEL(px, py, vec4(rgb, a), depth)
#endif
    }
#if BATCH > 1
    return iters;
#else
    return max(end - start, 1u);   // (an empty list still runs the loop once, masked)
#endif
}

void main() {
#ifdef DYNAMIC_TILES
    FOR_EACH_TILE(counters[NEXT_TILE], blend_tile)
#else
    blend_tile(group_tile());
#endif
}
