"""3D Convex Splatting checkpoint `point_cloud_state_dict.pt` (convexsplatting/convex-splatting >
scene/convex_model.py > save): a torch dict of convex_points [N,K,3] (world), delta [N,1] (log),
sigma [N,1] (log), active_sh_degree (int), features_dc [N,1,3], features_rest [N,15,3],
opacity [N,1] (logit); float16 in the "light" mode. Loaded with weights_only=True.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cleanup import drop_nonfinite
from ..convex import MAX_POINTS, ConvexScene
from ..errors import SceneLoadError
from ..load import FormatSpec
from .safe_torch import ZIP_MAGIC, load_checkpoint, pickle_bytes, tensor_field

_KEYS = ("convex_points", "delta", "sigma", "features_dc", "features_rest", "opacity")


def sniff(path: Path, head: bytes) -> bool:
    if not head.startswith(ZIP_MAGIC):
        return False
    pkl = pickle_bytes(path)
    return pkl is not None and b"convex_points" in pkl


def read(path: Path) -> ConvexScene:
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise SceneLoadError(path, f"expected a dict of tensors, found a {type(ckpt).__name__}")
    missing = [k for k in _KEYS if k not in ckpt]
    if missing:
        raise SceneLoadError(path, f"not a 3D Convex Splatting state dict: missing {', '.join(missing)}")
    pts = tensor_field(path, ckpt["convex_points"], "convex_points", ("N", None, 3))
    n, k = pts.shape[:2]
    if n == 0:
        raise SceneLoadError(path, "the checkpoint holds zero convexes")
    if not 3 <= k <= MAX_POINTS:
        raise SceneLoadError(path, f"convex_points has {k} points per convex, expected 3 to {MAX_POINTS}")
    delta = tensor_field(path, ckpt["delta"], "delta", ("N", 1), n)[:, 0]
    sigma = tensor_field(path, ckpt["sigma"], "sigma", ("N", 1), n)[:, 0]
    opac = tensor_field(path, ckpt["opacity"], "opacity", ("N", 1), n)[:, 0]
    dc = tensor_field(path, ckpt["features_dc"], "features_dc", ("N", 1, 3), n)
    rest = tensor_field(path, ckpt["features_rest"], "features_rest", ("N", None, 3), n)
    if rest.shape[1] not in (0, 3, 8, 15):
        raise SceneLoadError(path, f"features_rest has {rest.shape[1]} coefficients, expected 0, 3, 8 or 15")
    sh = torch.cat([dc, rest], dim=1)
    degree = ckpt.get("active_sh_degree", None)
    if isinstance(degree, int) and 0 <= degree < 3 and (degree + 1) ** 2 < sh.shape[1]:
        sh = sh[:, : (degree + 1) ** 2]  # bands above the active degree were never trained
    scene = ConvexScene.from_raw(pts, delta, sigma, opac, sh.contiguous())
    return drop_nonfinite(scene, path)


def write(scene: ConvexScene, path: Path, light: bool = False, **_opts) -> dict:
    """Write the 3DCS layout (float16 when light=True, like 3DCS's light mode)."""
    raw = scene.raw()
    dt = torch.float16 if light else torch.float32
    out = {
        "convex_points": raw["points"].detach().to(dt),
        "delta": raw["log_deltas"].detach()[:, None].to(dt),
        "sigma": raw["log_sigmas"].detach()[:, None].to(dt),
        "active_sh_degree": scene.sh_degree,
        "features_dc": raw["sh"].detach()[:, :1].to(dt),
        "features_rest": raw["sh"].detach()[:, 1:].to(dt),
        "opacity": raw["opacity_logits"].detach()[:, None].to(dt),
    }
    torch.save(out, path)
    return {}


FORMAT = FormatSpec(
    name="convex_pt",
    extensions=(".pt",),
    sniff=sniff,
    read=read,
    write=write,
    description="3D Convex Splatting state dict",
    kinds=("convex",),
)
