"""Radview renderer: turns (scene, camera, settings) into a Frame. No Qt."""

from .types import Camera, Frame, FrameStats, Renderer, RenderSettings, look_at_pose


def get_renderer(name: str = "torch", **kwargs) -> Renderer:
    """Make a backend: "torch" (differentiable reference, CPU/CUDA) or "gl" (OpenGL compute).

    kwargs go to the backend's constructor (torch: device=...; gl: ctx=an existing moderngl
    context, else a standalone EGL one is made).
    """
    if name == "torch":
        from .torch_backend import TorchRenderer

        return TorchRenderer(**kwargs)
    if name == "gl":
        from .gl_backend import GLRenderer

        return GLRenderer(**kwargs)
    raise ValueError(f"unknown backend {name!r} (use 'torch' or 'gl')")


__all__ = ["Camera", "Frame", "FrameStats", "Renderer", "RenderSettings", "get_renderer", "look_at_pose"]
