#version 430
// cvx_project.comp: one invocation per convex splat: centre projection and culling, projection of
// its NPTS points, 2D hull (the reference's angle sort about the lowest-y point, then a lower and
// an upper Graham pass, "pop while cross <= 0"), edge lines, the 3DCS bounding radius and tile
// rectangle, SH colour, sort key. Everything per convex stays in registers (NPTS <= 8).
// Bindings (std430 storage buffers):
//   0 geom  vec4[N * (NPTS + 1)]  per convex: NPTS points (x, y, z, 0), then (delta, sigma, opacity, 0)
//   1 sh    float[N*K*3]  SH coefficients, INRIA order, coefficient-major then channel (sh.glsl; K = SH_K)
//   image 0 rec (rgba32f, PAIR_TEX_W wide): out, CVX_REC texels per convex (cvx_common.glsl)
//   3 rects uvec4[N]  out: tile rectangle in blend tiles (BLEND_TILE px), packed, and FULL_SPANS
//                     (whole rows; gs_common.glsl)
//   4 keys  uint[N]   out: depth sort key (float bits of the centre's view z; INVALID_KEY: culled
//                     or touching no tile)
//   5 vals  uint[N]   out: convex index
//   6 counters uint[] [0] += convexes with a key, [2] += (tile, convex) pairs, [3] += visible
//                     (passed the twin's culling, on screen or not: the twin's "visible")
// Defines: SH_K (sh.glsl), NPTS, BLEND_TILE (16: the twin's 16 px getRect tiles exactly; 8: 8 px
//   sub-tiles of that rectangle that the convex can reach with alpha >= 1/255).
// References: REFERENCE.md 4; convexsplatting/diff-convex-rasterization > cuda_rasterizer/forward.cu
// > preprocessCUDA (near 0.2, 1e4 px cull, bounds), auxiliary.h (getRect); twin:
// renderer/torch_backend/convex.py project_convex.
#include "gs_common.glsl"
#include "cvx_common.glsl"

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Geom { vec4 geom[]; };
layout(rgba32f, binding = 0) writeonly uniform image2D rec;
layout(std430, binding = 3) writeonly buffer Rects { uvec4 rects[]; };
layout(std430, binding = 4) writeonly buffer Keys { uint keys[]; };
layout(std430, binding = 5) writeonly buffer Vals { uint vals[]; };
layout(std430, binding = 6) buffer Counters { uint counters[]; };
#include "sh.glsl"

uniform uint n;
uniform mat3 view_rot;      // world -> camera rotation (OpenCV axes)
uniform vec3 view_trans;
uniform vec3 cam_pos;       // camera centre, world
uniform vec4 intrinsics;    // fx, fy, cx, cy
uniform ivec2 image_size;
uniform uvec2 tiles;        // 16 px tiles_x, tiles_y
uniform int sh_degree;      // degree evaluated (<= the stored one)
uniform int sh_quirk;       // 1: SH direction towards vec3(centre.z) as the 3DCS rasterizer

const float NEAR = 0.2;                 // auxiliary.h in_frustum_convex
const float MAX_PROJECTED_DISTANCE = 1e4;
const float BOUND_PUSH = 2.1;           // forward.cu: lines pushed by 2.1 / (z^2 delta sigma)
const float ANGLE_LO = 0.1, ANGLE_HI = 3.0;
const float ALPHA_MIN = 1.0 / 255.0;

void cull(uint g) {
    keys[g] = INVALID_KEY;
    vals[g] = g;
    rects[g] = uvec4(0u, 0u, FULL_SPANS, 0u);
}

// (b - a) x (p - a): positive for a counter-clockwise turn in (x, y).
float cross2(vec2 a, vec2 b, vec2 p) {
    return (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x);
}

