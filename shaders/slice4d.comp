#version 430
// slice4d.comp: 4D Gaussians (4D-Rotor GS, Yang et al. 4DGS) sliced at time t into the 3D records
// that gs_project.comp reads with HAS_COVARS, with the Gaussians that cannot show at t dropped.
// Three modes (define MODE), one frame = MODE 0, an exclusive scan of `partial`, MODE 1, MODE 2:
//   MODE 0  one invocation per chunk of CHUNK Gaussians: partial[b] = how many the pre-cull keeps
//   MODE 1  one invocation per chunk: list[partial[b] + j] = index of the j-th kept Gaussian
//           (ascending, so the output order equals Gaussian4DScene.slice's)
//   MODE 2  one invocation per kept Gaussian i: geom[3i..3i+2] and sh_out[i] from Gaussian list[i]
// The chunks keep every invocation's loop short (llvmpipe ends an invocation after 65535 loop
// iterations); MODE 2 runs only over kept Gaussians because llvmpipe pays for masked-off lanes.
// Bindings (std430 storage buffers):
//   0 cull    vec4[N]      (t_i, marginal variance, q_max, 0): the pre-cull, t-independent
//   1 partial uint[NB]     MODE 0 out, MODE 1 in (after the scan): per-chunk counts / offsets
//   2 list    uint[M]      MODE 1 out, MODE 2 in: kept Gaussian indices
//   3 params  vec4[4N]     (mean.xyz, opacity), (scale x, y, z, t), rotation[0..3], rotation[4..7]
//   4 sh4     float[N*T*K_IN*3]   SH blocks (time Fourier block, coefficient, channel)
//   5 geom    vec4[3M]     out: (mean.xyz, opacity(t)), (c00, c01, c02, c11), (c12, c22, 0, 0)
//   6 sh_out  float[M*K_OUT*3]    out: SH folded over time (first K_OUT coefficients)
// Defines: MODE, CHUNK; MODE 2: ROTOR (1: 4D-Rotor, 0: Yang), T_BLOCKS, K_IN, K_OUT, SH_VEC4
//   (1 when K_IN * 3 and K_OUT * 3 are multiples of 4: the SH buffers are read as vec4[]),
//   INPUT_IMAGES (params and sh4 as images 0 and 1, see MODE 2).
// References: REFERENCE.md 3.1-3.2; the twin is scenes/gaussians4d.py (rotor_matrix,
// yang_matrix, condition, temporal_q, fold_time_sh, Gaussian4DScene.visible_at / slice); cut-offs
// weify627/4D-Rotor-Gaussians > nerfstudio/models/splatfacto.py (0.5 w dt^2 < 16) and
// fudan-zvg/4d-gaussian-splatting > gaussian_renderer/__init__.py (marginal_t > 0.05).

uniform float t;          // the time sliced at
uniform uint n;           // MODE 0/1: Gaussians; MODE 2: kept Gaussians
uniform float q_cut;      // the model's cut on q = 0.5 dt^2 / var (16, or ln 20 for Yang)

#if MODE == 0 || MODE == 1
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Cull { vec4 cull[]; };
layout(std430, binding = 1) buffer Partial { uint partial[]; };
layout(std430, binding = 2) writeonly buffer List { uint list[]; };

// Gaussian4DScene.visible_at: q < cut and q <= q_max (q_max = min(cut, ln(255 o))); a variance
// <= 0 (or NaN) means q = +inf, never drawn. Same float operations, in the same order.
bool keep(uint g) {
    vec4 c = cull[g];
    float dt = t - c.x;
    float q = 0.5 * dt * dt / (c.y > 0.0 ? c.y : 1.0);
    return c.y > 0.0 && q < q_cut && q <= c.z;
}

void main() {
    uint b = gl_GlobalInvocationID.x;
    uint begin = b * uint(CHUNK);
    if (begin >= n) return;
    uint end = min(n, begin + uint(CHUNK));
#if MODE == 0
    uint count = 0u;
    for (uint g = begin; g < end; ++g) count += keep(g) ? 1u : 0u;
    partial[b] = count;
#else
    uint o = partial[b];
    for (uint g = begin; g < end; ++g) {
        if (keep(g)) { list[o] = g; ++o; }
    }
#endif
}

