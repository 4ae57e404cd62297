// mk_common.glsl: layouts shared by the marker passes ("points", "ellipsoids", "normals"; include-only).
// Bindings: none. The passes are mk_setup.comp (per Gaussian), mk_raster.comp (per work item),
// mk_resolve.comp (per pixel) and mk_clear.comp; the host is renderer/gl_backend/markers.py.
// Twin: renderer/torch_backend/gaussians.py (_render_points, _render_ellipsoids).
//
// Record of Gaussian g (std430 vec4 recs[6N], written by mk_setup, read by mk_raster / mk_resolve):
//   points:      recs[6g]   = (mean2d.x, mean2d.y, view z, radius^2)
//   ellipsoids:  recs[6g]   = (t.xyz, k^2)             t: centre in camera space, k: sigma
//                recs[6g+1] = (A00, A01, A02, A11)     A: inverse camera-space covariance
//                recs[6g+2] = (A12, A22, gam, S)       gam = t.At - k^2 (> 0)
//                recs[6g+4] = (At.xyz, D)
//                recs[6g+5] = (c.x, c.y, M00, M01 / M00)
//     the silhouette ellipse: the ray d = (p, 1) meets the ellipsoid iff
//     D - (p - c)^T M (p - c) >= 0, p = (dx, dy); S = M11 - M01^2 / M00. M00 = 0: no ellipse
//     (the ellipsoid reaches behind the camera plane), rasterised from t, A instead.
//   both:        recs[6g+3] = (DC colour rgb, 0)
// Box of Gaussian g (uvec4 boxes[N]): the pixels its work items scan, split into chunks so that
// no invocation loops long (llvmpipe ends an invocation after 65535 loop iterations in total):
//   (x0 | y0 << 16, x1 | y1 << 16, cols | rows << 16, nx)   max exclusive; a chunk is cols x rows
//   pixels, chunk c covers column block c % nx and row block c / nx.
// Work item (uvec2 items[]): (g, chunk index).
const uint REC = 6u;  // vec4s per record
const uint NONE = 0xFFFFFFFFu;  // empty z-buffer / id-buffer texel
const float SH_C0 = 0.28209479177387814;

uvec4 unpack_box(uvec4 b) {
    return uvec4(b.x & 0xFFFFu, b.x >> 16, b.y & 0xFFFFu, b.y >> 16);
}

mat3 record_inverse(vec4 r1, vec4 r2) {
    return mat3(r1.x, r1.y, r1.z,  r1.y, r1.w, r2.x,  r1.z, r2.x, r2.y);
}

// The camera ray through pixel centre (px + 0.5, py + 0.5), with z = 1 (so its parameter is view z).
vec3 pixel_ray(uvec2 px, vec4 intrinsics) {
    return vec3((float(px.x) + 0.5 - intrinsics.z) / intrinsics.x,
                (float(px.y) + 0.5 - intrinsics.w) / intrinsics.y, 1.0);
}
