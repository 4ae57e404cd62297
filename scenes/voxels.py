"""Voxel-grid radiance fields (DirectVoxGO, Plenoxels): the model both loaders fill.

Storage, stated once:
- Dense (DirectVoxGO): `density` [X,Y,Z] raw (pre-activation) and `features` [C,X,Y,Z], the
  layouts of DVGO's `density.grid[0,0]` and `k0.grid[0]`.
- Sparse (Plenoxels): `links` [X,Y,Z] int32 (-1 = empty voxel, reads as density 0 and features 0),
  `density` [M] raw and `features` [M,C]: svox2's own layout, kept as is because a dense copy of a
  512^3 grid with 27 SH channels would not fit in memory.

Sample positions: grid values sit on the corners of the world box, like
`grid_sample(align_corners=True)`: voxel (i,j,k) is at xyz_min + (i,j,k)/(size-1) * (xyz_max-xyz_min).
A point is looked up by trilinear interpolation of the 8 surrounding values.

Opacity of one ray step of `stepsize * voxel_size` world units:
- density_activation "softplus" (DVGO Raw2Alpha, post-activation):
  alpha = 1 - (1 + exp(d + act_shift)) ** (-interval), interval = stepsize * voxel_size_ratio.
- density_activation "relu" (svox2): alpha = 1 - exp(-relu(d) * interval); the loader sets
  voxel_size_ratio = voxel_size so that interval is the step's world length.

Colour modes: "sigmoid_k0" (DVGO coarse: rgb = sigmoid(features[:3])), "mlp" (DVGO fine:
rgb = sigmoid(mlp([features, emb(dir)])), with rgbnet_direct False the MLP sees features[3:] and
features[:3] is added to its logits), "sh" (Plenoxels: rgb = max(0, sum_k sh_k Y_k(dir) + 0.5),
features channel-major [3 * K]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

COLOR_MODES = ("sigmoid_k0", "mlp", "sh")
DENSITY_ACTIVATIONS = ("softplus", "relu")


def dvgo_act_shift(alpha_init: float) -> float:
    """DVGO's density bias: log(1/(1-alpha_init) - 1) (sunset1995/DirectVoxGO > lib/dvgo.py > __init__)."""
    return math.log(1.0 / (1.0 - alpha_init) - 1.0)


def view_embedding_dim(viewbase_pe: int) -> int:
    """Width of DVGO's view embedding [d, sin(d*2^i), cos(d*2^i)], i < viewbase_pe."""
    return 3 + 3 * viewbase_pe * 2


