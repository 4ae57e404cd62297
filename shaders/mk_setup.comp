#version 430
// mk_setup.comp: per Gaussian, the marker modes' culling, record, pixel box and work items.
// One invocation per Gaussian. Culling copies the torch twin exactly: the EWA projection of the
// rgb pass (eps2d 0.3, z in [near, far], det > 0, finite, 3-sigma tile rectangle touching the
// image) decides "visible"; then opacity >= min_opacity; ELLIPSOIDS also needs the undilated
// projection (eps2d 0) to pass the same tests and scans only the 16 px tiles that the twin bins
// the Gaussian into (radius ceil(1.25 k sqrt(lambda_max) + 2)), intersected with the box of the
// ellipsoid's silhouette ellipse (plus a 1 px margin) when the ellipsoid lies in front of the
// camera plane. A camera inside the ellipsoid sees no hit (the twin keeps the nearer root only).
// Bindings (std430 storage buffers):
//   0 geom     vec4[3N]   per Gaussian (mean.xyz, opacity), (quat wxyz), (scale.xyz, 0), or with
//                         HAS_COVARS (c00, c01, c02, c11), (c12, c22, 0, 0) (gs_project.comp's layout)
//   1 sh       float[N*K*3]   SH coefficients; only the DC term (coefficient 0) is read
//   2 recs     vec4[6N]   out: records (mk_common.glsl)
//   3 boxes    uvec4[N]   out: pixel boxes and their chunking (mk_common.glsl)
//   4 items    uvec2[capacity]  out: work items (g, chunk), in any order
//   5 counters uint[4]    [0] += work items (even past capacity: the host grows and reruns),
//                         [1] += visible, [2] += Gaussians with a non-empty box, [3] += box pixels
// Defines: ELLIPSOIDS (0: points, 1: ellipsoids/normals), HAS_COVARS, CHUNK_PX (pixels per work
//   item, at least), MAX_CHUNKS (work items per Gaussian, about at most).
// References: renderer/torch_backend/project.py (project_gaussians), tiles.py (tile_rects),
// gaussians.py (_render_points, _render_ellipsoids); the silhouette conic of a quadric seen from
// a camera centre: Hartley & Zisserman, Multiple View Geometry, 2nd ed., section 8.3.
#include "mk_common.glsl"

layout(local_size_x = 128) in;

layout(std430, binding = 0) readonly buffer Geom { vec4 geom[]; };
layout(std430, binding = 1) readonly buffer SH { float sh[]; };
layout(std430, binding = 2) writeonly buffer Recs { vec4 recs[]; };
layout(std430, binding = 3) writeonly buffer Boxes { uvec4 boxes[]; };
layout(std430, binding = 4) writeonly buffer Items { uvec2 items[]; };
layout(std430, binding = 5) buffer Counters { uint counters[]; };

uniform uint n;
uniform uint capacity;      // items[] length
uniform mat3 view_rot;      // world -> camera rotation (OpenCV axes)
uniform vec3 view_trans;
uniform vec4 intrinsics;    // fx, fy, cx, cy
uniform ivec2 image_size;
uniform vec2 near_far;
uniform float splat_scale;
uniform float min_opacity;
uniform int sh_k;           // SH coefficients stored per Gaussian
uniform float point_r2;     // points: radius^2 (float32 of the double, as the twin compares)
uniform int point_k;        // points: ceil(radius), the half-size of the scanned square
uniform float sigma2;       // ellipsoids: k^2
uniform float box_scale;    // ellipsoids: 1.25 k (the twin's bound)

const float EPS2D = 0.3;  // the rgb pass's dilation (project.py, gs_project.comp)

bool finite(float x) { return !isnan(x) && !isinf(x); }

// The twin's tile_rects + "touches": 16 px tile rectangle of radius r around m, in double.
bool touches(vec2 m, float r, out ivec2 rmin, out ivec2 rmax) {
    rmin = rmax = ivec2(0);
    if (!(r > 0.0)) return false;
    ivec2 tiles = (image_size + 15) / 16;
    dvec2 md = dvec2(m);
    double rd = double(r);
    dvec2 lo = clamp(floor((md - rd) / 16.0LF), dvec2(-1.0LF), dvec2(1073741824.0LF));
    dvec2 hi = clamp(floor((md + rd + 15.0LF) / 16.0LF), dvec2(-1.0LF), dvec2(1073741824.0LF));
    rmin = min(max(ivec2(lo), ivec2(0)), tiles);
    rmax = min(max(ivec2(hi), ivec2(0)), tiles);
    return rmax.x > rmin.x && rmax.y > rmin.y;
}

