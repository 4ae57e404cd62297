#version 430
// voxels_march.comp: ray-march a voxel grid (DirectVoxGO dense / Plenoxels sparse), one invocation per pixel.
// Twin: renderer/torch_backend/voxels.py (same algorithm, same counters); host: renderer/gl_backend/voxels.py.
// Bindings:
//   image 0  out_rgba  rgba32f  (rgb after the mode's mapping, alpha = 1 - T_last), row 0 = top image row
//   image 1  out_depth r32f     expected view z (0 where alpha <= 1e-6)
//   ssbo 0   counters  uint[8]  += samples, visited, mask-skipped, alpha-skipped, shaded, density lookups,
//                               rays hit, early-skipped
//   texture unit 0 vox_tex   sampler2D  RGBA32F: voxel v's vec4 group g at linear texel v*G + g
//                            (group 0 = (density, f0, f1, f2), then f3..), width 2^texw_log2
//   texture unit 1 links_tex isampler3D R32I (SPARSE): voxel index or -1, texel (k, j, i)
//   texture unit 2 mask_tex  usampler3D R8UI (HAS_MASK): occupancy, texel (k, j, i)
//   (with IMAGE_INPUTS those three are images 2, 3 and 4: rgba32f, r32i, r8ui)
//   texture unit 3 mlp_tex   sampler2D  RGBA32F (MLP_TEX): MLP weights when a layer exceeds a uniform block
//   ubo 0 MLPB biases, ubo 1+l MLPW<l> weights of layer l (row-major, rows padded to vec4s), l < 6
// Defines: G, C, COLOR_MODE (0 sigmoid(k0), 1 MLP, 2 SH), ACT (0 softplus+shift, 1 relu), SPARSE, HAS_MASK,
//   PE, RGBNET_DIRECT, MLP_LAYERS, MLP_DIMS, MLP_MAXW4, MLP_W0..MLP_W5, MLP_B4, MLP_TEX, IMAGE_INPUTS.
// Interpolation is a manual trilinear with texelFetch (grid_sample align_corners=True): GPU samplers weight
// with 8 fractional bits (CUDA guide, "Linear Filtering"), too coarse for parity (llvmpipe's is exact).
// References: REFERENCE.md 6; sunset1995/DirectVoxGO > lib/cuda/render_utils_kernel.cu (infer_t_minmax,
// maskcache_lookup, alpha2weight: the crossing sample is kept), lib/dvgo.py (Raw2Alpha, forward);
// sxyu/svox2 > svox2/svox2.py (_volume_render_gradcheck_lerp); SH constants: graphdeco-inria
// diff-gaussian-rasterization > cuda_rasterizer/auxiliary.h.
#include "colormap.glsl"
#include "group_tile.glsl"

layout(local_size_x = 8, local_size_y = 8) in;

layout(rgba32f, binding = 0) writeonly uniform image2D out_rgba;
layout(r32f, binding = 1) writeonly uniform image2D out_depth;
layout(std430, binding = 0) buffer Counters { uint counters[]; };

#ifdef IMAGE_INPUTS
// CPU rasterizers: the grid through image loads (units 2-4), which llvmpipe runs as plain per-lane
// reads where a texelFetch goes through its sampler code (gs_blend.comp IMAGE_INPUTS).
layout(rgba32f, binding = 2) readonly uniform image2D vox_tex;
#define FETCH(tex, c) imageLoad(tex, c)
#define FETCH_SIZE(tex) imageSize(tex)
#else
uniform sampler2D vox_tex;
#define FETCH(tex, c) texelFetch(tex, c, 0)
#define FETCH_SIZE(tex) textureSize(tex, 0)
#endif
uniform int texw_log2;
#if SPARSE
#ifdef IMAGE_INPUTS
layout(r32i, binding = 3) readonly uniform iimage3D links_tex;
#else
uniform isampler3D links_tex;
#endif
#endif
#if HAS_MASK
#ifdef IMAGE_INPUTS
layout(r8ui, binding = 4) readonly uniform uimage3D mask_tex;
#else
uniform usampler3D mask_tex;
#endif
uniform vec3 mask_scale;
uniform vec3 mask_shift;
#endif

