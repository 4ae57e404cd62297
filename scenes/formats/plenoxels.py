"""Plenoxels `ckpt.npz` (sxyu/svox2 > svox2/svox2.py SparseGrid.save / load; FORMATS.md 6).

Arrays: radius [3], center [3], links int32 [Rx,Ry,Rz] (-1 empty), density_data f32 [M,1],
sh_data f16/f32 [M, 3*K] (channel-major), basis_type (0 = SH; others refused), optional
background_* (360 scenes; ignored and noted in meta). Read with np.load(allow_pickle=False).

Mapping to VoxelGridScene (kept sparse: links + data, see scenes/voxels.py):
- svox2's world2grid puts voxel i's value at grid coordinate i, with the box [center-radius,
  center+radius] spanning grid coordinates [-0.5, R-0.5]. Our lattice puts values on the box
  corners, so the scene box is the box of voxel centres: center - radius + h/2 .. center + radius - h/2,
  h = 2*radius/R. The outer half-voxel shell, where svox2 clamps to the border values, is not marched.
- alpha = 1 - exp(-relu(sigma) * delta) with delta the world step (density_activation "relu",
  voxel_size_ratio = voxel_size). Steps are step_size (0.5) * the smallest voxel side in world units
  (svox2 steps 0.5 grid units, the same length for cubic voxels).
- Rendering defaults from svox2 RenderOptions: step_size 0.5, stop_thresh 1e-7; sigma_thresh 1e-10
  becomes fast_color_thres 0 (alpha > 0).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import SceneLoadError
from ..load import FormatSpec
from ..voxels import VoxelGridScene

REQUIRED = ("radius", "center", "links", "density_data", "sh_data")


def _sniff(path: Path, head: bytes) -> bool:
    if not head.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return "links.npy" in names and "density_data.npy" in names


def _finite(path: Path, a: np.ndarray, name: str) -> None:
    if not np.isfinite(a).all():
        raise SceneLoadError(path, f"{name} holds {int((~np.isfinite(a)).sum())} NaN or infinite values")


def read_plenoxels(path: Path) -> VoxelGridScene:
    path = Path(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise SceneLoadError(path, f"not a readable .npz file ({e})") from e
    with npz:
        missing = [k for k in REQUIRED if k not in npz.files]
        if missing:
            raise SceneLoadError(path, f"not a Plenoxels checkpoint: missing {', '.join(missing)}")
        try:
            arr = {k: npz[k] for k in npz.files if not k.startswith("background")}
        except ValueError as e:  # an object array needs pickle: refused
            raise SceneLoadError(
                path, f"the file holds pickled objects, which Radview does not load ({e})"
            ) from e
        has_bg = any(k.startswith("background") for k in npz.files)
    basis = int(np.asarray(arr.get("basis_type", 0)).reshape(-1)[0]) if "basis_type" in arr else 0
    if basis != 0:
        raise SceneLoadError(
            path,
            f"basis_type {basis} (spherical Gaussians / learned basis) is not supported; "
            "only spherical harmonics (0) are",
        )
    radius, center = (
        arr["radius"].astype(np.float64).reshape(-1),
        arr["center"].astype(np.float64).reshape(-1),
    )
    if radius.shape != (3,) or center.shape != (3,):
        raise SceneLoadError(
            path, f"radius and center must hold 3 numbers, got {radius.shape} and {center.shape}"
        )
    _finite(path, radius, "radius")
    _finite(path, center, "center")
    if (radius <= 0).any():
        raise SceneLoadError(path, f"radius must be positive, got {radius.tolist()}")
    links = arr["links"]
    if links.ndim != 3 or links.dtype.kind not in "iu":
        raise SceneLoadError(path, f"links must be a 3D integer grid, got {links.dtype} {links.shape}")
    if min(links.shape) < 2:
        raise SceneLoadError(path, f"the grid {links.shape} needs at least 2 voxels per axis")
    dens = arr["density_data"]
    if dens.ndim == 1:
        dens = dens[:, None]
    if dens.ndim != 2 or dens.shape[1] != 1 or dens.dtype.kind != "f":
        raise SceneLoadError(
            path, f"density_data has shape {dens.shape} ({dens.dtype}), expected (M, 1) floats"
        )
    m = dens.shape[0]
    sh = arr["sh_data"]
    if sh.ndim != 2 or sh.shape[0] != m or sh.dtype.kind != "f":
        raise SceneLoadError(path, f"sh_data has shape {sh.shape} ({sh.dtype}), expected ({m}, 3*K) floats")
    k = sh.shape[1] // 3
    if sh.shape[1] % 3 or k not in (1, 4, 9, 16):
        raise SceneLoadError(
            path, f"sh_data has {sh.shape[1]} columns, expected 3, 12, 27 or 48 (3 x SH basis)"
        )
    lmin, lmax = int(links.min()), int(links.max())
    if lmin < -1 or lmax >= m:
        raise SceneLoadError(path, f"links range over [{lmin}, {lmax}], expected -1 (empty) or 0..{m - 1}")
    dens32 = dens[:, 0].astype(np.float32)
    sh32 = sh.astype(np.float32)
    _finite(path, dens32, "density_data")
    _finite(path, sh32, "sh_data")
    R = np.array(links.shape, dtype=np.float64)
    h = 2 * radius / R
    lo, hi = center - radius + h / 2, center + radius - h / 2
    vs = float(h.min())
    scene = VoxelGridScene(
        density=torch.from_numpy(dens32),
        features=torch.from_numpy(sh32),
        xyz_min=torch.tensor(lo, dtype=torch.float32),
        xyz_max=torch.tensor(hi, dtype=torch.float32),
        color_mode="sh",
        density_activation="relu",
        act_shift=0.0,
        voxel_size=vs,
        voxel_size_ratio=vs,
        stepsize=0.5,
        fast_color_thres=0.0,
        stop_thresh=1e-7,
        links=torch.from_numpy(np.ascontiguousarray(links.astype(np.int32))),
        meta={"sh_degree": int(round(k**0.5)) - 1},
    )
    if has_bg:
        scene.meta["note"] = "the background model (background_links/background_data) is not rendered"
    try:
        scene.validate()
    except ValueError as e:
        raise SceneLoadError(path, f"inconsistent Plenoxels grid: {e}") from e
    return scene


def write_plenoxels(scene: VoxelGridScene, path: Path, **_opts) -> dict:
    """Save a sparse SH scene (as read above) back to svox2's ckpt.npz layout (sh_data as float16)."""
    if scene.links is None or scene.color_mode != "sh" or scene.density_activation != "relu":
        raise ValueError(
            "only Plenoxels-style scenes (links, relu density, SH colour) can be saved as ckpt.npz"
        )
    s = scene.to("cpu")
    R = np.array(s.grid_shape, dtype=np.float64)
    lo, hi = s.xyz_min.double().numpy(), s.xyz_max.double().numpy()
    h = (hi - lo) / (R - 1)
    center, radius = (lo + hi) / 2, (hi - lo) / 2 + h / 2
    with open(path, "wb") as f:
        np.savez(
            f,
            radius=radius.astype(np.float32),
            center=center.astype(np.float32),
            links=s.links.numpy().astype(np.int32),
            density_data=s.density.detach().numpy()[:, None],
            sh_data=s.features.detach().numpy().astype(np.float16),
            basis_type=np.array(0),
        )
    return {"sh_data": "stored as float16"}


FORMAT = FormatSpec(
    name="plenoxels",
    extensions=(".npz",),
    sniff=_sniff,
    read=read_plenoxels,
    write=write_plenoxels,
    description="Plenoxels checkpoint (svox2 ckpt.npz)",
    kinds=("voxels",),
)
