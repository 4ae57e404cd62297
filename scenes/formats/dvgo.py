"""DirectVoxGO checkpoints: `coarse_last.tar` / `fine_last.tar` (FORMATS.md 5).

Layout (sunset1995/DirectVoxGO > run.py scene_rep_reconstruction torch.save; lib/dvgo.py get_kwargs):
{global_step, model_kwargs, model_state_dict, optimizer_state_dict}. model_kwargs holds numpy arrays
(xyz_min, xyz_max), so the file is read with torch.load(weights_only=True) plus numpy's array
reconstruction allow-listed, and nothing else (scenes/formats/safe_torch.py).
State dict: density.grid [1,1,X,Y,Z], k0.grid [1,C,X,Y,Z], act_shift [1], xyz_min/xyz_max [3],
viewfreq [pe], rgbnet.<i>[.0].weight/bias, mask_cache.mask [X',Y',Z'] bool with
mask_cache.xyz2ijk_scale/shift [3]. Only DirectVoxGO with DenseGrid density and k0 is read
(not DirectMPIGO, DirectContractedVoxGO, TensoRF grids or rgbnet_full_implicit).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import SceneLoadError
from ..load import FormatSpec
from ..voxels import VoxelGridScene, dvgo_act_shift
from .safe_torch import ZIP_MAGIC, load_checkpoint, pickle_bytes

STEPSIZE = 0.5  # DVGO configs/default.py fine/coarse_model_and_render.stepsize (not stored in checkpoints)


def _sniff(path: Path, head: bytes) -> bool:
    if not head.startswith(ZIP_MAGIC):
        return False
    pk = pickle_bytes(path)
    return pk is not None and b"model_state_dict" in pk and b"density.grid" in pk and b"model_kwargs" in pk


def _vec3(path: Path, value, name: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(
            np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
        )
    except (TypeError, ValueError) as e:
        raise SceneLoadError(path, f"{name} is not a list of 3 numbers ({e})") from e
    if t.shape != (3,) or not bool(torch.isfinite(t).all()):
        raise SceneLoadError(path, f"{name} must hold 3 finite numbers, got {t.tolist()}")
    return t.float()


def _number(path: Path, kw: dict, name: str, default=None) -> float:
    v = kw.get(name, default)
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        v = float(v)
    if isinstance(v, np.ndarray) and v.size == 1:
        v = float(v)
    if not isinstance(v, (int, float, np.number)) or isinstance(v, bool) or not math.isfinite(float(v)):
        raise SceneLoadError(path, f"model_kwargs[{name!r}] is {v!r}, expected a finite number")
    return float(v)


def _grid(path: Path, sd: dict, name: str) -> torch.Tensor:
    t = sd.get(f"{name}.grid", sd.get(name))
    if not isinstance(t, torch.Tensor):
        raise SceneLoadError(path, f"model_state_dict has no {name}.grid tensor")
    if t.ndim != 5 or t.shape[0] != 1:
        raise SceneLoadError(path, f"{name}.grid has shape {tuple(t.shape)}, expected (1, C, X, Y, Z)")
    if not t.is_floating_point():
        raise SceneLoadError(path, f"{name}.grid holds {t.dtype} values, expected floats")
    t = t[0].detach().float()
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise SceneLoadError(path, f"{name}.grid holds {bad} NaN or infinite values")
    return t


def _mlp(path: Path, sd: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """rgbnet layers in module order: rgbnet.0, rgbnet.2.0, ..., rgbnet.<depth> (Linear layers only)."""
    found = []
    for k in sd:
        m = re.fullmatch(r"rgbnet\.((?:\d+\.)*\d+)\.weight", k)
        if m:
            found.append((tuple(int(x) for x in m.group(1).split(".")), m.group(1)))
    if not found:
        raise SceneLoadError(path, "the fine model has no rgbnet.*.weight tensors (its MLP)")
    layers = []
    for _, prefix in sorted(found):
        w, b = sd[f"rgbnet.{prefix}.weight"], sd.get(f"rgbnet.{prefix}.bias")
        if (
            not isinstance(w, torch.Tensor)
            or w.ndim != 2
            or not isinstance(b, torch.Tensor)
            or tuple(b.shape) != (w.shape[0],)
        ):
            raise SceneLoadError(path, f"rgbnet.{prefix} is not a Linear layer (weight [out,in], bias [out])")
        w, b = w.detach().float(), b.detach().float()
        if not (bool(torch.isfinite(w).all()) and bool(torch.isfinite(b).all())):
            raise SceneLoadError(path, f"rgbnet.{prefix} holds NaN or infinite values")
        layers.append((w, b))
    for i in range(1, len(layers)):
        if layers[i][0].shape[1] != layers[i - 1][0].shape[0]:
            raise SceneLoadError(
                path,
                f"rgbnet layer {i} takes {layers[i][0].shape[1]} inputs but layer {i - 1} "
                f"gives {layers[i - 1][0].shape[0]}",
            )
    if layers[-1][0].shape[0] != 3:
        raise SceneLoadError(path, f"rgbnet ends with {layers[-1][0].shape[0]} outputs, expected 3 (rgb)")
    return layers


def read_dvgo(path: Path) -> VoxelGridScene:
    path = Path(path)
    ck = load_checkpoint(path, allow_numpy=True)
    if (
        not isinstance(ck, dict)
        or not isinstance(ck.get("model_state_dict"), dict)
        or not isinstance(ck.get("model_kwargs"), dict)
    ):
        raise SceneLoadError(
            path, "not a DirectVoxGO checkpoint (expected a dict with model_kwargs and model_state_dict)"
        )
    kw, sd = ck["model_kwargs"], ck["model_state_dict"]
    for key in ("contracted_norm", "bg_len", "mpi_depth"):
        if key in kw:
            raise SceneLoadError(
                path,
                f"a DirectVoxGO variant with {key!r} (unbounded / MPI scenes) is not supported; "
                "only the bounded DirectVoxGO model is",
            )
    for key in ("density_type", "k0_type"):
        if kw.get(key, "DenseGrid") != "DenseGrid":
            raise SceneLoadError(path, f"{key} is {kw.get(key)!r}; only DenseGrid voxel grids are supported")
    if kw.get("rgbnet_full_implicit", False):
        raise SceneLoadError(path, "rgbnet_full_implicit models (no k0 grid) are not supported")
    xyz_min = _vec3(path, sd.get("xyz_min", kw.get("xyz_min")), "xyz_min")
    xyz_max = _vec3(path, sd.get("xyz_max", kw.get("xyz_max")), "xyz_max")
    if not bool((xyz_max > xyz_min).all()):
        raise SceneLoadError(path, f"xyz_max {xyz_max.tolist()} must exceed xyz_min {xyz_min.tolist()}")
    density = _grid(path, sd, "density")
    if density.shape[0] != 1:
        raise SceneLoadError(path, f"density.grid has {density.shape[0]} channels, expected 1")
    density = density[0].contiguous()
    k0 = _grid(path, sd, "k0").contiguous()
    if tuple(k0.shape[1:]) != tuple(density.shape):
        raise SceneLoadError(
            path, f"k0.grid is {tuple(k0.shape[1:])} voxels but density.grid is {tuple(density.shape)}"
        )
    if min(density.shape) < 2:
        raise SceneLoadError(path, f"the grid {tuple(density.shape)} needs at least 2 voxels per axis")
    extent = (xyz_max - xyz_min).double()
    num_voxels = _number(path, kw, "num_voxels", float(density.numel()))
    voxel_size = float((extent.prod() / num_voxels) ** (1 / 3))
    if "voxel_size_ratio" in kw:
        ratio = _number(path, kw, "voxel_size_ratio")
    else:
        base = _number(path, kw, "num_voxels_base", num_voxels)
        ratio = voxel_size / float((extent.prod() / base) ** (1 / 3))
    if "act_shift" in sd:
        shift_t = sd["act_shift"]
        if (
            not isinstance(shift_t, torch.Tensor)
            or shift_t.numel() != 1
            or not bool(torch.isfinite(shift_t).all())
        ):
            raise SceneLoadError(path, "act_shift must be one finite number")
        shift = float(shift_t)
    else:
        shift = dvgo_act_shift(_number(path, kw, "alpha_init"))
    rgbnet_dim = int(_number(path, kw, "rgbnet_dim", 0))
    scene = VoxelGridScene(
        density=density,
        features=k0,
        xyz_min=xyz_min,
        xyz_max=xyz_max,
        color_mode="mlp" if rgbnet_dim > 0 else "sigmoid_k0",
        act_shift=shift,
        voxel_size=voxel_size,
        voxel_size_ratio=ratio,
        stepsize=STEPSIZE,
        fast_color_thres=_number(path, kw, "fast_color_thres", 0.0),
        stop_thresh=1e-3,
        meta={"stage": "fine" if rgbnet_dim > 0 else "coarse"},
    )
    if "global_step" in ck and isinstance(ck["global_step"], int):
        scene.meta["global_step"] = ck["global_step"]
    if rgbnet_dim > 0:
        scene.mlp = _mlp(path, sd)
        scene.rgbnet_direct = bool(kw.get("rgbnet_direct", False))
        pe = sd.get("viewfreq")
        scene.viewbase_pe = (
            int(pe.numel()) if isinstance(pe, torch.Tensor) else int(_number(path, kw, "viewbase_pe", 4))
        )
        if isinstance(pe, torch.Tensor) and not torch.equal(
            pe.float().cpu(), 2.0 ** torch.arange(pe.numel()).float()
        ):
            raise SceneLoadError(path, f"viewfreq is {pe.tolist()}, expected powers of two 1, 2, 4, ...")
    mask = sd.get("mask_cache.mask")
    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.ndim != 3:
            raise SceneLoadError(path, "mask_cache.mask must be a 3D tensor")
        scale, shift_m = sd.get("mask_cache.xyz2ijk_scale"), sd.get("mask_cache.xyz2ijk_shift")
        if isinstance(scale, torch.Tensor) and isinstance(shift_m, torch.Tensor):
            scale, shift_m = (
                _vec3(path, scale, "mask_cache.xyz2ijk_scale"),
                _vec3(path, shift_m, "mask_cache.xyz2ijk_shift"),
            )
        else:
            scale, shift_m = VoxelGridScene.mask_transform(mask.shape, xyz_min, xyz_max)
        scene.mask = mask.detach().bool().cpu().contiguous()
        scene.mask_xyz2ijk_scale, scene.mask_xyz2ijk_shift = scale, shift_m
    try:
        scene.validate()
    except ValueError as e:
        raise SceneLoadError(path, f"inconsistent DirectVoxGO model: {e}") from e
    return scene


def write_dvgo(scene: VoxelGridScene, path: Path, **_opts) -> dict:
    """Save a dense DVGO-style scene in the checkpoint layout read above (model_kwargs without numpy)."""
    if scene.links is not None or scene.color_mode == "sh" or scene.density_activation != "softplus":
        raise ValueError(
            "only dense DirectVoxGO-style scenes (softplus density, k0 or MLP colour) can be saved "
            "as a DVGO checkpoint"
        )
    s = scene.to("cpu")
    ext = (s.xyz_max - s.xyz_min).double()
    num_voxels = int(round(float(ext.prod()) / s.voxel_size**3))
    sd = {
        "xyz_min": s.xyz_min.float(),
        "xyz_max": s.xyz_max.float(),
        "act_shift": torch.tensor([s.act_shift], dtype=torch.float32),
        "density.grid": s.density.detach()[None, None].float(),
        "k0.grid": s.features.detach()[None].float(),
        "density.xyz_min": s.xyz_min.float(),
        "density.xyz_max": s.xyz_max.float(),
        "k0.xyz_min": s.xyz_min.float(),
        "k0.xyz_max": s.xyz_max.float(),
    }
    kw = {
        "xyz_min": s.xyz_min.tolist(),
        "xyz_max": s.xyz_max.tolist(),
        "num_voxels": num_voxels,
        "voxel_size_ratio": torch.tensor(s.voxel_size_ratio),
        "fast_color_thres": s.fast_color_thres,
        "density_type": "DenseGrid",
        "k0_type": "DenseGrid",
        "rgbnet_dim": 0,
    }
    if s.color_mode == "mlp":
        sd["viewfreq"] = 2.0 ** torch.arange(s.viewbase_pe, dtype=torch.float32)
        n = len(s.mlp)
        names = ["rgbnet.0"] + [f"rgbnet.{i + 1}.0" for i in range(1, n - 1)] + [f"rgbnet.{n}"]
        for name, (w, b) in zip(names, s.mlp, strict=True):
            sd[f"{name}.weight"], sd[f"{name}.bias"] = w.detach().float(), b.detach().float()
        kw.update(
            rgbnet_dim=s.n_channels,
            rgbnet_direct=s.rgbnet_direct,
            rgbnet_full_implicit=False,
            rgbnet_depth=n,
            rgbnet_width=int(s.mlp[0][0].shape[0]),
            viewbase_pe=s.viewbase_pe,
        )
    if s.mask is not None:
        sd["mask_cache.mask"] = s.mask.bool()
        sd["mask_cache.xyz2ijk_scale"] = s.mask_xyz2ijk_scale.float()
        sd["mask_cache.xyz2ijk_shift"] = s.mask_xyz2ijk_shift.float()
    torch.save(
        {"global_step": int(s.meta.get("global_step", 0)), "model_kwargs": kw, "model_state_dict": sd}, path
    )
    return {}


FORMAT = FormatSpec(
    name="dvgo",
    extensions=(".tar",),
    sniff=_sniff,
    read=read_dvgo,
    write=write_dvgo,
    description="DirectVoxGO checkpoint (coarse_last.tar / fine_last.tar)",
    kinds=("voxels",),
)
