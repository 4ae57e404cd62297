// gs_common.glsl: layout shared by the Gaussian splatting compute passes (include-only).
// Bindings: none. Defines the projected-record layout (2 texels per Gaussian) and pair-texture
// addressing. Reference: REFERENCE.md section 1 (3DGS forward model); twin: renderer/torch_backend.
//
// Projected record of Gaussian g, at texel pair_coord(g) of two textures (the blends read them with
// texelFetch through the per-pair Gaussian ids that binning writes):
//   rec0 (RGBA32F) = (mean2d.x, mean2d.y, q.x, q.y)   q = log2(e) * (-conic.a / 2, -conic.b,
//   rec1 (RGBA32UI) = float bits of (q.z,                  -conic.c / 2), conic = inverse dilated
//                     log2(opacity), view-space depth),    2D covariance: log2(alpha) =
//                     then the colour as RGB9E5 bits       log2(opacity) + q.x dx^2 + q.y dx dy
//                     (pack_rgb9e5 below)                  + q.z dy^2; opacity includes the mip
//                                                          compensation
// (the software blend stages rec1 as it is: one texel fetch and one shared vec4 per pair for all
// but the mean and q.xy).
const uint TILE = 16u;
const uint PAIR_TEX_W = 4096u;           // record and pair-id textures are PAIR_TEX_W wide
const uint PAIR_TEX_SHIFT = 12u;
const uint INVALID_KEY = 0xFFFFFFFFu;    // sort key of culled Gaussians: sorts last, never a depth

ivec2 pair_coord(uint p) {
    return ivec2(int(p & (PAIR_TEX_W - 1u)), int(p >> PAIR_TEX_SHIFT));
}

// Tile rectangle packed in two uints: (x0 | y0 << 16, x1 | y1 << 16), max exclusive.
uvec4 unpack_rect(uvec2 r) {
    return uvec4(r.x & 0xFFFFu, r.x >> 16, r.y & 0xFFFFu, r.y >> 16);
}

// A primitive's tiles, as the projections store them (rects[i], uvec4): the packed rectangle
// (.xy, above) and its row spans (.zw). Row spans (gs_project.comp CULL_TILES): the
// tiles of rectangle row y0 + i (i < 8) that the Gaussian's alpha >= 1/255 ellipse reaches are
// x0 + (b & 15) .. x0 + (b >> 4) (max exclusive), b = byte i of (spans.x, spans.y) read as one
// little-endian 64-bit word; FULL_SPANS in spans.x: every row spans the whole rectangle (what the
// other projections store). A row may be empty (start == end). One 16-byte record, so that the
// bin walks read one word group per primitive (on llvmpipe each storage-buffer read is a loop
// over the SIMD lanes).
const uint FULL_SPANS = 0xFFFFFFFFu;

uvec2 row_span(uvec4 r, uvec2 spans, uint i) {
    uint b = ((i < 4u ? spans.x : spans.y) >> (8u * (i & 3u))) & 0xFFu;
    return spans.x == FULL_SPANS ? r.xz : r.x + uvec2(b & 15u, b >> 4);
}

// Colour packed in 32 bits as GL's RGB9_E5 (EXT_texture_shared_exponent: three 9-bit mantissas and
// a shared 5-bit exponent, bias 15), so that a record fits two texels and a staged one two vec4s
// (gs_blend.comp); the error is at most 2^-9 of the largest channel. Packing an unpacked colour
// again is exact: the exponent comes from the float's bits and the scales are powers of two.
uint pack_rgb9e5(vec3 rgb) {
    vec3 c = clamp(rgb, vec3(0.0), vec3(65408.0));     // 65408 = 511 / 512 * 2^16, the largest
    float m = max(c.r, max(c.g, c.b));
    int e = clamp(int(floatBitsToUint(m) >> 23) - 127, -16, 15) + 16;   // floor(log2 m) + 1 + bias
    float scale = uintBitsToFloat(uint(e + 103) << 23);                  // 2^(e - 24)
    if (m / scale + 0.5 >= 512.0) { e += 1; scale *= 2.0; }
    uvec3 q = uvec3(c / scale + 0.5);
    return q.r | (q.g << 9) | (q.b << 18) | (uint(e) << 27);
}

vec3 unpack_rgb9e5(uint v) {
    return vec3(uvec3(v, v >> 9, v >> 18) & 511u) * uintBitsToFloat(((v >> 27) + 103u) << 23);
}
