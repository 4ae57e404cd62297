"""Real spherical harmonics up to degree 3, in the INRIA 3DGS coefficient order (REFERENCE 1.2)."""

from __future__ import annotations

import torch
from torch import Tensor

# Basis constants: graphdeco-inria/diff-gaussian-rasterization > cuda_rasterizer/auxiliary.h
# (SH_C0, SH_C1, SH_C2[], SH_C3[]), used by forward.cu > computeColorFromSH.
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(dirs: Tensor, degree: int) -> Tensor:
    """The (degree+1)^2 basis functions at unit directions.

    Args:
        dirs: Tensor  # [..., 3] unit vectors
        degree: 0..3
    Returns:
        Tensor  # [..., (degree+1)^2], INRIA order (coefficient 0 is DC)
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be 0..3, got {degree}")
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        out += [
            SH_C2[0] * xy,
            SH_C2[1] * yz,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * xz,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * xy * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def eval_sh(sh: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """View-dependent colour: max(0, sum_k sh_k Y_k(dir) + 0.5), as INRIA's computeColorFromSH.

    Args:
        sh: Tensor  # [N, K, 3], K >= (degree+1)^2; coefficients past the degree are ignored
        dirs: Tensor  # [N, 3] unit directions from the camera centre to the Gaussian
        degree: SH degree to evaluate, 0..3
    Returns:
        Tensor  # [N, 3]
    """
    nb = (degree + 1) ** 2
    if nb > sh.shape[-2]:
        raise ValueError(f"SH degree {degree} needs {nb} coefficients, the scene has {sh.shape[-2]}")
    if degree == 0:  # no direction needed; also the common case for "points" style colours
        rgb = SH_C0 * sh[:, 0]
    else:
        basis = sh_basis(dirs.to(sh.dtype), degree)  # [N, nb]
        rgb = torch.einsum("nk,nkc->nc", basis, sh[:, :nb])
    return torch.clamp_min(rgb + 0.5, 0.0)
