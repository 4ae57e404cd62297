"""EWA projection of 3D Gaussians to screen-space ellipses (REFERENCE 1.1), differentiable.

Pixel convention as gsplat: means2d = (fx x/z + cx, fy y/z + cy) in pixel units, with pixel
(i, j) centred at (i + 0.5, j + 0.5). The dtype follows the inputs (float64 works end to end).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .tiles import tile_rects

# Mip (anti-aliased) mode floors the opacity compensation at 0.005^2 before the square root
# (REFERENCE 1.1, "Anti-aliased mode"). gsplat 1.5.3's Utils.cuh > add_blur floors at 0 instead;
# the two agree whenever det/det_dilated >= 2.5e-5.
MIP_MIN_RATIO = 0.005**2


@dataclass
class Projection:
    """Per-Gaussian screen-space quantities; rows with valid == False hold finite filler values."""

    means2d: Tensor  # [N, 2] pixel coordinates
    conics: Tensor  # [N, 3] (a, b, c) of the inverse dilated 2D covariance [[a, b], [b, c]]
    cov2d: Tensor  # [N, 3] (xx, xy, yy) of the dilated 2D covariance
    depths: Tensor  # [N] view-space z
    radii: Tensor  # [N] int32, ceil(3 sqrt(lambda_max)); 0 = culled
    opacity_scale: Tensor  # [N] 1 ("classic") or the mip compensation ("mip")
    valid: Tensor  # [N] bool


def quat_to_rotmat(quats: Tensor) -> Tensor:
    """[N, 4] (w, x, y, z), any length -> [N, 3, 3] rotation matrices."""
    w, x, y, z = F.normalize(quats, dim=-1).unbind(-1)
    r = torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1)
    return r.reshape(quats.shape[:-1] + (3, 3))


def quat_scale_to_covar(quats: Tensor, scales: Tensor) -> Tensor:
    """3D covariances R S S^T R^T (INRIA computeCov3D).

    Args:
        quats: Tensor  # [N, 4] (w, x, y, z), normalized here
        scales: Tensor  # [N, 3] standard deviations along the local axes
    Returns:
        Tensor  # [N, 3, 3]
    """
    m = quat_to_rotmat(quats) * scales[..., None, :]  # R S
    return m @ m.transpose(-1, -2)


def project_gaussians(
    means: Tensor,  # [N, 3] world
    covars: Tensor,  # [N, 3, 3] world
    viewmat: Tensor,  # [4, 4] world -> camera (OpenCV axes)
    fx: float, fy: float, cx: float, cy: float,
    width: int, height: int,
    near: float = 0.01,
    far: float = 1e10,
    antialias: str = "classic",
    eps2d: float = 0.3,
    tile: int = 16,
) -> Projection:
    """Project Gaussians to the image (gsplat's guard band, INRIA's radius and tile culling).

    Culled (valid False, radius 0): z < near or z > far, det of the dilated 2D covariance <= 0,
    non-finite values, and boxes that touch no tile of the image.

    Args:
        antialias: "classic" (dilate by eps2d, opacity unchanged) or "mip" (dilate by eps2d and
            scale opacity by sqrt(max(0.005^2, det / det_dilated))).
    Returns:
        Projection
    """
    if antialias not in ("classic", "mip"):
        raise ValueError(f"antialias must be 'classic' or 'mip', got {antialias!r}")
    dtype = means.dtype
    viewmat = viewmat.to(device=means.device, dtype=dtype)
    rot, trans = viewmat[:3, :3], viewmat[:3, 3]
    means_c = means @ rot.T + trans  # [N, 3]
    covars_c = rot @ covars @ rot.T  # [N, 3, 3]

    x, y, z = means_c.unbind(-1)
    in_depth = (z >= near) & (z <= far)
    # Rows behind the camera get z = 1 so that nothing below divides by ~0 (their values are
    # discarded, and finite fillers keep autograd free of inf * 0).
    zs = torch.where(in_depth, z, torch.ones_like(z))

    # gsplat Utils.cuh > persp_proj: the Jacobian is taken at the mean clamped to a band 30 %
    # (of the half field of view) wider than the image.
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    lim_xp, lim_xn = (width - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (height - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    tx = zs * torch.clamp(x / zs, -lim_xn, lim_xp)
    ty = zs * torch.clamp(y / zs, -lim_yn, lim_yp)
    zero = torch.zeros_like(zs)
    jac = torch.stack([
        fx / zs, zero, -fx * tx / (zs * zs),
        zero, fy / zs, -fy * ty / (zs * zs),
    ], dim=-1).reshape(-1, 2, 3)
    cov = jac @ covars_c @ jac.transpose(-1, -2)  # [N, 2, 2]

    means2d = torch.stack([fx * x / zs + cx, fy * y / zs + cy], dim=-1)

    a0, b, c0 = cov[:, 0, 0], 0.5 * (cov[:, 0, 1] + cov[:, 1, 0]), cov[:, 1, 1]
    det_orig = a0 * c0 - b * b
    a, c = a0 + eps2d, c0 + eps2d
    det = a * c - b * b

    with torch.no_grad():
        finite = torch.isfinite(means2d).all(-1) & torch.isfinite(det) & torch.isfinite(a) & torch.isfinite(c)
        valid = in_depth & (det > 0) & finite
        # INRIA forward.cu > preprocessCUDA: radius from the larger eigenvalue.
        h = 0.5 * (a + c)
        lam = h + torch.sqrt(torch.clamp_min(h * h - det, 0.1))
        radii_f = torch.ceil(3.0 * torch.sqrt(torch.clamp_min(lam, 0)))
        radii_f = torch.where(valid, torch.nan_to_num(radii_f, nan=0.0, posinf=0.0), 0.0)
        radii_f = radii_f.clamp(max=2**30)
        rmin, rmax = tile_rects(means2d, radii_f, width, height, tile)
        touches = ((rmax - rmin) > 0).all(-1)
        valid = valid & touches & (radii_f > 0)
        radii = torch.where(valid, radii_f, torch.zeros_like(radii_f)).to(torch.int32)

    det_s = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c / det_s, -b / det_s, a / det_s], dim=-1)
    if antialias == "mip":
        ratio = torch.where(valid, det_orig / det_s, torch.ones_like(det_s))
        opacity_scale = torch.sqrt(torch.clamp_min(ratio, MIP_MIN_RATIO))
    else:
        opacity_scale = torch.ones_like(z)
    return Projection(
        means2d=means2d,
        conics=conics,
        cov2d=torch.stack([a, b, c], dim=-1),
        depths=z,
        radii=radii,
        opacity_scale=opacity_scale,
        valid=valid,
    )