#else  // MODE 2
#include "gs_common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Cull { vec4 cull[]; };
layout(std430, binding = 2) readonly buffer List { uint list[]; };
layout(std430, binding = 5) writeonly buffer Geom { vec4 geom[]; };
#ifdef INPUT_IMAGES
// CPU rasterizers: params and the SH blocks through image loads from RGBA32F textures (texel i at
// pair_coord(i); the SH floats in order), which llvmpipe runs as plain per-lane reads where a
// storage-buffer read is a loop over the lanes: the slice stage took 0.726x (4D-Rotor) and 0.612x
// (Yang, 3 time blocks) of its time at 200k Gaussians, the same records bit for bit.
layout(rgba32f, binding = 0) readonly uniform image2D params_img;
layout(rgba32f, binding = 1) readonly uniform image2D sh4_img;
#define PARAM(i) imageLoad(params_img, pair_coord(i))
#if SH_VEC4
#define SH_IN(i) imageLoad(sh4_img, pair_coord(i))
#else
#define SH_IN(i) imageLoad(sh4_img, pair_coord((i) >> 2u))[(i) & 3u]   // float i of the texels
#endif
#else
layout(std430, binding = 3) readonly buffer Params { vec4 params[]; };
#define PARAM(i) params[i]
#define SH_IN(i) sh4[i]
#endif
// SH rows move as vec4 when both row lengths allow (K = 4, 16): llvmpipe pays per load/store
// instruction and lane: 4x fewer of them made the fold, the pass's main cost, ~2x faster.
#if SH_VEC4
#ifndef INPUT_IMAGES
layout(std430, binding = 4) readonly buffer SH4 { vec4 sh4[]; };
#endif
layout(std430, binding = 6) writeonly buffer SHOut { vec4 sh_out[]; };
#define SH_T vec4
const int SH_W = 4;
#else
#ifndef INPUT_IMAGES
layout(std430, binding = 4) readonly buffer SH4 { float sh4[]; };
#endif
layout(std430, binding = 6) writeonly buffer SHOut { float sh_out[]; };
#define SH_T float
const int SH_W = 1;
#endif

uniform float prefilter_var;          // Yang: added to Sigma_tt in the marginal (0: off)
uniform float omega[T_BLOCKS];        // float32(2 pi n / L) of time block n (Yang's colour)

// Rows of the 4D rotation M of 4D-Rotor GS from the unnormalized 8-component rotor
// (a, b_xy, b_xz, b_yz | b_xw, b_yw, b_zw, p); twin: gaussians4d.rotor_matrix.
void rotor_rows(vec4 r0, vec4 r1, out vec4 m0, out vec4 m1, out vec4 m2, out vec4 m3) {
    float s = r0.x, bxy = r0.y, bxz = r0.z, byz = r0.w;
    float bxw = r1.x, byw = r1.y, bzw = r1.z, p = r1.w;
    float s2 = s * s, xy2 = bxy * bxy, xz2 = bxz * bxz, yz2 = byz * byz;
    float xw2 = bxw * bxw, yw2 = byw * byw, zw2 = bzw * bzw, p2 = p * p;
    m0 = vec4(s2 - xy2 - xz2 - xw2 + yz2 + yw2 + zw2 - p2,
              2.0 * (bxy * s - bxz * byz - bxw * byw + bzw * p),
              2.0 * (bxy * byz + bxz * s - bxw * bzw - byw * p),
              2.0 * (bxy * byw + bxz * bzw + bxw * s + byz * p));
    m1 = vec4(-2.0 * (bxy * s + bxz * byz + bxw * byw + bzw * p),
              s2 - xy2 + xz2 + xw2 - yz2 - yw2 + zw2 - p2,
              2.0 * (-bxy * bxz + bxw * p + byz * s - byw * bzw),
              2.0 * (-bxy * bxw - bxz * p + byz * bzw + byw * s));
    m2 = vec4(2.0 * (bxy * byz - bxz * s - bxw * bzw + byw * p),
              -2.0 * (bxy * bxz + bxw * p + byw * bzw + byz * s),
              s2 + xy2 - xz2 + xw2 - yz2 + yw2 - zw2 - p2,
              2.0 * (bxy * p - bxz * bxw - byw * byz + bzw * s));
    m3 = vec4(2.0 * (bxy * byw + bxz * bzw - bxw * s - byz * p),
              2.0 * (-bxy * bxw + bxz * p + byz * bzw - byw * s),
              -2.0 * (bxy * p + bxz * bxw + byz * byw + bzw * s),
              s2 + xy2 + xz2 - xw2 + yz2 - yw2 - zw2 - p2);
}