uniform ivec2 image_size;
uniform vec4 intrinsics;      // fx, fy, cx, cy
uniform mat3 cam_rot;         // camera -> world rotation (OpenCV axes)
uniform vec3 cam_pos;
uniform vec2 near_far;        // view z
uniform vec3 box_lo;
uniform vec3 box_hi;
uniform vec3 grid_scale;      // (size - 1) / (box_hi - box_lo)
uniform ivec3 grid_size;
uniform float step_world;
uniform float interval;
uniform float act_shift;
uniform float color_thres;    // fast_color_thres
uniform float log_stop;       // log(stop_thresh)
uniform vec3 background;
uniform int mode;             // 0 rgb, 1 alpha, 2 depth
uniform vec2 depth_range;
uniform int sh_degree;

#if COLOR_MODE == 1
layout(std140, binding = 0) uniform MLPB { vec4 mlp_b[MLP_B4]; };
#if MLP_TEX
uniform sampler2D mlp_tex;
#else
// One block per layer, declared separately: an array of blocks indexed by the layer loop gave wrong
// weights on llvmpipe (LLVM 15); MLP_W<l> is the layer's vec4 count.
layout(std140, binding = 1) uniform MLPW0 { vec4 mlp_w0[MLP_W0]; };
#if MLP_LAYERS > 1
layout(std140, binding = 2) uniform MLPW1 { vec4 mlp_w1[MLP_W1]; };
#endif
#if MLP_LAYERS > 2
layout(std140, binding = 3) uniform MLPW2 { vec4 mlp_w2[MLP_W2]; };
#endif
#if MLP_LAYERS > 3
layout(std140, binding = 4) uniform MLPW3 { vec4 mlp_w3[MLP_W3]; };
#endif
#if MLP_LAYERS > 4
layout(std140, binding = 5) uniform MLPW4 { vec4 mlp_w4[MLP_W4]; };
#endif
#if MLP_LAYERS > 5
layout(std140, binding = 6) uniform MLPW5 { vec4 mlp_w5[MLP_W5]; };
#endif
#endif
#endif

shared uint s_cnt[8];

// log1p and expm1 accurate for tiny arguments, so that alpha near fast_color_thres matches torch's
// softplus/expm1: a short series below 0.01 (relative error < 1e-8), where log/exp near 1 would lose
// the small part (Kahan's log(u)*y/(u-1) still missed torch's alpha-skip decisions on llvmpipe).
float log1p_(float y) {
    if (y < 0.01) return y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * 0.25)));
    return log(1.0 + y);
}

float expm1_(float x) {
    if (abs(x) < 0.01) return x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0))));
    return exp(x) - 1.0;
}

float softplus_(float x) {  // torch.nn.functional.softplus (threshold 20)
    return x > 20.0 ? x : log1p_(exp(x));
}

vec4 fetch_group(int v, int g) {
    int idx = v * G + g;
    int wmask = (1 << texw_log2) - 1;
    return FETCH(vox_tex, ivec2(idx & wmask, idx >> texw_log2));
}

// Voxel indices (-1: empty) and trilinear weights of the 8 lattice corners around p (inside the box).
void corners(vec3 p, out int v[8], out float w[8]) {
    vec3 sz1 = vec3(grid_size - 1);
    vec3 u = min(max((p - box_lo) * grid_scale, vec3(0.0)), sz1);
    vec3 i0 = min(floor(u), sz1 - 1.0);
    vec3 f = u - i0;
    ivec3 b = ivec3(i0);
    int n = 0;
    for (int dx = 0; dx < 2; dx++) {
        float wx = dx == 1 ? f.x : 1.0 - f.x;
        for (int dy = 0; dy < 2; dy++) {
            float wy = dy == 1 ? f.y : 1.0 - f.y;
            for (int dz = 0; dz < 2; dz++) {
                float wz = dz == 1 ? f.z : 1.0 - f.z;
                ivec3 c = b + ivec3(dx, dy, dz);
#if SPARSE
                v[n] = FETCH(links_tex, ivec3(c.z, c.y, c.x)).r;
#else
                v[n] = (c.x * grid_size.y + c.y) * grid_size.z + c.z;
#endif
                w[n] = wx * wy * wz;
                n++;
            }
        }
    }
}

