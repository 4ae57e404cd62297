"""Colour maps for the visualisation modes, shared by every backend (GLSL twin: shaders/colormap.glsl)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# Polynomial fit of the Turbo colour map (Google AI blog, Anton Mikhailov / Ruofei Du's fit),
# degree 5 per channel: c(x) = sum_k a_k x^k.
TURBO_COEFFS = torch.tensor([
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
], dtype=torch.float32)  # [3, 6]


def turbo(x: Tensor) -> Tensor:
    """[...] values in [0,1] (clamped) -> [..., 3] RGB."""
    x = x.clamp(0, 1)
    powers = torch.stack([x**k for k in range(6)], dim=-1)  # [..., 6]
    return (powers @ TURBO_COEFFS.to(x.device).T).clamp(0, 1)


def depth_to_rgb(depth: Tensor, alpha: Tensor, depth_range: tuple[float, float],
                 background: Tensor) -> Tensor:
    """Colour-map expected depth [H,W,1] over `depth_range`, composited on background [3] by alpha [H,W,1].

    Near is red, far is blue (Turbo reversed) so that close things stand out.
    """
    d0, d1 = depth_range
    t = 1.0 - (depth[..., 0] - d0) / max(d1 - d0, 1e-9)
    return turbo(t) * alpha + background * (1 - alpha)


def auto_depth_range(bounds: np.ndarray, T_camera_world: np.ndarray,
                     near: float = 0.01) -> tuple[float, float]:
    """(near, far) view-space z of a scene box [2,3] seen from a camera: the default colour-map range."""
    lo, hi = bounds
    corners = np.array([[x, y, z, 1.0]
                        for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    z = (corners @ T_camera_world.T)[:, 2]
    z_far = float(max(z.max(), near * 2))
    z_near = float(max(z.min(), near))
    return z_near, max(z_far, z_near * 1.001)
