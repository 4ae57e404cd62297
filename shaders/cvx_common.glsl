// cvx_common.glsl: projected-record layout of the convex splat passes (include-only).
// Bindings: none. Needs the define NPTS (points per convex, 3..8) and gs_common.glsl (pair_coord).
// Reference: REFERENCE.md section 4 (3D Convex Splatting); twin: renderer/torch_backend/convex.py.
//
// Record of convex g: CVX_REC consecutive RGBA32F texels of one texture, texel g * CVX_REC + j at
// pair_coord(g * CVX_REC + j) (the blend texelFetches them through the per-pair ids of binning):
//   j = 0  (centre2d.x, centre2d.y, z sigma, opacity)       z = view-space depth of the centre
//   j = 1  (r, g, b, z)
//   j = 2.. the NPTS edge lines packed as floats (A_k, B_k, C_k), k < NPTS, with
//           v_k(p) = A_k (p.x - centre2d.x) + B_k (p.y - centre2d.y) + C_k = z delta L_k(p);
//           slots past the hull's edge count hold (0, 0, -1e30), which the LSE ignores.
const int CVX_EDGE_TEXELS = (3 * NPTS + 3) / 4;
const int CVX_REC = 2 + CVX_EDGE_TEXELS;
const float CVX_NO_EDGE = -1e30;

ivec2 cvx_coord(uint g, int j) {
    return pair_coord(g * uint(CVX_REC) + uint(j));
}