@dataclass(eq=False)
class VoxelGridScene:
    """A density grid plus a colour representation inside an axis-aligned world box."""

    kind: ClassVar[str] = "voxels"

    density: Tensor  # [X,Y,Z] float32 raw (dense) or [M] (with links)
    features: Tensor  # [C,X,Y,Z] float32 (dense) or [M,C] (with links); C=3 coarse, 12 fine, 3*K for SH
    xyz_min: Tensor  # [3] float32, world position of voxel (0,0,0)
    xyz_max: Tensor  # [3] float32, world position of voxel (X-1,Y-1,Z-1)
    color_mode: str = "sigmoid_k0"  # sigmoid_k0 | mlp | sh
    density_activation: str = "softplus"  # softplus (DVGO, with act_shift) | relu (Plenoxels)
    act_shift: float = 0.0  # added to raw density before softplus
    voxel_size: float = 1.0  # world length of a voxel; the ray step is stepsize * voxel_size
    voxel_size_ratio: float = 1.0  # voxel_size / voxel_size_base: density units per voxel (DVGO)
    stepsize: float = 0.5  # ray step in voxels
    fast_color_thres: float = 0.0  # samples with alpha (then weight) <= this are skipped
    stop_thresh: float = 1e-3  # stop a ray once its transmittance falls below this
    mlp: list[tuple[Tensor, Tensor]] | None = None  # [(weight [out,in], bias [out])], ReLU between
    viewbase_pe: int = 4  # view-direction frequencies 2^0 .. 2^(pe-1)
    rgbnet_direct: bool = True  # False: features[:3] is a diffuse logit added to the MLP output
    mask: Tensor | None = None  # [X',Y',Z'] bool occupancy; False = known free space
    mask_xyz2ijk_scale: Tensor | None = None  # [3] float32: ijk = round(xyz * scale + shift)
    mask_xyz2ijk_shift: Tensor | None = None  # [3] float32
    links: Tensor | None = None  # [X,Y,Z] int32 indices into density/features, -1 = empty
    up: tuple[float, float, float] | None = None
    meta: dict = field(default_factory=dict)

    # -- shape helpers ------------------------------------------------------------------------
    @property
    def grid_shape(self) -> tuple[int, int, int]:
        """(X, Y, Z) voxel counts of the lattice."""
        g = self.links if self.links is not None else self.density
        return tuple(int(s) for s in g.shape)  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        return int(self.features.shape[1] if self.links is not None else self.features.shape[0])

    @property
    def sh_degree(self) -> int:
        """SH degree of an "sh" scene (features hold 3 * (D+1)^2 channels)."""
        k = self.n_channels // 3
        d = round(math.sqrt(k)) - 1
        return d

    @property
    def mlp_macs(self) -> int:
        """Multiply-adds of one MLP evaluation (0 without an MLP)."""
        return sum(int(w.shape[0]) * int(w.shape[1]) for w, _ in (self.mlp or []))

    @property
    def device(self) -> torch.device:
        return self.density.device

    def __len__(self) -> int:
        """Number of stored voxels (X*Y*Z dense, M allocated with links)."""
        return int(self.density.numel())

    def bounds(self) -> np.ndarray:
        """The world box, [2,3] float64."""
        return np.stack(
            [self.xyz_min.detach().cpu().double().numpy(), self.xyz_max.detach().cpu().double().numpy()]
        )

    def step_world(self) -> float:
        """World length of one ray step."""
        return float(self.stepsize * self.voxel_size)

    def interval(self) -> float:
        """Density-units length of one ray step (DVGO: stepsize * voxel_size_ratio)."""
        return float(self.stepsize * self.voxel_size_ratio)

    # -- conversions ---------------------------------------------------------------------------
    def map(self, fn) -> VoxelGridScene:
        """A new scene with `fn` applied to every tensor."""
        opt = lambda t: None if t is None else fn(t)  # noqa: E731
        return VoxelGridScene(
            fn(self.density),
            fn(self.features),
            fn(self.xyz_min),
            fn(self.xyz_max),
            color_mode=self.color_mode,
            density_activation=self.density_activation,
            act_shift=self.act_shift,
            voxel_size=self.voxel_size,
            voxel_size_ratio=self.voxel_size_ratio,
            stepsize=self.stepsize,
            fast_color_thres=self.fast_color_thres,
            stop_thresh=self.stop_thresh,
            mlp=None if self.mlp is None else [(fn(w), fn(b)) for w, b in self.mlp],
            viewbase_pe=self.viewbase_pe,
            rgbnet_direct=self.rgbnet_direct,
            mask=opt(self.mask),
            mask_xyz2ijk_scale=opt(self.mask_xyz2ijk_scale),
            mask_xyz2ijk_shift=opt(self.mask_xyz2ijk_shift),
            links=opt(self.links),
            up=self.up,
            meta=dict(self.meta),
        )

    def to(self, device: str | torch.device) -> VoxelGridScene:
        return self.map(lambda t: t.to(device))

    @staticmethod
    def mask_transform(mask_shape, xyz_min: Tensor, xyz_max: Tensor) -> tuple[Tensor, Tensor]:
        """DVGO MaskGrid's xyz -> ijk (scale, shift) for a mask spanning the world box
        (sunset1995/DirectVoxGO > lib/grid.py > MaskGrid.__init__)."""
        size = torch.tensor([float(s) for s in mask_shape], dtype=torch.float32)
        scale = (size - 1) / (xyz_max.float().cpu() - xyz_min.float().cpu())
        return scale, -xyz_min.float().cpu() * scale

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> None:
        """Raise ValueError if shapes, dtypes or settings disagree."""
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color_mode {self.color_mode!r} is not one of {COLOR_MODES}")
        if self.density_activation not in DENSITY_ACTIVATIONS:
            raise ValueError(
                f"density_activation {self.density_activation!r} is not one of {DENSITY_ACTIVATIONS}"
            )
        for name in ("xyz_min", "xyz_max"):
            t = getattr(self, name)
            if tuple(t.shape) != (3,):
                raise ValueError(f"{name} has shape {tuple(t.shape)}, expected (3,)")
        if not bool((self.xyz_max > self.xyz_min).all()):
            raise ValueError("xyz_max must exceed xyz_min on every axis")
        if self.links is not None:
            if self.links.ndim != 3 or self.links.dtype != torch.int32:
                raise ValueError(
                    f"links must be an int32 [X,Y,Z] grid, got {self.links.dtype} {tuple(self.links.shape)}"
                )
            m = int(self.density.numel())
            if self.density.ndim != 1 or self.features.ndim != 2 or self.features.shape[0] != m:
                raise ValueError(
                    f"with links, density must be [M] and features [M,C]; got "
                    f"{tuple(self.density.shape)} and {tuple(self.features.shape)}"
                )
        else:
            if self.density.ndim != 3:
                raise ValueError(f"density has shape {tuple(self.density.shape)}, expected [X,Y,Z]")
            if self.features.ndim != 4 or tuple(self.features.shape[1:]) != tuple(self.density.shape):
                raise ValueError(
                    f"features has shape {tuple(self.features.shape)}, expected "
                    f"[C,{','.join(map(str, self.density.shape))}]"
                )
        if min(self.grid_shape) < 2:
            raise ValueError(f"the grid {self.grid_shape} needs at least 2 voxels per axis")
        for name in ("density", "features"):
            if getattr(self, name).dtype != torch.float32:
                raise ValueError(f"{name} is {getattr(self, name).dtype}, expected float32")
        c = self.n_channels
        if self.color_mode == "sigmoid_k0" and c < 3:
            raise ValueError(f"sigmoid_k0 colour needs 3 feature channels, the grid has {c}")
        if self.color_mode == "sh":
            k = c // 3
            if c % 3 or round(math.sqrt(k)) ** 2 != k or not 1 <= k <= 16:
                raise ValueError(f"SH colour needs 3*(D+1)^2 channels for D in 0..3, the grid has {c}")
        if self.color_mode == "mlp":
            if not self.mlp:
                raise ValueError("colour mode 'mlp' needs an MLP")
            want = view_embedding_dim(self.viewbase_pe) + (c if self.rgbnet_direct else c - 3)
            prev = want
            for i, (w, b) in enumerate(self.mlp):
                if w.ndim != 2 or int(w.shape[1]) != prev or tuple(b.shape) != (int(w.shape[0]),):
                    raise ValueError(
                        f"MLP layer {i} has weight {tuple(w.shape)} and bias {tuple(b.shape)}; "
                        f"expected [out,{prev}] and [out]"
                    )
                prev = int(w.shape[0])
            if prev != 3:
                raise ValueError(f"the MLP ends with {prev} outputs, expected 3 (rgb)")
        if self.mask is not None:
            if self.mask.ndim != 3 or self.mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be a bool [X,Y,Z] grid, got {self.mask.dtype} {tuple(self.mask.shape)}"
                )
            for name in ("mask_xyz2ijk_scale", "mask_xyz2ijk_shift"):
                t = getattr(self, name)
                if t is None or tuple(t.shape) != (3,):
                    raise ValueError(f"{name} must be a [3] tensor when a mask is set")
        if not (self.stepsize > 0 and self.voxel_size > 0 and self.voxel_size_ratio > 0):
            raise ValueError("stepsize, voxel_size and voxel_size_ratio must be positive")


