"""INRIA 3DGS `point_cloud.ply` (graphdeco-inria/gaussian-splatting save_ply / load_ply).

Layout (FORMATS.md section 1): one `vertex` element, float32 properties
x y z | nx ny nz | f_dc_0..2 | f_rest_0..R-1 | opacity | scale_0..2 | rot_0..3,
R = 3*((D+1)^2 - 1) in 0, 9, 24, 45. f_rest is channel-major (all red coefficients, then green,
then blue). Stored raw: log scales, opacity logits, unnormalized (w, x, y, z) quaternions.
Extra vertex properties are tolerated; normals are optional on read and written as zeros.
Radview adds one header comment, `radview up=x,y,z`, when the scene knows its up direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cleanup import drop_nonfinite
from ..errors import SceneLoadError
from ..gaussians import GaussianScene
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

_REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
_F_REST_COUNTS = {0: 0, 9: 1, 24: 2, 45: 3}


def sniff(path: Path, head: bytes) -> bool:
    # The most general PLY flavour, sniffed last: it claims every PLY so that a PLY no flavour
    # recognises gets this reader's precise message (missing properties, bad f_rest count).
    return is_ply(head)


def read(path: Path) -> GaussianScene:
    header = parse_header(path)
    v = header.element("vertex")
    if v is None:
        raise SceneLoadError(path, "the PLY has no 'vertex' element, so it holds no Gaussians")
    names = v.names()
    missing = [n for n in _REQUIRED if n not in names]
    if missing:
        raise SceneLoadError(path, f"not a 3D Gaussian splat PLY: the vertex element lacks "
                                   f"{', '.join(missing)}")
    rest = numbered(names, "f_rest_")
    if len(rest) not in _F_REST_COUNTS:
        raise SceneLoadError(path, f"f_rest has {len(rest)} properties, expected 0, 9, 24 or 45 "
                                   "(SH degree 0 to 3)")
    if v.count == 0:
        raise SceneLoadError(path, "the PLY holds zero Gaussians")
    read_ply(path, header)
    d = v.data

    def cols(keys: list[str]) -> np.ndarray:
        return np.stack([np.asarray(d[c], dtype=np.float32) for c in keys], axis=1)

    scene = GaussianScene.from_raw(
        torch.from_numpy(cols(["x", "y", "z"])),
        torch.from_numpy(cols(["rot_0", "rot_1", "rot_2", "rot_3"])),
        torch.from_numpy(cols(["scale_0", "scale_1", "scale_2"])),
        torch.from_numpy(np.asarray(d["opacity"], dtype=np.float32)),
        torch.from_numpy(sh_from_columns(d, rest)),
    )
    scene.up = up_from_comments(header.comments)
    return drop_nonfinite(scene, path)


def write(scene: GaussianScene, path: Path, **_opts) -> dict:
    """Write INRIA layout (binary little endian, float32); exact for a scene read from this format."""
    raw = {k: t.detach().cpu().float().numpy() for k, t in scene.raw().items()}
    n = raw["sh"].shape[0]
    props: dict[str, np.ndarray] = {}
    for i, c in enumerate("xyz"):
        props[c] = raw["means"][:, i]
    for c in ("nx", "ny", "nz"):
        props[c] = np.zeros(n, dtype=np.float32)
    props.update(sh_to_columns(raw["sh"]))
    props["opacity"] = raw["opacity_logits"]
    for i in range(3):
        props[f"scale_{i}"] = raw["log_scales"][:, i]
    for i in range(4):
        props[f"rot_{i}"] = raw["quats"][:, i]
    write_ply(path, [("vertex", props)], up_comments(scene.up))
    return {}


FORMAT = FormatSpec(
    name="ply_3dgs",
    extensions=(".ply",),
    sniff=sniff,
    read=read,
    write=write,
    description="INRIA 3D Gaussian Splatting PLY",
)
