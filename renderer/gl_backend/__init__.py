"""The OpenGL compute backend (moderngl): the interactive path, also headless through EGL.

    GLRenderer(ctx=None)          # ctx: an existing moderngl context (the viewer's), else EGL standalone
    .supports(scene)              # by scene.kind
    .render(scene, camera, settings) -> Frame       # with read-back to torch tensors
    .draw(scene, camera, settings) -> (texture, FrameStats)   # no read-back, for the viewer
"""

from __future__ import annotations

import importlib.util

import numpy as np

from ..types import Camera, Frame, FrameStats, RenderSettings, rgb_to_uint8
from .context import GLStageError, check_error, create_context, gl_available, is_software
from .shaders import ShaderCompileError

_KINDS = ("gaussians", "gaussians4d", "voxels", "convex")
_MARKER_MODES = ("points", "ellipsoids", "normals")  # = markers.MARKER_MODES (markers.py loads lazily)


class GLRenderer:
    """Renders scenes with OpenGL 4.3 compute shaders; holds the context and per-scene buffers.

    Args:
        ctx: a moderngl context made current by its owner (e.g. from Qt's context with
            moderngl.create_context()), or None to make a standalone EGL context.
        sort: "auto" | "gpu" | "cpu": where the Gaussians' depth sort runs (see gaussians.py).
        timing: StageTimer mode for FrameStats.stages_ms: "auto" | "wall" | "gl" | "off".
        blend_tile: None (default: 8 x 16 px tiles on llvmpipe for the Gaussians, 8 px for the
            convexes; 16 on GPUs, faster there) or 8 or 16, or (8, 16) for the Gaussians (either
            way a Gaussian is binned into the tiles its alpha ellipse reaches: the torch twin's
            image with fewer tile pairs).
        count_blends: count the Gaussian blend's pixel blends into FrameStats.counters
            ["blended_samples"] (~8% of that blend's time on llvmpipe; GaussianPipeline). An
            attribute too: set it between frames.
    Raises:
        RuntimeError: when no OpenGL 4.3 context can be made (the message says why).
    """

    name = "gl"

    def __init__(self, ctx=None, sort: str = "auto", timing: str = "auto",
                 blend_tile: int | tuple[int, int] | None = None, count_blends: bool = True):
        self.owns_ctx = ctx is None
        self.ctx = create_context() if ctx is None else ctx
        if self.ctx.version_code < 430:
            raise RuntimeError(f"the GL backend needs OpenGL 4.3, this context is {self.ctx.version_code}")
        self._sort = sort
        self._timing = timing
        self._blend_tile = blend_tile
        self._count_blends = count_blends
        self._gaussians = None
        self._voxels_mod = None
        self._convex = None
        self._slicer = None
        self._markers = None
        self._pack = None  # render_rgb8's read-back staging (sort.Scratch, made on first use)

    @property
    def gaussians(self):
        """The Gaussian pipeline (made on first use)."""
        if self._gaussians is None:
            from .gaussians import GaussianPipeline

            self._gaussians = GaussianPipeline(self.ctx, sort=self._sort, timing=self._timing,
                                               blend_tile=self._blend_tile, count_blends=self._count_blends)
        return self._gaussians

    @property
    def count_blends(self) -> bool:
        """Whether Gaussian frames count their pixel blends (see the class doc)."""
        return self._count_blends

    @count_blends.setter
    def count_blends(self, on: bool) -> None:
        self._count_blends = bool(on)
        if self._gaussians is not None:
            self._gaussians.count_blends = self._count_blends

    @property
    def convex(self):
        """The convex splat pipeline (convex.py, made on first use)."""
        if self._convex is None:
            from .convex import ConvexPipeline

            bt = self._blend_tile
            # (8 x 16 px tiles are the Gaussians' only: the convexes take 8 px ones there)
            self._convex = ConvexPipeline(self.ctx, sort=self._sort, timing=self._timing,
                                          blend_tile=bt[0] if isinstance(bt, tuple) else bt)
        return self._convex

    @property
    def markers(self):
        """The "points" / "ellipsoids" / "normals" pipeline (markers.py, made on first use)."""
        if self._markers is None:
            from .markers import MarkerPipeline

            self._markers = MarkerPipeline(self.ctx, timing=self._timing)
        return self._markers

    @property
    def slicer(self):
        """The 4D slicing pass (slice4d.py, made on first use)."""
        if self._slicer is None:
            from .slice4d import Slicer4D

            self._slicer = Slicer4D(self.ctx)
        return self._slicer

    def supports(self, scene) -> bool:
        kind = getattr(scene, "kind", None)
        if kind == "voxels":
            return importlib.util.find_spec(f"{__name__}.voxels") is not None
        return kind in _KINDS

    def prefers_torch(self, scene) -> bool:
        """True where the torch backend draws this scene much faster than this context can.

        On a software rasterizer (llvmpipe) a voxel grid with an MLP evaluates the MLP per sample
        per SIMD lane: a 160^3 DirectVoxGO grid took 37 s at 400x400 here against 7.4 s for the
        torch twin (BLAS), so interactive and default paths should pick torch for it.
        """
        return (getattr(scene, "kind", None) == "voxels" and getattr(scene, "color_mode", "") == "mlp"
                and is_software(self.ctx))

    def _prepare(self, scene, settings: RenderSettings):
        kind = getattr(scene, "kind", None)
        if not self.supports(scene):
            raise ValueError(f"the GL backend cannot render a {kind!r} scene")
        # One splat scene's buffers at a time: switching between convexes and Gaussians frees the other.
        if kind != "convex" and self._convex is not None and self._convex.scene is not None:
            self._convex.release_scene()
        if kind == "convex" and self._gaussians is not None and self._gaussians.scene is not None:
            self._gaussians.release_scene()
        if kind == "gaussians4d":
            # Gaussian4DScene: sliced on the GPU into the buffers the projection reads
            # (slice4d.GPUGaussians); flipbooks: the frame's buffers; other kinds: slice(t) on the CPU.
            out = self.slicer.slice(scene, settings.time, settings.sh_degree)
            if getattr(out, "on_gpu", False) and self._gaussians is not None and self._gaussians.scene:
                self._gaussians.release_scene()  # a static scene's buffers are not needed meanwhile
            return out
        if kind == "gaussians" and self._slicer is not None and self._slicer.holds:
            self._slicer.release()
        return scene

    @staticmethod
    def _add_slice_stats(stats: FrameStats, scene) -> FrameStats:
        if getattr(scene, "on_gpu", False):
            stats.stages_ms.update(scene.stages_ms)
            stats.counters.update(scene.counters)
        return stats

    def render(self, scene, camera: Camera, settings: RenderSettings | None = None) -> Frame:
        """Render and read back: Frame.rgb [H,W,3], alpha [H,W,1], depth [H,W,1] float32 tensors."""
        settings = settings or RenderSettings()
        scene = self._prepare(scene, settings)
        if scene.kind == "voxels":
            return self._voxels().render_voxels(self.ctx, scene, camera, settings, readback=True)
        if scene.kind == "convex":
            return self.convex.render(scene, camera, settings)
        if settings.mode in _MARKER_MODES:  # z-buffered markers on the splatting pipeline's scene buffers
            frame = self.markers.render(scene, camera, settings, self.gaussians._scene_buffers)
        else:
            frame = self.gaussians.render(scene, camera, settings)
        self._add_slice_stats(frame.stats, scene)
        return frame

    def render_rgb8(self, scene, camera: Camera, settings: RenderSettings | None = None) -> np.ndarray:
        """The colour alone as [H, W, 3] uint8 (render(...).to_uint8(), for video and PNG output).

        Where the blend can write display-ready RGBA8 (Gaussian blends, the convex one on CPU
        rasterizers) it skips the depth, the float read-back and the conversion (on llvmpipe at
        800x800 the float read-back took ~2 ms and to_uint8 ~5 ms of a frame; on an H200 at
        1920x1080 reading the RGBA8 texture took 0.8 ms), rounding as to_uint8 does.
        """
        tex, _ = self.draw(scene, camera, settings, display=True)
        W, H = int(camera.width), int(camera.height)
        if self._pack is None:
            from .sort import Scratch

            self._pack = Scratch(self.ctx)
        if tex.dtype == "f1":  # RGBA8, bottom row first
            rgba8 = self._pack.read_texture(tex, np.empty((H, W, 4), np.uint8))[::-1]
            rgb8 = np.empty((H, W, 3), np.uint8)
            for c in range(3):  # channel by channel: numpy copied [..., :3] whole in 12 ms at 1080p, this 3.4
                rgb8[..., c] = rgba8[..., c]
            return rgb8
        return rgb_to_uint8(self._pack.read_texture(tex, np.empty((H, W, 4), np.float32))[..., :3])

    def draw(self, scene, camera: Camera, settings: RenderSettings | None = None, display: bool = False):
        """Render without read-back: (moderngl.Texture RGBA32F of the colour and alpha, FrameStats).

        Row 0 of the texture is the top image row (OpenCV), so flip V when drawing it with GL's
        bottom-left texture origin. display=True: a Gaussian or convex scene's colour may come
        instead as an RGBA8 texture (dtype "f1") in GL's row order, ready to copy into a framebuffer
        as it is (GaussianPipeline.draw); the dtype tells which.
        """
        settings = settings or RenderSettings()
        scene = self._prepare(scene, settings)
        if scene.kind == "voxels":
            mod = self._voxels()
            if hasattr(mod, "draw_voxels"):
                return mod.draw_voxels(self.ctx, scene, camera, settings)
            frame = mod.render_voxels(self.ctx, scene, camera, settings, readback=False)
            return frame.extras.get("texture"), frame.stats
        if scene.kind == "convex":
            tex, _, stats, _ = self.convex.draw(scene, camera, settings, readback=False, display=display)
            return tex, stats
        if settings.mode in _MARKER_MODES:
            tex, _, stats, _ = self.markers.draw(scene, camera, settings, self.gaussians._scene_buffers)
            return tex, self._add_slice_stats(stats, scene)
        tex, _, stats, _ = self.gaussians.draw(scene, camera, settings, readback=False, depth=False,
                                               display=display)
        return tex, self._add_slice_stats(stats, scene)

    def _voxels(self):
        if self._voxels_mod is None:
            self._voxels_mod = importlib.import_module(f"{__name__}.voxels")
        return self._voxels_mod

    def resource_stats(self) -> dict:
        """GPU memory this renderer holds: {'objects': n, 'bytes': b}."""
        out = self._gaussians.resource_stats() if self._gaussians else {"objects": 0, "bytes": 0}
        if self._slicer is not None:
            extra = self._slicer.resource_stats()
            out = {k: out[k] + extra[k] for k in ("objects", "bytes")}
        if self._convex is not None:
            extra = self._convex.resource_stats()
            out = {k: out[k] + extra[k] for k in ("objects", "bytes")}
        if self._markers is not None:
            extra = self._markers.resource_stats()
            out = {k: out[k] + extra[k] for k in ("objects", "bytes")}
        return out

    def release(self) -> None:
        """Free every buffer (and the context when this renderer made it)."""
        if self._gaussians is not None:
            self._gaussians.release()
            self._gaussians = None
        if self._convex is not None:
            self._convex.release()
            self._convex = None
        if self._slicer is not None:
            self._slicer.release()
            self._slicer = None
        if self._markers is not None:
            self._markers.release()
            self._markers = None
        if self._pack is not None:
            self._pack.release()
            self._pack = None
        if self.owns_ctx and self.ctx is not None:
            from .shaders import forget_context

            forget_context(self.ctx)
            self.ctx.release()
            self.ctx = None


__all__ = ["GLRenderer", "gl_available", "GLStageError", "ShaderCompileError", "check_error", "FrameStats",
           "Frame"]