bool in_mask(vec3 p) {
#if HAS_MASK
    ivec3 ijk = ivec3(floor(p * mask_scale + mask_shift + 0.5));
    ivec3 msz = FETCH_SIZE(mask_tex).zyx;
    if (any(lessThan(ijk, ivec3(0))) || any(greaterThanEqual(ijk, msz))) return false;
    return FETCH(mask_tex, ivec3(ijk.z, ijk.y, ijk.x)).r != 0u;
#else
    return true;
#endif
}

#if COLOR_MODE == 2
const float SHC0 = 0.28209479177387814;
const float SHC1 = 0.4886025119029199;
const float SHC2[5] = float[5](1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                               -1.0925484305920792, 0.5462742152960396);
const float SHC3[7] = float[7](-0.5900435899266435, 2.890611442640554, -0.4570457994644658,
                               0.3731763325901154, -0.4570457994644658, 1.445305721320277,
                               -0.5900435899266435);

void sh_basis(vec3 d, int degree, out float b[16]) {
    for (int i = 0; i < 16; i++) b[i] = 0.0;
    float x = d.x, y = d.y, z = d.z;
    b[0] = SHC0;
    if (degree < 1) return;
    b[1] = -SHC1 * y; b[2] = SHC1 * z; b[3] = -SHC1 * x;
    if (degree < 2) return;
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    b[4] = SHC2[0] * xy; b[5] = SHC2[1] * yz; b[6] = SHC2[2] * (2.0 * zz - xx - yy);
    b[7] = SHC2[3] * xz; b[8] = SHC2[4] * (xx - yy);
    if (degree < 3) return;
    b[9] = SHC3[0] * y * (3.0 * xx - yy); b[10] = SHC3[1] * xy * z;
    b[11] = SHC3[2] * y * (4.0 * zz - xx - yy); b[12] = SHC3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy);
    b[13] = SHC3[4] * x * (4.0 * zz - xx - yy); b[14] = SHC3[5] * z * (xx - yy);
    b[15] = SHC3[6] * x * (xx - 3.0 * yy);
}
#endif

#define FEAT(fe, c) fe[((c) + 1) >> 2][((c) + 1) & 3]

vec3 sigmoid3(vec3 x) { return 1.0 / (1.0 + exp(-x)); }

#if COLOR_MODE == 1
const int DIMS[MLP_LAYERS + 1] = int[](MLP_DIMS);

// dst = W src + b (ReLU except after the last layer); WREAD(i) reads the layer's i-th weight vec4.
#define MLP_LAYER(NAME, WREAD)                                                                     \
void NAME(int l, int boff, in vec4 src[MLP_MAXW4], out vec4 dst[MLP_MAXW4]) {                      \
    int in4 = (DIMS[l] + 3) / 4;                                                                    \
    int nout = DIMS[l + 1];                                                                         \
    for (int g = 0; g < MLP_MAXW4; g++) dst[g] = vec4(0.0);                                        \
    for (int o = 0; o < nout; o++) {                                                               \
        float acc = mlp_b[boff + (o >> 2)][o & 3];                                                 \
        for (int g = 0; g < in4; g++) acc += dot(WREAD(o * in4 + g), src[g]);                      \
        if (l < MLP_LAYERS - 1) acc = max(acc, 0.0);                                               \
        dst[o >> 2][o & 3] = acc;                                                                  \
    }                                                                                              \
}

#if MLP_TEX
int g_woff;  // weight offset of the current layer in mlp_tex
#define WTEX(i) texelFetch(mlp_tex, ivec2((g_woff + (i)) & 4095, (g_woff + (i)) >> 12), 0)
MLP_LAYER(mlp_layer_tex, WTEX)
#else
#define WR0(i) mlp_w0[i]
MLP_LAYER(mlp_layer0, WR0)
#if MLP_LAYERS > 1
#define WR1(i) mlp_w1[i]
MLP_LAYER(mlp_layer1, WR1)
#endif
#if MLP_LAYERS > 2
#define WR2(i) mlp_w2[i]
MLP_LAYER(mlp_layer2, WR2)
#endif
#if MLP_LAYERS > 3
#define WR3(i) mlp_w3[i]
MLP_LAYER(mlp_layer3, WR3)
#endif
#if MLP_LAYERS > 4
#define WR4(i) mlp_w4[i]
MLP_LAYER(mlp_layer4, WR4)
#endif
#if MLP_LAYERS > 5
#define WR5(i) mlp_w5[i]
MLP_LAYER(mlp_layer5, WR5)
#endif
#endif

