"""3D Convex Splatting scene (convexsplatting/convex-splatting): each primitive is the smooth
convex hull of K points, with a sharpness delta and a smoothness sigma."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .gaussians import robust_bounds, sh_degree_from_coeffs

MAX_POINTS = 8  # MAX_NB_POINTS in convexsplatting/diff-convex-rasterization > config.h


@dataclass(eq=False)
class ConvexScene:
    """N convexes of K points each, stored activated (exp for delta and sigma, sigmoid for opacity)."""

    kind: ClassVar[str] = "convex"

    points: Tensor  # [N, K, 3] float32, world positions of each convex's points (K <= 8)
    deltas: Tensor  # [N] float32 > 0, sharpness (exp applied): large -> polygon-like edges
    sigmas: Tensor  # [N] float32 > 0, smoothness of the inside/outside transition (exp applied)
    opacities: Tensor  # [N] float32 in [0, 1]
    sh: Tensor  # [N, C, 3] float32, C = (D+1)^2, INRIA order, coefficient 0 = DC
    # The public 3DCS rasterizer evaluates SH towards vec3(centre.z) (a C++ comma-operator slip,
    # REFERENCE 4 / FORMATS 4); scenes were trained with it, so it is the default. False: the
    # true direction from the camera to the centre.
    sh_center_quirk: bool = True
    up: tuple[float, float, float] | None = None
    meta: dict = field(default_factory=dict)
    raw_cache: dict | None = field(default=None, repr=False)  # see GaussianScene.raw_cache

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def num_points(self) -> int:
        return int(self.points.shape[1])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(int(self.sh.shape[1]))

    @property
    def centers(self) -> Tensor:
        """[N, 3] mean of each convex's points."""
        return self.points.mean(dim=1)

    @classmethod
    def from_raw(cls, points: Tensor, log_deltas: Tensor, log_sigmas: Tensor, opacity_logits: Tensor,
                 sh: Tensor, **kw) -> ConvexScene:
        """points [N,K,3], log_deltas [N], log_sigmas [N], opacity_logits [N], sh [N,C,3]."""
        cache = {"points": points, "log_deltas": log_deltas, "log_sigmas": log_sigmas,
                 "opacity_logits": opacity_logits, "sh": sh}
        return cls(points, torch.exp(log_deltas), torch.exp(log_sigmas), torch.sigmoid(opacity_logits), sh,
                   raw_cache=cache, **kw)

    def raw(self) -> dict[str, Tensor]:
        if self.raw_cache is not None:
            return dict(self.raw_cache)
        op = self.opacities.clamp(1e-7, 1 - 1e-7)
        return {"points": self.points, "log_deltas": torch.log(self.deltas),
                "log_sigmas": torch.log(self.sigmas),
                "opacity_logits": torch.log(op) - torch.log1p(-op), "sh": self.sh}

    def bounds(self) -> np.ndarray:
        return robust_bounds(self.centers.detach().cpu().numpy())

    def map(self, fn) -> ConvexScene:
        return ConvexScene(fn(self.points), fn(self.deltas), fn(self.sigmas), fn(self.opacities), fn(self.sh),
                           sh_center_quirk=self.sh_center_quirk, up=self.up, meta=dict(self.meta),
                           raw_cache=None if self.raw_cache is None
                           else {k: fn(v) for k, v in self.raw_cache.items()})

    def to(self, device) -> ConvexScene:
        return self.map(lambda t: t.to(device))

    def subset(self, index: Tensor) -> ConvexScene:
        return self.map(lambda t: t[index])

    def finite_mask(self) -> Tensor:
        parts = [self.points.flatten(1), self.deltas[:, None], self.sigmas[:, None], self.opacities[:, None],
                 self.sh.flatten(1)]
        return torch.cat([torch.isfinite(p) for p in parts], dim=1).all(dim=1)

    def validate(self) -> None:
        n = len(self)
        if self.points.ndim != 3 or self.points.shape[2] != 3 or not 3 <= self.points.shape[1] <= MAX_POINTS:
            raise ValueError(f"points has shape {tuple(self.points.shape)}, "
                             f"expected (N, K, 3) with 3 <= K <= {MAX_POINTS}")
        for name in ("deltas", "sigmas", "opacities"):
            if tuple(getattr(self, name).shape) != (n,):
                raise ValueError(f"{name} has shape {tuple(getattr(self, name).shape)}, expected ({n},)")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"sh has shape {tuple(self.sh.shape)}, expected ({n}, C, 3)")
        sh_degree_from_coeffs(int(self.sh.shape[1]))