// Rows of Yang et al.'s R = M_l M_r with rows and columns reversed; twin: gaussians4d.yang_matrix.
void yang_rows(vec4 l, vec4 r, out vec4 m0, out vec4 m1, out vec4 m2, out vec4 m3) {
    l = normalize(l);
    r = normalize(r);
    float a = l.x, b = l.y, c = l.z, d = l.w;
    float p = r.x, q = r.y, rr = r.z, s = r.w;
    // GLSL fills columns: each constructor below is the transpose of the row-major M_l / M_r,
    // so At = Mr^T Ml^T = (M_l M_r)^T, whose column i is row i of A = M_l M_r.
    mat4 ml_t = mat4(a, -b, -c, -d,  b, a, -d, c,  c, d, a, -b,  d, -c, b, a);
    mat4 mr_t = mat4(p, q, rr, s,  -q, p, -s, rr,  -rr, s, p, -q,  -s, -rr, q, p);
    mat4 at = mr_t * ml_t;
    m0 = at[3].wzyx;
    m1 = at[2].wzyx;
    m2 = at[1].wzyx;
    m3 = at[0].wzyx;
}

void main() {
    uint i = gl_GlobalInvocationID.x;
    if (i >= n) return;
    uint g = list[i];
    vec4 p0 = PARAM(4u * g), sc = PARAM(4u * g + 1u);
    vec4 m0, m1, m2, m3;
#if ROTOR
    rotor_rows(PARAM(4u * g + 2u), PARAM(4u * g + 3u), m0, m1, m2, m3);
#else
    yang_rows(PARAM(4u * g + 2u), PARAM(4u * g + 3u), m0, m1, m2, m3);
#endif
    // L = M diag(s); condition on t (gaussians4d.condition): Sigma3|t = K K^T with the rows of
    // L projected off l_3, which stays positive semi-definite in float32.
    vec4 l0 = m0 * sc, l1 = m1 * sc, l2 = m2 * sc, l3 = m3 * sc;
    float s_tt = dot(l3, l3);
    bool ok = s_tt > 0.0;
    float inv = ok ? 1.0 / s_tt : 0.0;
    vec3 vel = vec3(dot(l0, l3), dot(l1, l3), dot(l2, l3)) * inv;
    vec4 k0 = l0 - vel.x * l3, k1 = l1 - vel.y * l3, k2 = l2 - vel.z * l3;
    float dt = t - cull[g].x;
    vec3 mean = p0.xyz + vel * dt;
    float var = s_tt + prefilter_var;
    float q = 0.5 * dt * dt / (var > 0.0 ? var : 1.0);
    float opacity = (ok && var > 0.0) ? p0.w * exp(-q) : 0.0;
    geom[3u * i] = vec4(mean, opacity);
    geom[3u * i + 1u] = vec4(dot(k0, k0), dot(k0, k1), dot(k0, k2), dot(k1, k1));
    geom[3u * i + 2u] = vec4(dot(k1, k2), dot(k2, k2), 0.0, 0.0);

    // Colour (gaussians4d.fold_time_sh): sum_n cos(omega_n dt) c_n; cos is even, so dt's sign
    // (t - t_i here, t_i - t in the twin) does not matter.
    float w[T_BLOCKS];
    w[0] = 1.0;
    for (int b = 1; b < T_BLOCKS; ++b) w[b] = cos(omega[b] * dt);
    const int ROW_IN = K_IN * 3 / SH_W, ROW_OUT = K_OUT * 3 / SH_W;
    uint src = g * uint(T_BLOCKS * ROW_IN);
    uint dst = i * uint(ROW_OUT);
    for (int j = 0; j < ROW_OUT; ++j) {
        SH_T v = SH_IN(src + uint(j));
        for (int b = 1; b < T_BLOCKS; ++b) v += w[b] * SH_IN(src + uint(b * ROW_IN + j));
        sh_out[dst + uint(j)] = v;
    }
}
#endif