vec3 mlp_colour(vec4 fe[G], float emb[3 + 6 * PE]) {
    vec4 src[MLP_MAXW4];
    vec4 dst[MLP_MAXW4];
    for (int g = 0; g < MLP_MAXW4; g++) src[g] = vec4(0.0);
#if RGBNET_DIRECT
    const int c0 = 0;
#else
    const int c0 = 3;
#endif
    int n = 0;
    for (int c = c0; c < C; c++, n++) src[n >> 2][n & 3] = FEAT(fe, c);
    for (int e = 0; e < 3 + 6 * PE; e++, n++) src[n >> 2][n & 3] = emb[e];
    int boff = 0;
#if MLP_TEX
    g_woff = 0;
    for (int l = 0; l < MLP_LAYERS; l++) {
        mlp_layer_tex(l, boff, src, dst);
        src = dst;
        g_woff += DIMS[l + 1] * ((DIMS[l] + 3) / 4);
        boff += (DIMS[l + 1] + 3) / 4;
    }
#else
    mlp_layer0(0, boff, src, dst); src = dst; boff += (DIMS[1] + 3) / 4;
#if MLP_LAYERS > 1
    mlp_layer1(1, boff, src, dst); src = dst; boff += (DIMS[2] + 3) / 4;
#endif
#if MLP_LAYERS > 2
    mlp_layer2(2, boff, src, dst); src = dst; boff += (DIMS[3] + 3) / 4;
#endif
#if MLP_LAYERS > 3
    mlp_layer3(3, boff, src, dst); src = dst; boff += (DIMS[4] + 3) / 4;
#endif
#if MLP_LAYERS > 4
    mlp_layer4(4, boff, src, dst); src = dst; boff += (DIMS[5] + 3) / 4;
#endif
#if MLP_LAYERS > 5
    mlp_layer5(5, boff, src, dst); src = dst;
#endif
#endif
    vec3 logit = src[0].xyz;
#if !RGBNET_DIRECT
    logit += vec3(FEAT(fe, 0), FEAT(fe, 1), FEAT(fe, 2));
#endif
    return sigmoid3(logit);
}
#endif

