"""4D (dynamic) Gaussians: 4D-Rotor GS and Yang et al. 4DGS, sliced at a time into a GaussianScene.

Both models hold a 4D Gaussian (x, y, z, t) per row: mean (xyz, t_i), 4 scales and a 4D rotation.
Slicing at time t conditions the 4D Gaussian on t (REFERENCE.md section 3):

    L = M diag(s)                 M: 4x4 rotation, rows l_0..l_3 of L
    Sigma_tt = l_3 . l_3          sigma_i = l_i . l_3 (i < 3)
    v = sigma / Sigma_tt          the Gaussian's velocity
    mean(t) = xyz + v (t - t_i)
    Sigma3|t = Sigma_xyz - sigma sigma^T / Sigma_tt
    opacity(t) = o exp(-q),  q = 0.5 (t - t_i)^2 / Sigma_tt

Sigma3|t is computed as K K^T with K = L[:3] - v l_3 (the rows of L projected off l_3). That is
the same matrix (expand it), but it cannot lose positive definiteness to cancellation in float32.

The models differ in M, the cut-off and the colour:
- "rotor" (weify627/4D-Rotor-Gaussians): M from the 8-component rotor, fed UNNORMALIZED exactly as
  that code does (slice_4d gets the raw quats1/quats2); a Gaussian is skipped when q >= 16; colour
  is plain degree-3 SH.
- "yang" (fudan-zvg/4d-gaussian-splatting): M = flip(M_l(q_l) M_r(q_r)) of two unit quaternions;
  the marginal exp(-q) uses Sigma_tt + prefilter_var and the Gaussian is dropped when it is
  <= 0.05; colour adds Fourier-in-time blocks: sh(t) = sum_n cos(2 pi n dt / L) c_n with
  dt = t_i - t (cos is even, so the sign is moot) and L = time_duration[1] - time_duration[0].
  Folding the blocks per Gaussian gives a plain SH per Gaussian, evaluated by the rasterizer in the
  direction of the conditioned mean, as the reference does.

slice() removes the Gaussians that cannot show at t (cheaper than zero opacity: the rasterizer
never sees them) before the 4x4 maths: the model's own cut, plus (by default) those whose
opacity o exp(-q) is below 1/255, which every rasterizer in Radview skips anyway (alpha =
o' exp(power) <= o' < 1/255), so the image is unchanged. The pre-cull needs only Sigma_tt, which
does not depend on t; it is cached per scene and recomputed when a parameter tensor changes.

The sliced GaussianScene carries `covars`; its `quats` are identity and its `scales` the per-axis
standard deviations sqrt(diag Sigma3) (the half-extents / 3 of the ellipsoid's bounding box), so
code that only wants an extent still gets a right one; the covariance comes from `covars`.

Every step is a small function on [N, ...] tensors so the GLSL compute pass can mirror it 1:1:
rotor_matrix / yang_matrix (explicit entries; torch runs them as one GEMM, see _weights),
condition, temporal_q, fold_time_sh. Note on Yang: early commits of that repo built R without the
flip; REFERENCE/FORMATS (checked against its CUDA path) use the flip, and so does this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .gaussians import GaussianScene, robust_bounds, sh_degree_from_coeffs

# weify627/4D-Rotor-Gaussians > nerfstudio/models/splatfacto.py > forward_1: temporal_thres = 16,
# a Gaussian is rasterized only when 0.5 * w * dt^2 < 16.
ROTOR_Q_CUT = 16.0
# fudan-zvg/4d-gaussian-splatting > gaussian_renderer/__init__.py > render: mask = marginal_t > 0.05
YANG_MARGINAL_MIN = 0.05
YANG_Q_CUT = math.log(1.0 / YANG_MARGINAL_MIN)  # exp(-q) > 0.05  <=>  q < ln 20
ALPHA_MIN = 1.0 / 255.0  # blending skips alpha below this (REFERENCE 1.4)
MODELS = ("rotor", "yang")


# ---------------------------------------------------------------- rotation matrices (GLSL twins)

def rotor_matrix(r: Tensor) -> Tensor:
    """4D rotation from 8-component rotors, as 4D-Rotor GS builds it (REFERENCE 3.2, rows of M).

    Args:
        r: [N, 8] (a, b_xy, b_xz, b_yz | b_xw, b_yw, b_zw, p), NOT normalized: the entries are
           quadratic in r, so |r|^2 scales the matrix, exactly as in the reference code.
    Returns:
        [N, 4, 4] M (after that code's final transpose).
    """
    s, bxy, bxz, byz, bxw, byw, bzw, p = r.unbind(-1)
    s2, xy2, xz2, yz2 = s * s, bxy * bxy, bxz * bxz, byz * byz
    xw2, yw2, zw2, p2 = bxw * bxw, byw * byw, bzw * bzw, p * p
    rows = [
        [s2 - xy2 - xz2 - xw2 + yz2 + yw2 + zw2 - p2,
         2 * (bxy * s - bxz * byz - bxw * byw + bzw * p),
         2 * (bxy * byz + bxz * s - bxw * bzw - byw * p),
         2 * (bxy * byw + bxz * bzw + bxw * s + byz * p)],
        [-2 * (bxy * s + bxz * byz + bxw * byw + bzw * p),
         s2 - xy2 + xz2 + xw2 - yz2 - yw2 + zw2 - p2,
         2 * (-bxy * bxz + bxw * p + byz * s - byw * bzw),
         2 * (-bxy * bxw - bxz * p + byz * bzw + byw * s)],
        [2 * (bxy * byz - bxz * s - bxw * bzw + byw * p),
         -2 * (bxy * bxz + bxw * p + byw * bzw + byz * s),
         s2 + xy2 - xz2 + xw2 - yz2 + yw2 - zw2 - p2,
         2 * (bxy * p - bxz * bxw - byw * byz + bzw * s)],
        rotor_time_row(r).unbind(-1),
    ]
    return torch.stack([torch.stack(list(row), dim=-1) for row in rows], dim=-2)


def rotor_time_row(r: Tensor) -> Tensor:
    """Row 3 (the t row) of rotor_matrix(r) alone: [N, 8] -> [N, 4]. Enough for Sigma_tt."""
    s, bxy, bxz, byz, bxw, byw, bzw, p = r.unbind(-1)
    return torch.stack([
        2 * (bxy * byw + bxz * bzw - bxw * s - byz * p),
        2 * (-bxy * bxw + bxz * p + byz * bzw - byw * s),
        -2 * (bxy * p + bxz * bxw + byz * byw + bzw * s),
        s * s + bxy * bxy + bxz * bxz - bxw * bxw + byz * byz - byw * byw - bzw * bzw - p * p,
    ], dim=-1)


def _quat_left(q: Tensor) -> Tensor:
    """[N, 4] (a, b, c, d) -> [N, 4, 4] M_l of REFERENCE 3.1."""
    a, b, c, d = q.unbind(-1)
    return torch.stack([a, -b, -c, -d, b, a, -d, c, c, d, a, -b, d, -c, b, a], dim=-1).unflatten(-1, (4, 4))


def _quat_right(q: Tensor) -> Tensor:
    """[N, 4] (p, q, r, s) -> [N, 4, 4] M_r of REFERENCE 3.1."""
    p, q_, r, s = q.unbind(-1)
    rows = [p, q_, r, s, -q_, p, -s, r, -r, s, p, -q_, -s, -r, q_, p]
    return torch.stack(rows, dim=-1).unflatten(-1, (4, 4))


def yang_matrix(rot: Tensor) -> Tensor:
    """4D rotation of Yang et al.: R = M_l M_r with rows and columns reversed.

    Args:
        rot: [N, 8] left | right quaternions (w, x, y, z); normalized here as the reference does.
    Returns:
        [N, 4, 4]
    """
    ql = torch.nn.functional.normalize(rot[..., :4], dim=-1)
    qr = torch.nn.functional.normalize(rot[..., 4:], dim=-1)
    return (_quat_left(ql) @ _quat_right(qr)).flip(-2, -1)


def yang_time_row(rot: Tensor) -> Tensor:
    """Row 3 of yang_matrix(rot) alone, [N, 8] -> [N, 4]: row 0 of M_l M_r, reversed."""
    ql = torch.nn.functional.normalize(rot[..., :4], dim=-1)
    qr = torch.nn.functional.normalize(rot[..., 4:], dim=-1)
    a, b, c, d = ql.unbind(-1)
    row0 = torch.stack([a, -b, -c, -d], dim=-1)  # first row of M_l
    return (row0.unsqueeze(-2) @ _quat_right(qr)).squeeze(-2).flip(-1)


def _yang_product(ql: Tensor, qr: Tensor) -> Tensor:
    """flip(M_l(ql) M_r(qr)) without normalizing: bilinear in (ql, qr)."""
    return (_quat_left(ql) @ _quat_right(qr)).flip(-2, -1)


# The explicit functions above are the readable (and GLSL) form. For torch, every entry of the
# rotor matrix is a quadratic form r^T Q_ij r and every entry of Yang's matrix a bilinear form
# l^T C_ij r, so a whole batch is one GEMM: (r outer r) [N, 64] @ W [64, 16]. W is recovered from
# the explicit functions themselves (polarization on basis vectors), so they stay the one source
# of truth. On CPU this is several times faster than 16 stacked elementwise expressions.
_WEIGHTS: dict = {}


def _rotor_weights() -> Tensor:
    eye = torch.eye(8, dtype=torch.float64)
    diag = rotor_matrix(eye).reshape(8, 16)  # Q_ii
    w = torch.zeros(8, 8, 16, dtype=torch.float64)
    for i in range(8):
        w[i, i] = diag[i]
        for j in range(i + 1, 8):
            both = rotor_matrix((eye[i] + eye[j])[None]).reshape(16)
            w[i, j] = w[j, i] = 0.5 * (both - diag[i] - diag[j])  # Q_ij
    return w.reshape(64, 16)


def _yang_weights() -> Tensor:
    eye = torch.eye(4, dtype=torch.float64)
    ql = eye[:, None, :].expand(4, 4, 4).reshape(16, 4)
    qr = eye[None, :, :].expand(4, 4, 4).reshape(16, 4)
    return _yang_product(ql, qr).reshape(16, 16)  # row 4 a + b: coefficient of l_a r_b


def _weights(model: str, like: Tensor) -> Tensor:
    key = (model, like.dtype, like.device)
    if key not in _WEIGHTS:
        w = _rotor_weights() if model == "rotor" else _yang_weights()
        _WEIGHTS[key] = w.to(dtype=like.dtype, device=like.device)
    return _WEIGHTS[key]


def _pair_products(model: str, rot: Tensor) -> Tensor:
    """[N, 8] -> [N, 64] r_i r_j (rotor) or [N, 16] l_a r_b of the unit quaternions (yang)."""
    if model == "rotor":
        return (rot.unsqueeze(-1) * rot.unsqueeze(-2)).flatten(-2)
    ql = torch.nn.functional.normalize(rot[..., :4], dim=-1)
    qr = torch.nn.functional.normalize(rot[..., 4:], dim=-1)
    return (ql.unsqueeze(-1) * qr.unsqueeze(-2)).flatten(-2)


def rotation_matrix(model: str, rot: Tensor) -> Tensor:
    """[N, 8] -> [N, 4, 4]: rotor_matrix or yang_matrix, as one GEMM (see _weights)."""
    return (_pair_products(model, rot) @ _weights(model, rot)).unflatten(-1, (4, 4))


def time_row(model: str, rot: Tensor) -> Tensor:
    """[N, 8] -> [N, 4]: row 3 of rotation_matrix (rotor_time_row / yang_time_row), as one GEMM."""
    return _pair_products(model, rot) @ _weights(model, rot)[:, 12:]


# ---------------------------------------------------------------- conditioning (GLSL twins)

def sigma_tt(model: str, rot: Tensor, scales: Tensor) -> Tensor:
    """Temporal variance Sigma_tt = |row 3 of M diag(s)|^2: [N, 8], [N, 4] -> [N]."""
    return ((time_row(model, rot) * scales) ** 2).sum(-1)


def condition(L: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Condition the 4D Gaussian with covariance L L^T on t.

    Args:
        L: [N, 4, 4] M diag(s).
    Returns:
        cov3 [N, 3, 3] (Sigma3|t), velocity [N, 3] (Sigma_xyz,t / Sigma_tt), sigma_tt [N].
    """
    l3 = L[:, 3:, :]  # [N, 1, 4]
    s_tt = (l3 * l3).sum(-1)  # [N, 1]
    vel = (L[:, :3, :] * l3).sum(-1) / s_tt  # [N, 3]
    k = L[:, :3, :] - vel.unsqueeze(-1) * l3  # rows projected off l_3
    return k @ k.transpose(-1, -2), vel, s_tt.squeeze(-1)


def temporal_q(dt: Tensor, s_tt: Tensor) -> Tensor:
    """q = 0.5 dt^2 / Sigma_tt; opacity factor exp(-q). Sigma_tt <= 0 gives +inf (never shown)."""
    safe = torch.where(s_tt > 0, s_tt, torch.ones_like(s_tt))
    return torch.where(s_tt > 0, 0.5 * dt * dt / safe, torch.full_like(s_tt, math.inf))


def fold_time_sh(blocks: list[Tensor], dt: Tensor, duration: float) -> Tensor:
    """Yang's time Fourier colour folded into one SH per Gaussian.

    Args:
        blocks: T tensors [N, K, 3], the SH blocks c_0..c_{T-1}; dt: [N] = t_i - t; duration: L > 0.
    Returns:
        [N, K, 3] sum_n cos(2 pi n dt / L) c_n.
    """
    out = blocks[0]
    for n in range(1, len(blocks)):
        w = torch.cos((2.0 * math.pi * n / duration) * dt)
        out = out + w[:, None, None] * blocks[n]
    return out


def q_cut(model: str) -> float:
    return ROTOR_Q_CUT if model == "rotor" else YANG_Q_CUT


# ---------------------------------------------------------------- the scene

@dataclass(eq=False)
class Gaussian4DScene:
    """N 4D Gaussians (either parameterization), stored activated; slice(t) -> GaussianScene.

    Raw parameters (log scales, opacity logits, raw rotations): `raw()` and `from_raw()`.
    """

    kind: ClassVar[str] = "gaussians4d"

    model: str  # "rotor" (4D-Rotor GS) | "yang" (Yang et al. 4DGS)
    means: Tensor  # [N, 3] float32, xyz of the 4D mean (the position at t = times)
    times: Tensor  # [N] float32, t of the 4D mean (seconds, or whatever unit the scene trained in)
    scales: Tensor  # [N, 4] float32, std devs along the local x, y, z, t axes (exp applied)
    # [N, 8] float32. rotor: (a, b_xy, b_xz, b_yz | b_xw, b_yw, b_zw, p), raw, NOT normalized
    # (the reference slices unnormalized rotors). yang: left | right unit quaternions (w, x, y, z).
    rotations: Tensor
    opacities: Tensor  # [N] float32 in [0, 1] (sigmoid applied)
    sh: Tensor  # [N, T, K, 3] float32: T time Fourier blocks (1 for rotor), K = (D+1)^2, INRIA order
    time_duration: tuple[float, float] | None = None  # yang: L = [1] - [0]; both: the timeline range
    prefilter_var: float = 0.0  # yang only: added to Sigma_tt in the marginal when > 0
    up: tuple[float, float, float] | None = None
    meta: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(int(self.sh.shape[2]))

    @property
    def time_degree(self) -> int:
        """Highest time Fourier order (0 for rotor, up to 2 for Yang)."""
        return int(self.sh.shape[1]) - 1

    @property
    def device(self) -> torch.device:
        return self.means.device

    # -- construction

    @classmethod
    def from_raw(cls, model: str, means: Tensor, times: Tensor, log_scales: Tensor, rotations: Tensor,
                 opacity_logits: Tensor, sh: Tensor, **kw) -> Gaussian4DScene:
        """Activate raw parameters: exp scales, sigmoid opacity; yang quaternions are normalized.

        log_scales [N, 4] (x, y, z, t); rotations [N, 8]; opacity_logits [N]; sh [N, T, K, 3].
        """
        if model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, not {model!r}")
        if model == "yang":
            rotations = torch.cat([torch.nn.functional.normalize(rotations[:, :4], dim=-1),
                                   torch.nn.functional.normalize(rotations[:, 4:], dim=-1)], dim=1)
        return cls(model, means, times, torch.exp(log_scales), rotations,
                   torch.sigmoid(opacity_logits), sh, **kw)

    def raw(self) -> dict[str, Tensor]:
        """Pre-activation parameters: means, times, log_scales [N,4], rotations, opacity_logits, sh."""
        eps = 1e-7
        op = self.opacities.clamp(eps, 1 - eps)
        return {
            "means": self.means,
            "times": self.times,
            "log_scales": torch.log(self.scales.clamp_min(1e-30)),
            "rotations": self.rotations,
            "opacity_logits": torch.log(op) - torch.log1p(-op),
            "sh": self.sh,
        }

    def map(self, fn) -> Gaussian4DScene:
        """A new scene with `fn` applied to every per-Gaussian tensor."""
        return Gaussian4DScene(
            self.model, fn(self.means), fn(self.times), fn(self.scales), fn(self.rotations),
            fn(self.opacities), fn(self.sh), time_duration=self.time_duration,
            prefilter_var=self.prefilter_var, up=self.up, meta=dict(self.meta),
        )

    def to(self, device: str | torch.device) -> Gaussian4DScene:
        return self.map(lambda t: t.to(device))

    def subset(self, index: Tensor) -> Gaussian4DScene:
        """The Gaussians selected by a bool mask [N] or an index tensor [M]."""
        return self.map(lambda t: t[index])

    def finite_mask(self) -> Tensor:
        """[N] bool: rows whose every value is finite (and, for yang, whose quaternions are non-zero)."""
        parts = [self.means, self.times[:, None], self.scales, self.rotations,
                 self.opacities[:, None], self.sh.flatten(1)]
        ok = torch.cat([torch.isfinite(p) for p in parts], dim=1).all(dim=1)
        if self.model == "yang":
            ok &= (self.rotations[:, :4].norm(dim=1) > 0) & (self.rotations[:, 4:].norm(dim=1) > 0)
        return ok

    def validate(self) -> None:
        """Raise ValueError if shapes, dtypes or the model name disagree."""
        if self.model not in MODELS:
            raise ValueError(f"model is {self.model!r}, expected one of {MODELS}")
        n = len(self)
        checks = {"means": (n, 3), "times": (n,), "scales": (n, 4), "rotations": (n, 8),
                  "opacities": (n,)}
        for name, shape in checks.items():
            t = getattr(self, name)
            if tuple(t.shape) != shape:
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {shape}")
        if self.sh.ndim != 4 or self.sh.shape[0] != n or self.sh.shape[3] != 3:
            raise ValueError(f"sh has shape {tuple(self.sh.shape)}, expected ({n}, T, K, 3)")
        sh_degree_from_coeffs(int(self.sh.shape[2]))
        if self.model == "rotor" and self.sh.shape[1] != 1:
            raise ValueError("a rotor scene has no time colour blocks (sh.shape[1] must be 1)")
        if self.model == "yang" and self.sh.shape[1] > 1:
            td = self.time_duration
            if td is None or not td[1] > td[0]:
                raise ValueError("a yang scene with time colour needs time_duration (t0, t1), t1 > t0")
        for name in ("means", "times", "scales", "rotations", "opacities", "sh"):
            if getattr(self, name).dtype != torch.float32:
                raise ValueError(f"{name} is {getattr(self, name).dtype}, expected float32")

    # -- time

    def time_range(self) -> tuple[float, float]:
        """The timeline (t0, t1): time_duration when known, else where the bulk of the means lie."""
        if self.time_duration is not None:
            return float(self.time_duration[0]), float(self.time_duration[1])
        t = self.times.detach().cpu().double().numpy()
        t = t[np.isfinite(t)]
        if len(t) == 0:
            return 0.0, 1.0
        lo, hi = np.quantile(t, [0.005, 0.995]) if len(t) >= 200 else (t.min(), t.max())
        return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)

    def sigma_tt(self) -> Tensor:
        """[N] temporal variance Sigma_tt (no gradient), cached until a parameter tensor changes."""
        # The cache holds the tensors themselves (compared with `is`) and their in-place versions,
        # so replacing a field or an optimizer step on it both invalidate it.
        src = (self.model, self.rotations, self.rotations._version, self.scales, self.scales._version)
        hit = self._cache.get("s_tt")
        if hit is None or not _same(hit[0], src):
            with torch.no_grad():
                hit = (src, sigma_tt(self.model, self.rotations.detach(), self.scales.detach()))
            self._cache["s_tt"] = hit
        return hit[1]

    def _q_max(self, drop_invisible: bool) -> Tensor:
        """[N] largest q at which each Gaussian is still drawn (model cut, optionally alpha >= 1/255)."""
        cut = torch.full_like(self.opacities, q_cut(self.model)).detach()
        if drop_invisible:
            # o exp(-q) >= 1/255  <=>  q <= ln(255 o); o < 1/255 gives a negative bound: never drawn
            vis = torch.log(self.opacities.detach().clamp_min(1e-30) / ALPHA_MIN)
            cut = torch.minimum(cut, vis)
        return cut

    def _marginal_var(self, s_tt: Tensor) -> Tensor:
        if self.model == "yang" and self.prefilter_var > 0:
            return s_tt + self.prefilter_var
        return s_tt

    def temporal_extent(self, drop_invisible: bool = True) -> tuple[Tensor, Tensor]:
        """Per-Gaussian interval where it is drawn: (t_lo [N], t_hi [N]).

        Drawn means inside the model's cut and, with drop_invisible, o exp(-q) >= 1/255.
        A Gaussian that is never drawn gets (+inf, -inf).
        """
        q_max = self._q_max(drop_invisible)
        var = self._marginal_var(self.sigma_tt())
        half = torch.sqrt(2.0 * q_max.clamp_min(0) * var.clamp_min(0))
        never = (q_max < 0) | ~(var > 0)
        t = self.times.detach()
        lo = torch.where(never, torch.full_like(t, math.inf), t - half)
        hi = torch.where(never, torch.full_like(t, -math.inf), t + half)
        return lo, hi

    def visible_at(self, t: float, drop_invisible: bool = True) -> Tensor:
        """[N] bool: the Gaussians slice(t) keeps (the cheap pre-cull, no 4x4 maths)."""
        var = self._marginal_var(self.sigma_tt())
        q = temporal_q(float(t) - self.times.detach(), var)
        keep = q < q_cut(self.model)
        if drop_invisible:
            keep &= q <= self._q_max(True)
        return keep

    # -- slicing

    def slice(self, t: float, drop_invisible: bool = True) -> GaussianScene:
        """The 3D Gaussians at time t (differentiable w.r.t. the scene tensors).

        Culled Gaussians are removed, not zeroed (see the module docstring). The result has
        `covars` set; quats are identity and scales sqrt(diag covars), placeholders for extents.
        """
        t = float(t)
        idx = self.visible_at(t, drop_invisible).nonzero().squeeze(1)
        rot, sc = self.rotations.index_select(0, idx), self.scales.index_select(0, idx)
        L = rotation_matrix(self.model, rot) * sc.unsqueeze(-2)  # M diag(s)
        cov3, vel, s_tt = condition(L)
        dt = t - self.times.index_select(0, idx)  # t - t_i
        means = self.means.index_select(0, idx) + vel * dt.unsqueeze(-1)
        opac = self.opacities.index_select(0, idx) * torch.exp(-temporal_q(dt, self._marginal_var(s_tt)))
        if self.model == "yang" and self.sh.shape[1] > 1:
            if self.time_duration is None:
                raise ValueError("this yang scene has time colour but no time_duration (t0, t1)")
            t0, t1 = self.time_duration
            blocks = [self.sh[:, n].index_select(0, idx) for n in range(self.sh.shape[1])]
            sh = fold_time_sh(blocks, -dt, float(t1 - t0))
        else:
            sh = self.sh[:, 0].index_select(0, idx)
        quats = torch.zeros(len(idx), 4, dtype=means.dtype, device=means.device)
        quats[:, 0] = 1
        scales = torch.sqrt(torch.diagonal(cov3, dim1=-2, dim2=-1).clamp_min(0))
        meta = {"sliced_from": self.meta.get("path"), "time": t, "culled": len(self) - len(idx)}
        return GaussianScene(means, quats, scales, opac, sh, covars=cov3, up=self.up, meta=meta)

    def bounds(self) -> np.ndarray:
        """Robust axis-aligned box over the 4D means' xyz, [2,3] float64 (outliers ignored)."""
        return robust_bounds(self.means.detach().cpu().numpy())


def _same(a: tuple, b: tuple) -> bool:
    if len(a) != len(b):
        return False
    return all(x is y if isinstance(x, Tensor) else x == y for x, y in zip(a, b, strict=True))


