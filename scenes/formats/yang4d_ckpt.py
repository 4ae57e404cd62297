"""Yang et al. 4DGS checkpoints: `chkpnt{iter}.pth` / `chkpnt_best.pth` from fudan-zvg/4d-gaussian-splatting.

torch.save((gaussians.capture(), iteration)); for gaussian_dim 4 the capture tuple is
(FORMATS.md section 3; scene/gaussian_model.py capture):

     0 active_sh_degree   1 _xyz [N,3]        2 _features_dc [N,1,3]   3 _features_rest [N,K-1,3]
     4 _scaling [N,3] log 5 _rotation [N,4]   6 _opacity [N,1] logit   7 max_radii2D
     8 xyz_gradient_accum 9 t_gradient_accum 10 denom                 11 optimizer state dict
    12 spatial_lr_scale  13 _t [N,1]         14 _scaling_t [N,1] log  15 _rotation_r [N,4]
    16 rot_4d (bool)     17 env_map          18 active_sh_degree_t

Colour: K = 16 (T) coefficients per channel, T = sh_degree_t + 1 time blocks of 16 (48 with the
published eval_shfs_4d configs). time_duration is not in the checkpoint: pass it to read(), or put
a `time_duration: [a, b]` line in a .yaml next to the checkpoint (the repo's configs have one);
otherwise it is guessed from the Gaussians' times (meta["time_duration_guessed"] = True).
Only rot_4d=True checkpoints (every published config) are supported.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from ..cleanup import drop_nonfinite
from ..errors import SceneLoadError
from ..gaussians4d import Gaussian4DScene
from ..load import FormatSpec
from .safe_torch import ZIP_MAGIC, load_checkpoint, pickle_bytes, tensor_field

TUPLE_LEN_4D = 19
TUPLE_LEN_3D = 12
# fudan-zvg/4d-gaussian-splatting > utils/sh_utils.py > sh_channels_4d: channel counts of the
# non-Fourier 4D SH used when sh_degree_t = 0 without force_sh_3d; its first 16 are the 3D SH.
SH_CHANNELS_4D = (1, 6, 16, 33)


def sniff(path: Path, head: bytes) -> bool:
    # The optimizer state dict in the capture tuple names its parameter groups; the time ones
    # ("scaling_t", "rotation_r") only exist in a 4D Gaussian model.
    if not head.startswith(ZIP_MAGIC):
        return False
    pkl = pickle_bytes(path)
    return (pkl is not None and b"scaling_t" in pkl and b"rotation_r" in pkl
            and b"param_groups" in pkl and b"gauss_params" not in pkl)


def read(path: Path, time_duration: tuple[float, float] | None = None,
         prefilter_var: float = 0.0) -> Gaussian4DScene:
    """Read a Yang et al. 4DGS checkpoint. time_duration (t0, t1) sets the colour's period L."""
    obj = load_checkpoint(path)
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and isinstance(obj[0], (tuple, list))):
        raise SceneLoadError(path, "not a 4DGS checkpoint: expected (model_params, iteration) as "
                                   "saved by fudan-zvg/4d-gaussian-splatting train.py")
    params, iteration = obj
    if len(params) == TUPLE_LEN_3D:
        raise SceneLoadError(path, "this is a 3D Gaussian checkpoint (gaussian_dim 3), not a 4D one; "
                                   "open its point_cloud.ply instead")
    if len(params) != TUPLE_LEN_4D:
        raise SceneLoadError(path, f"the checkpoint's model tuple has {len(params)} fields, expected "
                                   f"{TUPLE_LEN_4D} (4DGS with gaussian_dim 4)")
    if params[16] is not True:
        raise SceneLoadError(path, "this 4DGS checkpoint was trained with rot_4d=False, which Radview "
                                   "does not support (only 4D rotations)")
    xyz = tensor_field(path, params[1], "_xyz", ("N", 3))
    n = xyz.shape[0]
    if n == 0:
        raise SceneLoadError(path, "the checkpoint holds zero Gaussians")
    dc = tensor_field(path, params[2], "_features_dc", ("N", 1, 3), n)
    rest = tensor_field(path, params[3], "_features_rest", ("N", None, 3), n)
    scaling = tensor_field(path, params[4], "_scaling", ("N", 3), n)
    rot_l = tensor_field(path, params[5], "_rotation", ("N", 4), n)
    opacity = tensor_field(path, params[6], "_opacity", ("N", 1), n)[:, 0]
    t = tensor_field(path, params[13], "_t", ("N", 1), n)[:, 0]
    scaling_t = tensor_field(path, params[14], "_scaling_t", ("N", 1), n)
    rot_r = tensor_field(path, params[15], "_rotation_r", ("N", 4), n)
    sh = _colour_blocks(path, torch.cat([dc, rest], dim=1), params[0], params[18])

    meta: dict = {}
    if time_duration is None:
        time_duration, source = _time_duration_nearby(path), "yaml"
        if time_duration is None:
            time_duration, source = guess_time_duration(t), "guessed"
            meta["time_duration_guessed"] = True
            if sh.shape[1] > 1:
                meta.setdefault("warnings", []).append(
                    f"time_duration is not stored in 4DGS checkpoints; guessed {time_duration} from "
                    "the Gaussians' times (colour over time depends on it)")
        meta["time_duration_source"] = source
    td = (float(time_duration[0]), float(time_duration[1]))
    if not (math.isfinite(td[0]) and math.isfinite(td[1]) and td[1] > td[0]):
        raise SceneLoadError(path, f"time_duration {td} must be two finite numbers, t0 < t1")
    scene = Gaussian4DScene.from_raw(
        "yang", xyz, t, torch.cat([scaling, scaling_t], dim=1), torch.cat([rot_l, rot_r], dim=1),
        opacity, sh, time_duration=td, prefilter_var=float(prefilter_var), meta=meta)
    if isinstance(iteration, int):
        scene.meta["iteration"] = iteration
    env = params[17]
    if isinstance(env, torch.Tensor) and env.numel() > 0:
        scene.meta.setdefault("warnings", []).append("the checkpoint's environment map is ignored")
    return drop_nonfinite(scene, path)


