"""4D-Rotor Gaussian Splatting checkpoints: nerfstudio `nerfstudio_models/step-XXXXXXXXX.ckpt`.

weify627/4D-Rotor-Gaussians (a nerfstudio fork; FORMATS.md section 3): a torch zip holding
{step, pipeline (state dict), optimizers, schedulers, scalers}. The Gaussians are in the pipeline
state dict under `_model.gauss_params.`:

    xyz [N,3] | t [N,1] | scales_xyz [N,3] log | scales_t [N,1] log | quats1 [N,4] | quats2 [N,4]
    features_dc [N,1,3] | features_rest [N,K-1,3] | opacities [N,1] logit

quats1 | quats2 is the 8-component rotor (a, b_xy, b_xz, b_yz | b_xw, b_yw, b_zw, p), kept raw
(not normalized) because the reference slices it raw. Loaded with weights_only=True (safe_torch).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cleanup import drop_nonfinite
from ..errors import SceneLoadError
from ..gaussians4d import Gaussian4DScene
from ..load import FormatSpec
from .safe_torch import ZIP_MAGIC, load_checkpoint, pickle_bytes, tensor_field

KEY = "gauss_params."
FIELDS = ("xyz", "t", "scales_xyz", "scales_t", "quats1", "quats2", "features_dc", "features_rest",
          "opacities")


def sniff(path: Path, head: bytes) -> bool:
    if not head.startswith(ZIP_MAGIC):
        return False
    pkl = pickle_bytes(path)
    return pkl is not None and b"gauss_params.quats2" in pkl and b"gauss_params.scales_t" in pkl


def _find_params(path: Path, state: dict) -> dict:
    """The nine gauss_params tensors, whatever prefix the pipeline gave them (`_model.`, `module.`)."""
    prefixes = [k[: -len("xyz")] for k in state if isinstance(k, str) and k.endswith(KEY + "xyz")]
    if not prefixes:
        raise SceneLoadError(path, "the pipeline state dict has no '_model.gauss_params.xyz': this "
                                   "nerfstudio checkpoint is not a 4D-Rotor Gaussian model")
    prefix = min(prefixes, key=len)
    missing = [f for f in FIELDS if prefix + f not in state]
    if missing:
        raise SceneLoadError(path, f"the checkpoint lacks {', '.join(prefix + f for f in missing)} "
                                   "(not a 4D-Rotor Gaussian model?)")
    return {f: state[prefix + f] for f in FIELDS}


def read(path: Path, time_duration: tuple[float, float] | None = None) -> Gaussian4DScene:
    """Read a 4D-Rotor GS nerfstudio checkpoint. `time_duration` sets the timeline range only."""
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("pipeline"), dict):
        raise SceneLoadError(path, "not a nerfstudio checkpoint (expected a dict with a 'pipeline' "
                                   "state dict)")
    p = _find_params(path, obj["pipeline"])
    pre = "_model.gauss_params."
    xyz = tensor_field(path, p["xyz"], pre + "xyz", ("N", 3))
    n = xyz.shape[0]
    if n == 0:
        raise SceneLoadError(path, "the checkpoint holds zero Gaussians")
    t = tensor_field(path, p["t"], pre + "t", ("N", 1), n)[:, 0]
    s_xyz = tensor_field(path, p["scales_xyz"], pre + "scales_xyz", ("N", 3), n)
    s_t = tensor_field(path, p["scales_t"], pre + "scales_t", ("N", 1), n)
    q1 = tensor_field(path, p["quats1"], pre + "quats1", ("N", 4), n)
    q2 = tensor_field(path, p["quats2"], pre + "quats2", ("N", 4), n)
    dc = p["features_dc"]
    if isinstance(dc, torch.Tensor) and dc.ndim == 2:  # some splatfacto versions keep [N, 3]
        dc = dc[:, None, :]
    dc = tensor_field(path, dc, pre + "features_dc", ("N", 1, 3), n)
    rest = tensor_field(path, p["features_rest"], pre + "features_rest", ("N", None, 3), n)
    if rest.shape[1] + 1 not in (1, 4, 9, 16):
        raise SceneLoadError(path, f"features_rest has {rest.shape[1]} coefficients per channel, "
                                   "expected 0, 3, 8 or 15 (SH degree 0 to 3)")
    op = tensor_field(path, p["opacities"], pre + "opacities", ("N", 1), n)[:, 0]
    sh = torch.cat([dc, rest], dim=1).unsqueeze(1)  # [N, 1, K, 3]
    scene = Gaussian4DScene.from_raw(
        "rotor", xyz, t, torch.cat([s_xyz, s_t], dim=1), torch.cat([q1, q2], dim=1), op, sh,
        time_duration=None if time_duration is None else (float(time_duration[0]), float(time_duration[1])),
    )
    step = obj.get("step")
    if isinstance(step, int):
        scene.meta["step"] = step
    return drop_nonfinite(scene, path)


FORMAT = FormatSpec(
    name="rotor4d_ckpt",
    extensions=(".ckpt",),
    sniff=sniff,
    read=read,
    description="4D-Rotor Gaussian Splatting nerfstudio checkpoint",
    kinds=("gaussians4d",),
)