def procedural_shell(
    res: int = 32,
    fine: bool = True,
    seed: int = 0,
    radius: float = 0.6,
    thickness: float = 0.1,
    with_mask: bool = True,
) -> VoxelGridScene:
    """A DVGO-style scene in the box [-1,1]^3: an opaque spherical shell of density with smooth random
    colour features, for tests and benchmarks (not a trained model, but the same tensors and settings).

    fine=True: 12 feature channels, the default 39 -> 128 -> 128 -> 3 MLP (random weights, last bias 0),
    alpha_init 1e-2, fast_color_thres 1e-4, and (with_mask) the fine stage's mask cache: 3x3x3
    max-pooled voxel alpha > fast_color_thres. fine=False: the coarse stage (sigmoid(k0), alpha_init 1e-6,
    fast_color_thres 1e-7).
    """
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.full((3,), -1.0), torch.full((3,), 1.0)
    num_voxels_base = 1024000  # DVGO configs/default.py coarse_model_and_render.num_voxels
    voxel_size = float((8.0 / res**3) ** (1 / 3))
    voxel_size_ratio = voxel_size / float((8.0 / num_voxels_base) ** (1 / 3))
    ax = torch.linspace(-1.0, 1.0, res)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1)  # [X,Y,Z,3]
    sdf = (xyz.norm(dim=-1) - radius).abs()
    alpha_init = 1e-2 if fine else 1e-6
    shift = dvgo_act_shift(alpha_init)
    # Raw density such that density + shift peaks at +3.4 in the shell and falls to -20 outside.
    density = (14.0 * (1.0 - sdf / thickness) - 10.6).clamp_min(-20.0) - shift
    C = 12 if fine else 3
    freqs = torch.randn(C, 4, 3, generator=g) * 2.0
    phases = torch.rand(C, 4, generator=g) * 6.283
    amps = torch.randn(C, 4, generator=g) * (0.6 if fine else 1.0)
    feats = (
        amps[:, :, None, None, None]
        * torch.sin(torch.einsum("ckd,xyzd->ckxyz", freqs, xyz) + phases[:, :, None, None, None])
    ).sum(1)
    scene = VoxelGridScene(
        density=density.contiguous(),
        features=feats.contiguous().float(),
        xyz_min=lo,
        xyz_max=hi,
        color_mode="mlp" if fine else "sigmoid_k0",
        act_shift=shift,
        voxel_size=voxel_size,
        voxel_size_ratio=voxel_size_ratio,
        stepsize=0.5,
        fast_color_thres=1e-4 if fine else 1e-7,
        meta={"format": "procedural"},
    )
    if fine:
        dims = [C + view_embedding_dim(4), 128, 128, 3]
        mlp = []
        for i in range(3):
            bound = 1.0 / math.sqrt(dims[i])  # torch.nn.Linear's default init range
            w = (torch.rand(dims[i + 1], dims[i], generator=g) * 2 - 1) * bound * 2.0
            b = (torch.rand(dims[i + 1], generator=g) * 2 - 1) * bound if i < 2 else torch.zeros(3)
            mlp.append((w, b))
        scene.mlp = mlp
    if with_mask:
        # DVGO update_occupancy_cache: activate with interval = voxel_size_ratio, 3x3x3 max-pool.
        a = 1 - torch.exp(-torch.nn.functional.softplus(density + scene.act_shift) * voxel_size_ratio)
        a = torch.nn.functional.max_pool3d(a[None, None], 3, stride=1, padding=1)[0, 0]
        scene.mask = a > scene.fast_color_thres
        scene.mask_xyz2ijk_scale, scene.mask_xyz2ijk_shift = VoxelGridScene.mask_transform(
            scene.mask.shape, lo, hi
        )
    return scene
