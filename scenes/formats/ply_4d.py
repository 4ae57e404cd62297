"""Radview's 4D Gaussian PLY: the INRIA 3DGS layout plus the time properties.

One `vertex` element, binary little endian, float32, in this order:

    x y z | nx ny nz (0) | f_dc_0..2 | f_rest_0..R-1 | opacity | scale_0..2 | rot_0..3 |
    t | scale_t | rot_4..7

and one header comment

    comment radview-4d model=rotor|yang time_duration=a,b time_degree=T [prefilter_var=v]

(time_duration is left out when unknown; time_degree defaults to 0; prefilter_var, Yang's optional
variance added to Sigma_tt in the marginal, only when > 0). Stored raw, as the
checkpoints hold them: log scales (scale_t too), opacity logit, and
- rotor: rot_0..7 = the 8 rotor components (a, b_xy, b_xz, b_yz, b_xw, b_yw, b_zw, p), raw;
- yang:  rot_0..3 = left quaternion, rot_4..7 = right quaternion, (w, x, y, z) each.
Colour: (T+1) blocks of K = (D+1)^2 SH coefficients per channel, coefficient index b K + k for
block b, basis k (Yang's layout); f_dc is coefficient 0, f_rest the other (T+1) K - 1, channel-major
like INRIA (all red, then green, then blue): R = 3 ((T+1) K - 1).
sniff claims only PLYs whose vertex element has a `t` property, so INRIA PLYs go to ply_3dgs.
An optional `comment radview up=x,y,z` carries the up direction, as in ply_3dgs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..cleanup import drop_nonfinite
from ..errors import SceneLoadError
from ..gaussians4d import MODELS, Gaussian4DScene
from ..load import FormatSpec
from .ply import (
    is_ply,
    numbered,
    parse_header,
    read_ply,
    sh_from_columns,
    sh_to_columns,
    up_comments,
    up_from_comments,
    write_ply,
)

_REQUIRED = ["x", "y", "z", "t", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1",
             "scale_2", "scale_t"] + [f"rot_{i}" for i in range(8)]
TAG = "radview-4d"


def sniff(path: Path, head: bytes) -> bool:
    if not is_ply(head):
        return False
    try:
        header = parse_header(path, head)
    except SceneLoadError:
        return False
    v = header.element("vertex")
    return v is not None and "t" in v.names()


def _parse_tag(path: Path, comments: list[str]) -> dict:
    for c in comments:
        if c.split(" ", 1)[0] != TAG:
            continue
        out = {}
        for item in c.split()[1:]:
            if "=" in item:
                k, v = item.split("=", 1)
                out[k] = v
        return out
    raise SceneLoadError(path, f"this PLY has a 't' property but no '{TAG} model=...' comment, so "
                               "Radview cannot tell which 4D Gaussian model it holds")


def read(path: Path) -> Gaussian4DScene:
    header = parse_header(path)
    v = header.element("vertex")
    if v is None:
        raise SceneLoadError(path, "the PLY has no 'vertex' element, so it holds no Gaussians")
    tag = _parse_tag(path, header.comments)
    model = tag.get("model")
    if model not in MODELS:
        raise SceneLoadError(path, f"the {TAG} comment names model {model!r}, expected rotor or yang")
    try:
        time_degree = int(tag.get("time_degree", "0"))
        td = tag.get("time_duration")
        time_duration = tuple(float(x) for x in td.split(",")) if td else None
        prefilter_var = float(tag.get("prefilter_var", "0"))
    except ValueError as e:
        raise SceneLoadError(path, f"bad value in the {TAG} comment ({e})") from e
    if time_duration is not None and (len(time_duration) != 2 or not time_duration[1] > time_duration[0]):
        raise SceneLoadError(path, f"time_duration {td!r} in the {TAG} comment is not 'a,b' with a < b")
    if not 0 <= time_degree <= 8 or (model == "rotor" and time_degree != 0):
        raise SceneLoadError(path, f"time_degree {time_degree} is not valid for model {model}")
    names = v.names()
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise SceneLoadError(path, f"the 4D PLY's vertex element lacks {', '.join(missing)}")
    rest = numbered(names, "f_rest_")
    blocks = time_degree + 1
    k_all = len(rest) // 3 + 1
    k = k_all // blocks
    if len(rest) % 3 or k_all % blocks or (round(math.sqrt(k)) ** 2 != k or not 1 <= k <= 16):
        raise SceneLoadError(path, f"f_rest has {len(rest)} properties; with time_degree {time_degree} "
                                   f"expected 3 x ({blocks} x K - 1) for K in 1, 4, 9, 16")
    if time_degree > 0 and time_duration is None:
        raise SceneLoadError(path, "a 4D PLY with time colour (time_degree > 0) needs time_duration")
    if v.count == 0:
        raise SceneLoadError(path, "the PLY holds zero Gaussians")
    read_ply(path, header)
    d = v.data

    def cols(keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([np.asarray(d[c], dtype=np.float32) for c in keys], axis=1))

    n = v.count
    sh = torch.from_numpy(sh_from_columns(d, rest))
    scene = Gaussian4DScene.from_raw(
        model, cols(["x", "y", "z"]), cols(["t"])[:, 0],
        cols(["scale_0", "scale_1", "scale_2", "scale_t"]), cols([f"rot_{i}" for i in range(8)]),
        cols(["opacity"])[:, 0], sh.reshape(n, blocks, k, 3), time_duration=time_duration,
        prefilter_var=prefilter_var)
    scene.up = up_from_comments(header.comments)
    return drop_nonfinite(scene, path)


def write(scene: Gaussian4DScene, path: Path, **_opts) -> dict:
    """Write the layout above; exact (to float32) for a scene read from this format."""
    raw = {k: t.detach().cpu().float().numpy() for k, t in scene.raw().items()}
    n, blocks, k = raw["sh"].shape[:3]
    sh = raw["sh"].reshape(n, blocks * k, 3)
    props: dict[str, np.ndarray] = {}
    for i, c in enumerate("xyz"):
        props[c] = raw["means"][:, i]
    for c in ("nx", "ny", "nz"):
        props[c] = np.zeros(n, dtype=np.float32)
    props.update(sh_to_columns(sh))
    props["opacity"] = raw["opacity_logits"]
    for i in range(3):
        props[f"scale_{i}"] = raw["log_scales"][:, i]
    for i in range(4):
        props[f"rot_{i}"] = raw["rotations"][:, i]
    props["t"] = raw["times"]
    props["scale_t"] = raw["log_scales"][:, 3]
    for i in range(4, 8):
        props[f"rot_{i}"] = raw["rotations"][:, i]
    tag = f"{TAG} model={scene.model}"
    if scene.time_duration is not None:
        tag += " time_duration=" + ",".join(repr(float(x)) for x in scene.time_duration)
    tag += f" time_degree={blocks - 1}"
    if scene.prefilter_var > 0:
        tag += f" prefilter_var={float(scene.prefilter_var)!r}"
    write_ply(path, [("vertex", props)], [tag, *up_comments(scene.up)])
    return {}


FORMAT = FormatSpec(
    name="ply_4d",
    extensions=(".ply",),
    sniff=sniff,
    read=read,
    write=write,
    description="Radview 4D Gaussian PLY",
    kinds=("gaussians4d",),
)
