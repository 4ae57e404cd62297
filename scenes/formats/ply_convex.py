"""Radview convex-splat `.ply`: an exchange format for 3D Convex Splatting scenes.

The 3DCS code saves only torch state dicts; this PLY lets any PLY tool read the points.
Layout: header comment `radview-convex K=<points per convex>`, one `vertex` element per convex with
float32 properties x y z (the centre, for tools that show points) | p<k>_x p<k>_y p<k>_z for k < K |
f_dc_0..2 | f_rest_* (channel-major, as INRIA) | opacity (logit) | delta (log) | sigma (log).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cleanup import drop_nonfinite
from ..convex import MAX_POINTS, ConvexScene
from ..errors import SceneLoadError
from ..load import FormatSpec
from .ply import is_ply, numbered, parse_header, read_ply, sh_from_columns, sh_to_columns, write_ply

_MARK = "radview-convex"


def sniff(path: Path, head: bytes) -> bool:
    return is_ply(head) and f"comment {_MARK}".encode() in head.split(b"end_header")[0]


def _points_per_convex(path: Path, comments: list[str]) -> int:
    for c in comments:
        if c.startswith(_MARK):
            for tok in c.split()[1:]:
                if tok.startswith("K=") and tok[2:].isdigit() and 3 <= int(tok[2:]) <= MAX_POINTS:
                    return int(tok[2:])
    raise SceneLoadError(path, f"the '{_MARK}' header comment lacks K=<3..{MAX_POINTS}>")


def read(path: Path) -> ConvexScene:
    header = parse_header(path)
    k = _points_per_convex(path, header.comments)
    v = header.element("vertex")
    if v is None or v.count == 0:
        raise SceneLoadError(path, "the convex PLY holds no convexes")
    names = set(v.names())
    need = [f"p{i}_{a}" for i in range(k) for a in "xyz"] + ["f_dc_0", "f_dc_1", "f_dc_2", "opacity",
                                                             "delta", "sigma"]
    missing = [n for n in need if n not in names]
    if missing:
        raise SceneLoadError(path, f"the convex PLY lacks {', '.join(missing[:6])}"
                                   + (" ..." if len(missing) > 6 else ""))
    rest = numbered(v.names(), "f_rest_")
    if len(rest) not in (0, 9, 24, 45):
        raise SceneLoadError(path, f"f_rest has {len(rest)} properties, expected 0, 9, 24 or 45")
    d = read_ply(path, header).element("vertex").data
    col = lambda name: np.asarray(d[name], dtype=np.float32)  # noqa: E731
    pts = np.stack([np.stack([col(f"p{i}_{a}") for a in "xyz"], 1) for i in range(k)], 1)
    sh = sh_from_columns(d, rest)
    scene = ConvexScene.from_raw(torch.from_numpy(pts), torch.from_numpy(col("delta")),
                                 torch.from_numpy(col("sigma")), torch.from_numpy(col("opacity")),
                                 torch.from_numpy(sh))
    return drop_nonfinite(scene, path)


def write(scene: ConvexScene, path: Path, **_opts) -> dict:
    raw = {key: t.detach().cpu().float().numpy() for key, t in scene.raw().items()}
    n, k = raw["points"].shape[:2]
    props: dict[str, np.ndarray] = {}
    centre = raw["points"].mean(axis=1)
    for j, a in enumerate("xyz"):
        props[a] = centre[:, j]
    for i in range(k):
        for j, a in enumerate("xyz"):
            props[f"p{i}_{a}"] = raw["points"][:, i, j]
    props.update(sh_to_columns(raw["sh"]))
    props["opacity"] = raw["opacity_logits"]
    props["delta"] = raw["log_deltas"]
    props["sigma"] = raw["log_sigmas"]
    write_ply(path, [("vertex", props)], [f"{_MARK} K={k}"])
    return {}


FORMAT = FormatSpec(
    name="ply_convex",
    extensions=(".ply",),
    sniff=sniff,
    read=read,
    write=write,
    description="Radview convex-splat PLY",
    kinds=("convex",),
)
