"""3D Gaussian splat scene: the model every splat format loads into."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

SH_C0 = 0.28209479177387814


def sh_degree_from_coeffs(k: int) -> int:
    """Number of SH coefficients per channel (1, 4, 9, 16) to the degree (0..3)."""
    d = round(math.sqrt(k)) - 1
    if (d + 1) ** 2 != k or not 0 <= d <= 3:
        raise ValueError(f"{k} SH coefficients per channel is not (D+1)^2 for a degree D in 0..3")
    return d


def robust_bounds(points: np.ndarray, quantile: float = 0.01, margin: float = 0.05) -> np.ndarray:
    """Axis-aligned box holding the bulk of `points` [N,3]; far outliers are ignored.

    Returns [2,3] float64 (min row, max row). Quantiles keep a few stray floaters from
    framing the camera at a speck; a small margin keeps the bulk inside the view.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) == 0:
        return np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    if len(pts) < 50:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
    else:
        if len(pts) > 200_000:  # quantiles of a fixed subsample are plenty and 10x cheaper
            idx = np.random.default_rng(0).choice(len(pts), 200_000, replace=False)
            pts = pts[idx]
        lo, hi = np.quantile(pts, [quantile, 1.0 - quantile], axis=0)
    pad = np.maximum((hi - lo) * margin, 1e-6)
    return np.stack([lo - pad, hi + pad])


@dataclass(eq=False)
class GaussianScene:
    """N 3D Gaussians, stored activated. World frame: whatever the file used, with `up` as a hint.

    Raw (pre-activation) parameters for training: `raw()` and `from_raw()`.
    """

    kind: ClassVar[str] = "gaussians"

    means: Tensor  # [N, 3] float32, world positions
    quats: Tensor  # [N, 4] float32, (w, x, y, z), unit length
    scales: Tensor  # [N, 3] float32, standard deviations along the local axes (exp applied)
    opacities: Tensor  # [N] float32 in [0, 1] (sigmoid applied)
    sh: Tensor  # [N, K, 3] float32, K = (D+1)^2; coefficient 0 is DC, 1..K-1 in INRIA order
    # [N, 3, 3] float32: full 3D covariances that override quats/scales when set. Slicing a 4D
    # Gaussian gives a covariance with no (quat, scale) factorisation worth computing per frame.
    covars: Tensor | None = None
    up: tuple[float, float, float] | None = None  # world up direction if the file says so
    meta: dict = field(default_factory=dict)  # format, path, notes (e.g. rows dropped)
    # The raw parameters this scene was activated from (set by from_raw), so that raw() and the
    # writers reproduce a file bit for bit: exp/log and sigmoid/logit do not round-trip in float32.
    # Treat scenes as immutable: change tensors by making a new scene (map, subset, from_raw).
    raw_cache: dict | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(int(self.sh.shape[1]))

    @property
    def device(self) -> torch.device:
        return self.means.device

    @classmethod
    def from_raw(
        cls,
        means: Tensor,  # [N, 3]
        quats: Tensor,  # [N, 4] (w, x, y, z), any length
        log_scales: Tensor,  # [N, 3]
        opacity_logits: Tensor,  # [N]
        sh: Tensor,  # [N, K, 3]
        **kw,
    ) -> GaussianScene:
        """Activate raw parameters (exp, sigmoid, normalize) into a scene."""
        q = torch.nn.functional.normalize(quats, dim=-1)
        cache = {"means": means, "quats": quats, "log_scales": log_scales,
                 "opacity_logits": opacity_logits, "sh": sh}
        return cls(means, q, torch.exp(log_scales), torch.sigmoid(opacity_logits), sh,
                   raw_cache=cache, **kw)

    def raw(self) -> dict[str, Tensor]:
        """Pre-activation parameters: means, quats, log_scales [N,3], opacity_logits [N], sh."""
        if self.raw_cache is not None:
            return dict(self.raw_cache)
        eps = 1e-7
        op = self.opacities.clamp(eps, 1 - eps)
        return {
            "means": self.means,
            "quats": self.quats,
            "log_scales": torch.log(self.scales.clamp_min(1e-30)),
            "opacity_logits": torch.log(op) - torch.log1p(-op),
            "sh": self.sh,
        }

    @classmethod
    def empty(cls, sh_degree: int = 0) -> GaussianScene:
        k = (sh_degree + 1) ** 2
        z = torch.zeros
        return cls(z(0, 3), z(0, 4), z(0, 3), z(0), z(0, k, 3))

    def bounds(self) -> np.ndarray:
        """Robust axis-aligned box of the means, [2,3] float64 (outliers ignored)."""
        return robust_bounds(self.means.detach().cpu().numpy())

    def to(self, device: str | torch.device) -> GaussianScene:
        return self.map(lambda t: t.to(device))

    def map(self, fn) -> GaussianScene:
        """A new scene with `fn` applied to every per-Gaussian tensor."""
        return GaussianScene(
            fn(self.means), fn(self.quats), fn(self.scales), fn(self.opacities), fn(self.sh),
            covars=None if self.covars is None else fn(self.covars), up=self.up, meta=dict(self.meta),
            raw_cache=None if self.raw_cache is None else {k: fn(v) for k, v in self.raw_cache.items()},
        )

    def subset(self, index: Tensor) -> GaussianScene:
        """The Gaussians selected by a bool mask [N] or an index tensor [M]."""
        return self.map(lambda t: t[index])

    def finite_mask(self) -> Tensor:
        """[N] bool: rows whose every value is finite and whose quaternion is not zero."""
        parts = [self.means, self.quats, self.scales, self.opacities[:, None], self.sh.flatten(1)]
        ok = torch.cat([torch.isfinite(p) for p in parts], dim=1).all(dim=1)
        raw_q = self.raw_cache["quats"] if self.raw_cache is not None else self.quats
        return ok & (raw_q.norm(dim=1) > 0)

    def validate(self) -> None:
        """Raise ValueError if shapes or dtypes disagree."""
        n = len(self)
        checks = {
            "means": (self.means, (n, 3)),
            "quats": (self.quats, (n, 4)),
            "scales": (self.scales, (n, 3)),
            "opacities": (self.opacities, (n,)),
        }
        for name, (t, shape) in checks.items():
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"sh has shape {tuple(self.sh.shape)}, expected ({n}, K, 3)")
        sh_degree_from_coeffs(int(self.sh.shape[1]))
        if self.covars is not None and tuple(self.covars.shape) != (n, 3, 3):
            raise ValueError(f"covars has shape {tuple(self.covars.shape)}, expected ({n}, 3, 3)")
        for name in ("means", "quats", "scales", "opacities", "sh"):
            if getattr(self, name).dtype != torch.float32:
                raise ValueError(f"{name} is {getattr(self, name).dtype}, expected float32")
