"""The torch backend: differentiable reference renderers for every scene kind (CPU or CUDA)."""

from __future__ import annotations

import importlib

import torch

from ..types import Camera, Frame, RenderSettings

# scene.kind -> "module:function" with signature fn(scene, camera, settings, device) -> Frame
_KINDS = {
    "gaussians": "gaussians:render_gaussians",
    "gaussians4d": "gaussians:render_gaussians",  # sliced at settings.time first (see render)
    "convex": "convex:render_convex",
    "voxels": "voxels:render_voxels",
}


class TorchRenderer:
    """Renders any supported scene with plain torch ops; gradients flow to the scene tensors."""

    name = "torch"

    def __init__(self, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")

    def supports(self, scene) -> bool:
        kind = getattr(scene, "kind", None)
        if kind not in _KINDS:
            return False
        mod = _KINDS[kind].split(":")[0]
        return importlib.util.find_spec(f"{__name__}.{mod}") is not None

    def render(self, scene, camera: Camera, settings: RenderSettings = RenderSettings()) -> Frame:
        kind = getattr(scene, "kind", None)
        if not self.supports(scene):
            raise ValueError(f"the torch backend cannot render a {kind!r} scene")
        if kind == "gaussians4d":
            scene = scene.slice(settings.time)
        mod_name, fn_name = _KINDS[kind].split(":")
        fn = getattr(importlib.import_module(f"{__name__}.{mod_name}"), fn_name)
        frame = fn(scene, camera, settings, self.device)
        frame.stats.backend = self.name
        return frame