// INRIA preprocessCUDA's radius: ceil(3 sqrt(lambda_max)), lambda floored by the 0.1 clamp.
float radius3(float a, float b, float c) {
    float det = a * c - b * b;
    float h = 0.5 * (a + c);
    float lam = h + sqrt(max(h * h - det, 0.1));
    float r = ceil(3.0 * sqrt(max(lam, 0.0)));
    return finite(r) ? min(r, 1073741824.0) : 0.0;
}

void main() {
    uint g = gl_GlobalInvocationID.x;
    if (g >= n) return;
    vec4 g0 = geom[3u * g];
    vec4 g1 = geom[3u * g + 1u];
    vec4 g2 = geom[3u * g + 2u];
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
    mat3 R = mat3(1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y + w * z), 2.0 * (x * z - w * y),
                  2.0 * (x * y - w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z + w * x),
                  2.0 * (x * z + w * y), 2.0 * (y * z - w * x), 1.0 - 2.0 * (x * x + y * y));
    mat3 M = R * mat3(g2.x * splat_scale, 0.0, 0.0, 0.0, g2.y * splat_scale, 0.0, 0.0, 0.0, g2.z * splat_scale);
    cov = M * transpose(M);
#endif
    mat3 cov_c = view_rot * cov * transpose(view_rot);

    float fx = intrinsics.x, fy = intrinsics.y, cx = intrinsics.z, cy = intrinsics.w;
    float W = float(image_size.x), H = float(image_size.y);
    // gsplat's guard band (project.py): the Jacobian at the mean clamped to 1.3x the half field of view.
    float tan_x = 0.5 * W / fx, tan_y = 0.5 * H / fy;
    float lim_xp = (W - cx) / fx + 0.3 * tan_x, lim_xn = cx / fx + 0.3 * tan_x;
    float lim_yp = (H - cy) / fy + 0.3 * tan_y, lim_yn = cy / fy + 0.3 * tan_y;
    float zc = pc.z;
    float tx = zc * clamp(pc.x / zc, -lim_xn, lim_xp);
    float ty = zc * clamp(pc.y / zc, -lim_yn, lim_yp);
    mat3x2 J = mat3x2(fx / zc, 0.0,  0.0, fy / zc,  -fx * tx / (zc * zc), -fy * ty / (zc * zc));
    mat2 cov2 = J * cov_c * transpose(J);
    vec2 mean2d = vec2(fx * pc.x / zc + cx, fy * pc.y / zc + cy);
    float a0 = cov2[0][0], c0 = cov2[1][1];
    float b = 0.5 * (cov2[0][1] + cov2[1][0]);

    // "visible" as the rgb pass: dilated covariance.
    float a = a0 + EPS2D, c = c0 + EPS2D;
    float det = a * c - b * b;
    if (!(det > 0.0) || !finite(det) || !finite(a) || !finite(c) || !finite(mean2d.x) || !finite(mean2d.y))
        return;
    ivec2 rmin, rmax;
    if (!touches(mean2d, radius3(a, b, c), rmin, rmax)) return;
    atomicAdd(counters[1], 1u);
    if (!(opacity >= min_opacity)) return;

    uint base_sh = g * uint(sh_k) * 3u;
    vec3 rgb = max(SH_C0 * vec3(sh[base_sh], sh[base_sh + 1u], sh[base_sh + 2u]) + 0.5, vec3(0.0));
    ivec2 lo, hi;  // pixel box, max exclusive
