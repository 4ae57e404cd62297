// sh.glsl: real spherical harmonics colour up to degree 3, INRIA coefficient order (include-only).
// Bindings: reads the `sh` float array declared by the including shader (index (g*K + k)*3 + channel).
// Reference: REFERENCE.md 1.2; constants from graphdeco-inria/diff-gaussian-rasterization >
// cuda_rasterizer/auxiliary.h (SH_C0..SH_C3); twin: renderer/torch_backend/sh.py.
const float SH_C0 = 0.28209479177387814;
const float SH_C1 = 0.4886025119029199;
const float SH_C2[5] = float[5](1.0925484305920792, -1.0925484305920792, 0.31539156525252005,
                                -1.0925484305920792, 0.5462742152960396);
const float SH_C3[7] = float[7](-0.5900435899266435, 2.890611442640554, -0.4570457994644658,
                                0.3731763325901154, -0.4570457994644658, 1.445305721320277,
                                -0.5900435899266435);

vec3 sh_coef(uint g, int K, int k) {
    uint i = (g * uint(K) + uint(k)) * 3u;
    return vec3(sh[i], sh[i + 1u], sh[i + 2u]);
}

// Sum_k c_k Y_k(dir) for k < (degree+1)^2; dir is a unit vector.
vec3 eval_sh(uint g, int K, int degree, vec3 dir) {
    vec3 result = SH_C0 * sh_coef(g, K, 0);
    if (degree < 1) return result;
    float x = dir.x, y = dir.y, z = dir.z;
    result += -SH_C1 * y * sh_coef(g, K, 1) + SH_C1 * z * sh_coef(g, K, 2) - SH_C1 * x * sh_coef(g, K, 3);
    if (degree < 2) return result;
    float xx = x * x, yy = y * y, zz = z * z, xy = x * y, yz = y * z, xz = x * z;
    result += SH_C2[0] * xy * sh_coef(g, K, 4) + SH_C2[1] * yz * sh_coef(g, K, 5)
            + SH_C2[2] * (2.0 * zz - xx - yy) * sh_coef(g, K, 6)
            + SH_C2[3] * xz * sh_coef(g, K, 7) + SH_C2[4] * (xx - yy) * sh_coef(g, K, 8);
    if (degree < 3) return result;
    result += SH_C3[0] * y * (3.0 * xx - yy) * sh_coef(g, K, 9)
            + SH_C3[1] * xy * z * sh_coef(g, K, 10)
            + SH_C3[2] * y * (4.0 * zz - xx - yy) * sh_coef(g, K, 11)
            + SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy) * sh_coef(g, K, 12)
            + SH_C3[4] * x * (4.0 * zz - xx - yy) * sh_coef(g, K, 13)
            + SH_C3[5] * z * (xx - yy) * sh_coef(g, K, 14)
            + SH_C3[6] * x * (xx - 3.0 * yy) * sh_coef(g, K, 15);
    return result;
}