void main() {
    uint g = gl_GlobalInvocationID.x;
    if (g >= n) return;
    uint base = g * uint(NPTS + 1);
    vec3 pw[NPTS];
    vec3 sum = vec3(0.0);
    for (int k = 0; k < NPTS; ++k) {
        pw[k] = geom[base + uint(k)].xyz;
        sum += pw[k];
    }
    vec4 par = geom[base + uint(NPTS)];
    float delta = par.x, sigma = par.y, opacity = par.z;
    vec3 centre = sum / float(NPTS);
    vec3 cc = view_rot * centre + view_trans;
    float z = cc.z;
    if (!(z > NEAR)) { cull(g); return; }

    float fx = intrinsics.x, fy = intrinsics.y, cx = intrinsics.z, cy = intrinsics.w;
    vec2 c2d = vec2(fx * cc.x / z + cx, fy * cc.y / z + cy);
    vec2 xy[NPTS];
    float dist = 0.0;
    bool finite = true;
    for (int k = 0; k < NPTS; ++k) {
        vec3 pc = view_rot * pw[k] + view_trans;
        float pz = abs(pc.z) > 1e-7 ? pc.z : 1e-7;
        xy[k] = vec2(fx * pc.x / pz + cx, fy * pc.y / pz + cy);
        finite = finite && !any(isnan(xy[k])) && !any(isinf(xy[k]));
        dist = max(dist, length(xy[k] - c2d));
    }
    if (!finite || !(dist <= MAX_PROJECTED_DISTANCE)) { cull(g); return; }

    // Angle sort about the lowest-y point (then lowest x), stable: an insertion sort.
    int ref = 0;
    for (int k = 1; k < NPTS; ++k) {
        if (xy[k].y < xy[ref].y || (xy[k].y == xy[ref].y && xy[k].x < xy[ref].x)) ref = k;
    }
    float ang[NPTS];
    vec2 sp[NPTS];
    for (int k = 0; k < NPTS; ++k) {
        vec2 d = xy[k] - xy[ref];
        // GLSL leaves atan(0, 0) undefined; atan2 gives 0 there.
        ang[k] = k == ref ? -1.0 : ((d.x == 0.0 && d.y == 0.0) ? 0.0 : atan(d.y, d.x));
        sp[k] = xy[k];
    }
    for (int i = 1; i < NPTS; ++i) {
        for (int j = i; j > 0; --j) {
            if (!(ang[j - 1] > ang[j])) break;
            float ta = ang[j - 1]; ang[j - 1] = ang[j]; ang[j] = ta;
            vec2 tp = sp[j - 1]; sp[j - 1] = sp[j]; sp[j] = tp;
        }
    }
    // Lower then upper pass over the sorted list (forward.cu's scan), hull closed.
    int hull[2 * NPTS];
    int size = 0;
    for (int i = 0; i < NPTS; ++i) {
        for (int it = 0; it < NPTS; ++it) {
            if (size >= 2 && cross2(sp[hull[max(size - 2, 0)]], sp[hull[max(size - 1, 0)]], sp[i]) <= 0.0) size -= 1;
            else break;
        }
        hull[size] = i;
        size += 1;
    }
    int floor_upper = size + 1;
    for (int i = NPTS - 2; i >= 0; --i) {
        for (int it = 0; it < NPTS; ++it) {
            if (size >= floor_upper && cross2(sp[hull[max(size - 2, 0)]], sp[hull[max(size - 1, 0)]], sp[i]) <= 0.0) size -= 1;
            else break;
        }
        hull[size] = i;
        size += 1;
    }
    int n_edges = size - 1;
    if (n_edges < 3) { cull(g); return; }
    int ne = min(n_edges, NPTS);

    // Edge lines n . p + c (negative inside), pushed lines for the bounds, consecutive
    // intersections without wrap-around (as forward.cu and the twin).
    vec2 nrm[NPTS];
    vec2 p1s[NPTS];
    float off[NPTS];
    for (int e = 0; e < NPTS; ++e) {
        vec2 p1 = sp[hull[min(e, size - 1)]];
        vec2 p2 = sp[hull[min(e + 1, size - 1)]];
        nrm[e] = vec2(p2.y - p1.y, -(p2.x - p1.x));
        off[e] = -(nrm[e].x * p1.x + nrm[e].y * p1.y);
        p1s[e] = p1;
    }
    float push = BOUND_PUSH / (z * z * delta * sigma);
    float sum_d = 0.0;
    int counter = 0;
    float ob = 0.0;
    for (int e = 0; e < ne; ++e) {
        float side = nrm[e].x * c2d.x + nrm[e].y * c2d.y + off[e];
        float oa = side < 0.0 ? off[e] - push : off[e] + push;
        if (e > 0) {
            vec2 na = nrm[e], nb = nrm[e - 1];
            float den = na.x * nb.y - na.y * nb.x;
            float den_s = den != 0.0 ? den : 1.0;
            float ix = (-oa * nb.y + ob * na.y) / den_s;
            float iy = (-ob * na.x + oa * nb.x) / den_s;
            float cosang = dot(na, nb) / max(length(na) * length(nb), 1e-30);
            float a = acos(clamp(cosang, -1.0, 1.0));
            if (a > ANGLE_LO && a < ANGLE_HI && den != 0.0) {
                sum_d += sqrt((ix - c2d.x) * (ix - c2d.x) + (iy - c2d.y) * (iy - c2d.y));
                counter += 1;
            }
        }
        ob = oa;
    }
    if (counter == 0) { cull(g); return; }
    float radius = ceil(max(dist * 1.1, sum_d / float(counter)));
    // The twin casts to int32 (out-of-range casts give INT_MIN on x86, culled as radius <= 0).
    if (!(radius > 0.0 && radius < 2147483648.0)) { cull(g); return; }
    atomicAdd(counters[3], 1u);  // visible, as the twin counts it

    // Tile rectangle (auxiliary.h getRect) in double so boundary cases round as the float64 twin.
    dvec2 m = dvec2(c2d);
    double r = double(radius);
    dvec2 lo_f = clamp(floor((m - r) / 16.0LF), dvec2(-1.0LF), dvec2(1073741824.0LF));
    dvec2 hi_f = clamp(floor((m + r + 15.0LF) / 16.0LF), dvec2(-1.0LF), dvec2(1073741824.0LF));
    ivec2 tmax = ivec2(tiles);
    ivec2 rmin = min(max(ivec2(lo_f), ivec2(0)), tmax);
    ivec2 rmax = min(max(ivec2(hi_f), ivec2(0)), tmax);
    if (rmax.x <= rmin.x || rmax.y <= rmin.y) { cull(g); return; }

    // Lines in the blend's form: v_k = z delta L_k(p), relative to the centre (less cancellation).
    float zd = z * delta;
    vec3 lines[NPTS];
    for (int e = 0; e < NPTS; ++e) {
        lines[e] = e < ne ? zd * vec3(nrm[e], dot(nrm[e], c2d - p1s[e])) : vec3(0.0, 0.0, CVX_NO_EDGE);
    }
    float zs = z * sigma;

#if BLEND_TILE == 8
    // 8 px sub-tiles inside the 16 px rectangle, kept where a pixel centre can get alpha >= 1/255:
    // o I >= 1/255 <=> phi <= ln(255 o - 1) / (z sigma), and phi >= max_k v_k, so such pixels lie
    // in the polygon {v_k <= phi_cut for all k}. Its bounding box comes from the feasible pairwise
    // line intersections (its vertices). Pixels outside it are skipped by the blend's alpha test
    // anyway: the image is unchanged, fewer pixels test this convex.
    float u = 255.0 * opacity;
    if (u < 0.999) {
        rmin = rmax = ivec2(0);  // alpha <= o < 1/255 everywhere
    } else if (u > 1.001) {
        float phi_cut = log(u - 1.0) / zs;
        phi_cut += 1e-4 * abs(phi_cut) + 1e-5;
        vec2 bmin = vec2(3e38), bmax = vec2(-3e38);
        for (int i = 0; i < NPTS; ++i) {
            for (int j = i + 1; j < NPTS; ++j) {
                if (j >= ne) continue;
                vec3 li = lines[i], lj = lines[j];
                float det = li.x * lj.y - lj.x * li.y;
                if (det == 0.0) continue;
                float ri = phi_cut - li.z, rj = phi_cut - lj.z;
                vec2 q = vec2(ri * lj.y - rj * li.y, li.x * rj - lj.x * ri) / det;
                bool ok = true;
                for (int k = 0; k < NPTS; ++k) {
                    vec3 lk = lines[k];
                    float v = lk.x * q.x + lk.y * q.y + lk.z;
                    float tol = 1e-3 * (abs(phi_cut) + abs(lk.x * q.x) + abs(lk.y * q.y) + abs(lk.z)) + 1e-6;
                    ok = ok && (k >= ne || v <= phi_cut + tol);
                }
                if (ok && !any(isnan(q)) && !any(isinf(q))) {
                    bmin = min(bmin, q);
                    bmax = max(bmax, q);
                }
            }
        }
        if (bmin.x <= bmax.x) {
            vec2 margin = 0.05 + 1e-4 * (bmax - bmin + abs(c2d));
            vec2 lo = c2d + bmin - margin, hi = c2d + bmax + margin;
            ivec2 lo8 = ivec2(clamp(ceil((lo - 7.5) / 8.0), vec2(-1.0), vec2(65536.0)));
            ivec2 hi8 = ivec2(clamp(floor((hi - 0.5) / 8.0) + 1.0, vec2(-1.0), vec2(65536.0)));
            ivec2 grid8 = (image_size + 7) / 8;
            rmin = clamp(max(2 * rmin, lo8), ivec2(0), grid8);
            rmax = clamp(min(2 * rmax, hi8), ivec2(0), grid8);
            rmax = max(rmax, rmin);
        } else {
            // No vertex found (a degenerate polygon, or no pixel reaches 1/255): keep the
            // 16 px rectangle, the blend's alpha test decides.
            ivec2 grid8 = (image_size + 7) / 8;
            rmin = min(2 * rmin, grid8);
            rmax = min(2 * rmax, grid8);
        }
    } else {
        ivec2 grid8 = (image_size + 7) / 8;
        rmin = min(2 * rmin, grid8);
        rmax = min(2 * rmax, grid8);
    }
    if (rmax.x <= rmin.x || rmax.y <= rmin.y) { cull(g); return; }
#endif

    vec3 target = sh_quirk != 0 ? vec3(centre.z) : centre;
    vec3 dir = normalize(target - cam_pos);
    vec3 rgb = max(eval_sh(g, sh_degree, dir) + 0.5, vec3(0.0));

    imageStore(rec, cvx_coord(g, 0), vec4(c2d, zs, opacity));
    imageStore(rec, cvx_coord(g, 1), vec4(rgb, z));
    float pk[4 * CVX_EDGE_TEXELS];
    for (int e = 0; e < NPTS; ++e) {
        pk[3 * e] = lines[e].x;
        pk[3 * e + 1] = lines[e].y;
        pk[3 * e + 2] = lines[e].z;
    }
    for (int i = 3 * NPTS; i < 4 * CVX_EDGE_TEXELS; ++i) pk[i] = 0.0;
    for (int j = 0; j < CVX_EDGE_TEXELS; ++j) {
        imageStore(rec, cvx_coord(g, 2 + j),
                   vec4(pk[4 * j], pk[4 * j + 1], pk[4 * j + 2], pk[4 * j + 3]));
    }
    rects[g] = uvec4(uint(rmin.x) | (uint(rmin.y) << 16), uint(rmax.x) | (uint(rmax.y) << 16),
                     FULL_SPANS, 0u);
    atomicAdd(counters[0], 1u);
    atomicAdd(counters[2], uint(rmax.x - rmin.x) * uint(rmax.y - rmin.y));
    keys[g] = floatBitsToUint(z);
    vals[g] = g;
}