#if ELLIPSOIDS
    // The twin's second projection (eps2d 0) must pass too, and its bound gives the tiles scanned.
    float det0 = a0 * c0 - b * b;
    if (!(det0 > 0.0) || !finite(det0) || !finite(a0) || !finite(c0)) return;
    if (!touches(mean2d, radius3(a0, b, c0), rmin, rmax)) return;
    float lam = 0.5 * (a0 + c0) + sqrt(max(0.25 * (a0 - c0) * (a0 - c0) + b * b, 0.0));
    if (!touches(mean2d, ceil(box_scale * sqrt(lam) + 2.0), rmin, rmax)) return;
    lo = rmin * 16;
    hi = min(rmax * 16, image_size);

    dmat3 A = inverse(dmat3(cov_c));
    dvec3 td = dvec3(pc);
    dvec3 gd = A * td;
    double gam = dot(td, gd) - double(sigma2);
    // gam = t.At - k^2 <= 0: the camera is inside, the nearer root is behind it: nothing to draw.
    if (!(gam > 0.0LF)) return;
    // The silhouette: ray d = (p, 1), p = (dx, dy), meets the ellipsoid iff d^T C d >= 0 with
    // C = (At)(At)^T - gam A. When the ellipsoid is in front of the camera plane, -C's upper 2x2
    // block M is positive definite and d^T C d = D - (p - c)^T M (p - c): an ellipse centred on c.
    dmat3 C = outerProduct(gd, gd) - gam * A;
    dmat2 Mc = -dmat2(C[0][0], C[0][1], C[1][0], C[1][1]);
    dvec2 qv = dvec2(C[2][0], C[2][1]);
    vec4 conic = vec4(0.0);  // (c.x, c.y, M00, M01 / M00); M00 = 0 flags "no ellipse"
    float schur = 0.0, D = 0.0;
    if (Mc[0][0] > 0.0LF && determinant(Mc) > 0.0LF) {
        dmat2 Mi = inverse(Mc);
        dvec2 cc = Mi * qv;
        double Dd = C[2][2] + dot(qv, cc);
        if (!(Dd >= 0.0LF)) return;
        conic = vec4(vec2(cc), float(Mc[0][0]), float(Mc[0][1] / Mc[0][0]));
        schur = float(Mc[1][1] - Mc[0][1] * Mc[0][1] / Mc[0][0]);
        D = float(Dd);
        // Its bounding box, 1 px margin (pixel centre u = f dx + c0 = px + 0.5).
        dvec2 ext = sqrt(Dd * dvec2(Mi[0][0], Mi[1][1]));
        dvec2 f2 = dvec2(fx, fy), c2 = dvec2(cx, cy);
        dvec2 blo = clamp(f2 * (cc - ext) + c2 - 1.5LF, dvec2(-1.0e9LF), dvec2(1.0e9LF));
        dvec2 bhi = clamp(f2 * (cc + ext) + c2 + 0.5LF, dvec2(-1.0e9LF), dvec2(1.0e9LF));
        lo = max(lo, ivec2(floor(blo)));
        hi = min(hi, ivec2(floor(bhi)) + 1);
    }
    mat3 Af = mat3(A);
    recs[REC * g] = vec4(pc, sigma2);
    recs[REC * g + 1u] = vec4(Af[0][0], Af[0][1], Af[0][2], Af[1][1]);
    recs[REC * g + 2u] = vec4(Af[1][2], Af[2][2], float(gam), schur);
    recs[REC * g + 4u] = vec4(vec3(gd), D);
    recs[REC * g + 5u] = conic;
#else
    ivec2 cp = ivec2(clamp(floor(mean2d), vec2(-1.0e7), vec2(1.0e7)));  // pixel holding the centre
    lo = max(cp - point_k, ivec2(0));
    hi = min(cp + point_k + 1, image_size);
    recs[REC * g] = vec4(mean2d, zc, point_r2);
#endif
    recs[REC * g + 3u] = vec4(rgb, 0.0);
    if (hi.x <= lo.x || hi.y <= lo.y) return;

    uint bw = uint(hi.x - lo.x), bh = uint(hi.y - lo.y);
    uint area = bw * bh;
    uint chunk_px = max(uint(CHUNK_PX), (area + uint(MAX_CHUNKS) - 1u) / uint(MAX_CHUNKS));
    uint cols = min(bw, chunk_px);
    uint rows = min(bh, max(1u, chunk_px / cols));
    uint nx = (bw + cols - 1u) / cols;
    uint nch = nx * ((bh + rows - 1u) / rows);
    boxes[g] = uvec4(uint(lo.x) | (uint(lo.y) << 16), uint(hi.x) | (uint(hi.y) << 16), cols | (rows << 16), nx);
    atomicAdd(counters[2], 1u);
    atomicAdd(counters[3], area);
    uint base = atomicAdd(counters[0], nch);
    for (uint i = 0u; i < nch; i++) {
        if (base + i < capacity) items[base + i] = uvec2(g, i);
    }
}