def _colour_blocks(path: Path, feats: torch.Tensor, sh_degree, sh_degree_t) -> torch.Tensor:
    """[N, Ktot, 3] features -> [N, T, K, 3] time blocks cut to the active degrees."""
    n, ktot = feats.shape[:2]
    deg = int(sh_degree) if isinstance(sh_degree, int) else 3
    deg_t = int(sh_degree_t) if isinstance(sh_degree_t, int) else 0
    if ktot % 16 == 0:
        blocks = feats.reshape(n, ktot // 16, 16, 3)  # coefficient 16 b + k: block b, basis k
    elif ktot == SH_CHANNELS_4D[3]:
        blocks = feats[:, None, :16]  # deg_t 0: the time-free 3D part is all the renderer uses
    elif ktot in (1, 4, 9):
        blocks = feats[:, None]
    else:
        raise SceneLoadError(path, f"the features hold {ktot} coefficients per channel; expected "
                                   "16 x (time degree + 1), 33, or a 3D SH count (1, 4, 9, 16)")
    deg = max(0, min(deg, round(math.sqrt(blocks.shape[2])) - 1))
    deg_t = max(0, min(deg_t, blocks.shape[1] - 1))
    return blocks[:, : deg_t + 1, : (deg + 1) ** 2].contiguous()


def _time_duration_nearby(path: Path) -> tuple[float, float] | None:
    """`time_duration: [a, b]` from a small .yaml beside the checkpoint or one folder up (text only)."""
    pat = re.compile(r"^\s*time_duration\s*:\s*\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\]", re.M)
    for folder in (path.parent, path.parent.parent):
        try:
            cands = sorted(list(folder.glob("*.yaml")) + list(folder.glob("*.yml")))
        except OSError:
            continue
        for f in cands:
            try:
                if f.stat().st_size > 1 << 20:
                    continue
                m = pat.search(f.read_text(errors="replace"))
            except OSError:
                continue
            if m:
                try:
                    a, b = float(m.group(1)), float(m.group(2))
                except ValueError:
                    continue
                if b > a:
                    return a, b
    return None


def guess_time_duration(times: torch.Tensor) -> tuple[float, float]:
    """A guess at the training time range from the Gaussians' times.

    4DGS initialises t uniformly over the range widened by 10% on each side, and the published
    configs use [0, 1] (D-NeRF) and [0, 10] (N3V); snap to those when the times fit them.
    """
    t = times.detach().cpu().double().numpy()
    t = t[np.isfinite(t)]
    if len(t) == 0:
        return 0.0, 1.0
    lo, hi = (np.quantile(t, [0.01, 0.99]) if len(t) >= 100 else (t.min(), t.max()))
    for a, b in ((0.0, 1.0), (0.0, 10.0)):
        pad = 0.25 * (b - a)
        if lo >= a - pad and hi <= b + pad and hi - lo >= 0.3 * (b - a):
            return a, b
    return (float(lo), float(hi)) if hi > lo else (float(lo), float(lo) + 1.0)


FORMAT = FormatSpec(
    name="yang4d_ckpt",
    extensions=(".pth",),
    sniff=sniff,
    read=read,
    description="4DGS (Yang et al.) checkpoint",
    kinds=("gaussians4d",),
)