void main() {
    if (gl_LocalInvocationIndex < 8u) s_cnt[gl_LocalInvocationIndex] = 0u;
    barrier();
    ivec2 px = ivec2(group_tile() * gl_WorkGroupSize.xy + gl_LocalInvocationID.xy);
    uint c_samples = 0u, c_visited = 0u, c_mask = 0u, c_alpha = 0u, c_shaded = 0u, c_dens = 0u, c_hit = 0u,
         c_early = 0u;
    if (px.x < image_size.x && px.y < image_size.y) {
        vec3 dc = vec3((float(px.x) + 0.5 - intrinsics.z) / intrinsics.x,
                       (float(px.y) + 0.5 - intrinsics.w) / intrinsics.y, 1.0);
        float zf = inversesqrt(dot(dc, dc));
        vec3 d = normalize(cam_rot * dc);
        vec3 vd = vec3(d.x == 0.0 ? 1e-6 : d.x, d.y == 0.0 ? 1e-6 : d.y, d.z == 0.0 ? 1e-6 : d.z);
        vec3 ta = (box_hi - cam_pos) / vd;
        vec3 tb = (box_lo - cam_pos) / vd;
        vec3 tlo = min(ta, tb), thi = max(ta, tb);
        float t0 = max(max(tlo.x, tlo.y), tlo.z);
        float t1 = min(min(thi.x, thi.y), thi.z);
        float tn = near_far.x / zf, tf = near_far.y / zf;
        t0 = max(min(t0, tf), tn);
        t1 = max(min(t1, tf), tn);
        int n = t1 > t0 ? int(ceil((t1 - t0) / step_world)) : 0;
        c_samples = uint(n);
        c_hit = n > 0 ? 1u : 0u;
        vec3 start = cam_pos + d * t0;
        float logT = 0.0;
        vec3 acc = vec3(0.0);
        float accz = 0.0;
#if COLOR_MODE == 1
        float emb[3 + 6 * PE];
        emb[0] = d.x; emb[1] = d.y; emb[2] = d.z;
        for (int a = 0; a < 3; a++) {
            for (int q = 0; q < PE; q++) {
                float e = d[a] * float(1 << q);
                emb[3 + a * PE + q] = sin(e);
                emb[3 + 3 * PE + a * PE + q] = cos(e);
            }
        }
#elif COLOR_MODE == 2
        float shb[16];
        int deg = sh_degree;
        sh_basis(d, deg, shb);
        const int K = C / 3;
#endif
        for (int k = 0; k < n; k++) {
            c_visited++;
            float tk = float(k) * step_world;
            vec3 p = start + d * tk;
            if (any(lessThan(p, box_lo)) || any(greaterThan(p, box_hi)) || !in_mask(p)) {
                c_mask++;
                continue;
            }
            int v[8];
            float w8[8];
            corners(p, v, w8);
            float raw = 0.0;
            for (int i = 0; i < 8; i++) {
                if (v[i] >= 0) raw += w8[i] * fetch_group(v[i], 0).x;
            }
            c_dens++;
#if ACT == 0
            float lt = -interval * softplus_(raw + act_shift);
#else
            float lt = -interval * max(raw, 0.0);
#endif
            float alpha = -expm1_(lt);
            if (alpha <= color_thres) {
                c_alpha++;
                continue;
            }
            float wgt = exp(logT) * alpha;
            if (wgt > color_thres) {
                c_shaded++;
                vec4 fe[G];
                for (int g = 0; g < G; g++) fe[g] = vec4(0.0);
                for (int i = 0; i < 8; i++) {
                    if (v[i] < 0) continue;
                    for (int g = 0; g < G; g++) fe[g] += w8[i] * fetch_group(v[i], g);
                }
                vec3 col;
#if COLOR_MODE == 0
                col = sigmoid3(vec3(FEAT(fe, 0), FEAT(fe, 1), FEAT(fe, 2)));
#elif COLOR_MODE == 1
                col = mlp_colour(fe, emb);
#else
                int nb = (deg + 1) * (deg + 1);
                for (int ch = 0; ch < 3; ch++) {
                    float s = 0.0;
                    for (int q = 0; q < nb; q++) s += FEAT(fe, ch * K + q) * shb[q];
                    col[ch] = max(s + 0.5, 0.0);
                }
#endif
                acc += wgt * col;
                accz += wgt * (t0 + tk) * zf;
            }
            logT += lt;
            if (logT < log_stop) {
                c_early = uint(n - k - 1);
                break;
            }
        }
        float T = exp(logT);
        float a = 1.0 - T;
        float depth = a > 1e-6 ? accz / a : 0.0;
        vec3 rgb;
        if (mode == 0) {
            rgb = acc + T * background;
        } else if (mode == 1) {
            rgb = vec3(a) + (1.0 - a) * background;
        } else {
            float x = 1.0 - (depth - depth_range.x) / max(depth_range.y - depth_range.x, 1e-9);
            rgb = turbo(x) * a + background * (1.0 - a);
        }
        imageStore(out_rgba, px, vec4(rgb, a));
        imageStore(out_depth, px, vec4(depth, 0.0, 0.0, 0.0));
    }
    atomicAdd(s_cnt[0], c_samples);
    atomicAdd(s_cnt[1], c_visited);
    atomicAdd(s_cnt[2], c_mask);
    atomicAdd(s_cnt[3], c_alpha);
    atomicAdd(s_cnt[4], c_shaded);
    atomicAdd(s_cnt[5], c_dens);
    atomicAdd(s_cnt[6], c_hit);
    atomicAdd(s_cnt[7], c_early);
    barrier();
    if (gl_LocalInvocationIndex < 8u) atomicAdd(counters[gl_LocalInvocationIndex], s_cnt[gl_LocalInvocationIndex]);
}
