// sh.glsl: real spherical harmonics colour up to degree 3, INRIA coefficient order (include-only).
// Bindings: declares std430 binding 1 `SH`: SH_K * 3 floats per primitive (coefficient-major,
//   then channel), read 8 at a time where SH_K * 3 is a multiple of 8 (SH_K 16), else 4 at a time
//   where it is a multiple of 4 (SH_K 4): on llvmpipe a storage-buffer read is a loop over the SIMD
//   lanes, so 12 vec4 reads instead of 48 floats made gs_project.comp ~35% faster at degree 3, and
//   6 dvec4 reads instead of 12 vec4 another 0.87x to 0.91x (100k, 300k Gaussians).
// Defines: SH_K, the coefficients stored per primitive (1, 4, 9 or 16), so that the loads unroll;
//   SH_IMAGE (optional): an image to read them from instead (imageLoad; llvmpipe, see gs_project.comp).
// Reference: REFERENCE.md 1.2; constants from graphdeco-inria/diff-gaussian-rasterization >
// cuda_rasterizer/auxiliary.h (SH_C0..SH_C3); twin: renderer/torch_backend/sh.py.
const float SH_C0 = 0.28209479177387814;
const float SH_C1 = 0.4886025119029199;
const float SH_C2[5] = float[5](1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                                -1.0925484305920792, 0.5462742152960396);
const float SH_C3[7] = float[7](-0.5900435899266435, 2.890611442640554, -0.4570457994644658,
                                0.3731763325901154, -0.4570457994644658, 1.445305721320277,
                                -0.5900435899266435);

#define SH_FLOATS (SH_K * 3)
#if defined(SH_IMAGE) && SH_FLOATS % 4 == 0
// (the includer declares the image SH_IMAGE: SH_FLOATS / 4 RGBA32F texels per primitive, in order)
#elif SH_FLOATS % 8 == 0
// 32 bytes per read, as a dvec4 whose bits are the floats (no double arithmetic; a read test took
// 0.65x the time of vec4 reads).
layout(std430, binding = 1) readonly buffer SH { dvec4 sh8[]; };
#elif SH_FLOATS % 4 == 0
layout(std430, binding = 1) readonly buffer SH { vec4 sh4[]; };
#else
layout(std430, binding = 1) readonly buffer SH { float sh[]; };
#endif
float sh_c[SH_FLOATS];   // the coefficients of the primitive being shaded

void load_sh(uint g) {
#if defined(SH_IMAGE) && SH_FLOATS % 4 == 0
    for (int i = 0; i < SH_FLOATS / 4; ++i) {
        vec4 v = imageLoad(SH_IMAGE, pair_coord(g * uint(SH_FLOATS / 4) + uint(i)));
        sh_c[4 * i] = v.x; sh_c[4 * i + 1] = v.y; sh_c[4 * i + 2] = v.z; sh_c[4 * i + 3] = v.w;
    }
#elif SH_FLOATS % 8 == 0
    for (int i = 0; i < SH_FLOATS / 8; ++i) {
        dvec4 d = sh8[g * uint(SH_FLOATS / 8) + uint(i)];
        uvec2 a = unpackDouble2x32(d.x), b = unpackDouble2x32(d.y);
        uvec2 c = unpackDouble2x32(d.z), e = unpackDouble2x32(d.w);
        sh_c[8 * i] = uintBitsToFloat(a.x); sh_c[8 * i + 1] = uintBitsToFloat(a.y);
        sh_c[8 * i + 2] = uintBitsToFloat(b.x); sh_c[8 * i + 3] = uintBitsToFloat(b.y);
        sh_c[8 * i + 4] = uintBitsToFloat(c.x); sh_c[8 * i + 5] = uintBitsToFloat(c.y);
        sh_c[8 * i + 6] = uintBitsToFloat(e.x); sh_c[8 * i + 7] = uintBitsToFloat(e.y);
    }
#elif SH_FLOATS % 4 == 0
    for (int i = 0; i < SH_FLOATS / 4; ++i) {
        vec4 v = sh4[g * uint(SH_FLOATS / 4) + uint(i)];
        sh_c[4 * i] = v.x; sh_c[4 * i + 1] = v.y; sh_c[4 * i + 2] = v.z; sh_c[4 * i + 3] = v.w;
    }
#else
    for (int i = 0; i < SH_FLOATS; ++i) sh_c[i] = sh[g * uint(SH_FLOATS) + uint(i)];
#endif
}

vec3 sh_coef(int k) {
    return vec3(sh_c[3 * k], sh_c[3 * k + 1], sh_c[3 * k + 2]);
}

// Sum_k c_k Y_k(dir) for k < (degree+1)^2 of primitive g (degree <= the stored one); dir: unit.
vec3 eval_sh(uint g, int degree, vec3 dir) {
    load_sh(g);
    vec3 result = SH_C0 * sh_coef(0);
#if SH_K >= 4
    if (degree < 1) return result;
    float x = dir.x, y = dir.y, z = dir.z;
    result += -SH_C1 * y * sh_coef(1) + SH_C1 * z * sh_coef(2) - SH_C1 * x * sh_coef(3);
#if SH_K >= 9
    if (degree < 2) return result;
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    result += SH_C2[0] * xy * sh_coef(4) + SH_C2[1] * yz * sh_coef(5)
            + SH_C2[2] * (2.0 * zz - xx - yy) * sh_coef(6)
            + SH_C2[3] * xz * sh_coef(7) + SH_C2[4] * (xx - yy) * sh_coef(8);
#if SH_K >= 16
    if (degree < 3) return result;
    result += SH_C3[0] * y * (3.0 * xx - yy) * sh_coef(9)
            + SH_C3[1] * xy * z * sh_coef(10)
            + SH_C3[2] * y * (4.0 * zz - xx - yy) * sh_coef(11)
            + SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * sh_coef(12)
            + SH_C3[4] * x * (4.0 * zz - xx - yy) * sh_coef(13)
            + SH_C3[5] * z * (xx - yy) * sh_coef(14)
            + SH_C3[6] * x * (xx - 3.0 * yy) * sh_coef(15);
#endif
#endif
#endif
    return result;
}
