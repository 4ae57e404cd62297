"""Scaffolding shared by the GL compute pipelines (gaussians, convex, markers, slice4d, voxels).

    Textures(ctx)            named NEAREST textures, remade when size, components or dtype change
    held(*parts, queries)    {'objects', 'bytes'} of what a pipeline holds (resource_stats)
    scene_key / is_current   when a scene's upload is still valid (same object, unchanged tensors)
    GeomShBuffers            a splat scene's upload: geom and sh buffers (gaussians, convex)
    camera_uniforms, capped_degree, depth_range   what the projection and blend passes are given
    FrameRun                 one draw(): stage timer, the stage named in GL errors, debug checks
    PixelBuffers             software blends' pixel outputs in storage buffers (pixel_out.glsl)
    read_images / to_frame   the (rgba, depth) output images read back into a Frame
"""

from __future__ import annotations

import time
import weakref
from contextlib import contextmanager

import numpy as np
import torch

from .. import colormap
from ..profiling import StageTimer
from ..types import Camera, Frame, FrameStats, RenderSettings
from .binning import NEXT_TILE, nearest_texture
from .context import check_error, debug_enabled
from .sort import set_uniforms


class Textures:
    """Textures by name for texelFetch/imageStore; `count` and `nbytes` describe what is held."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.held: dict[str, object] = {}

    def get(self, name: str, size: tuple[int, int], components: int, dtype: str = "f4"):
        """The texture `name` of this size, components and dtype (made anew when any differs)."""
        tex = self.held.get(name)
        if tex is not None and tex.size == size and tex.components == components and tex.dtype == dtype:
            return tex
        if tex is not None:
            tex.release()
        tex = self.held[name] = nearest_texture(self.ctx, size, components, dtype)
        return tex

    def height(self, name: str) -> int:
        """Rows of the texture `name` (0 when none): record textures never shrink within a scene."""
        tex = self.held.get(name)
        return 0 if tex is None else tex.height

    def drop(self, *prefixes: str) -> None:
        """Release the textures whose names start with any of `prefixes`."""
        for name in [k for k in self.held if k.startswith(prefixes)]:
            self.held.pop(name).release()

    @property
    def count(self) -> int:
        return len(self.held)

    @property
    def nbytes(self) -> int:
        # 4 bytes a component: the pipelines hold f4, u4 and i4 textures only.
        return sum(t.width * t.height * t.components * 4 for t in self.held.values())

    def release(self) -> None:
        for t in self.held.values():
            t.release()
        self.held.clear()


def held(*parts, queries: dict | None = None) -> dict:
    """{'objects': count, 'bytes': total} over parts with .count and .nbytes (None: nothing held),
    plus the timer queries of a StageTimer pool (objects without a byte size)."""
    parts = [p for p in parts if p is not None]
    return {"objects": sum(p.count for p in parts) + len(queries or ()),
            "bytes": sum(p.nbytes for p in parts)}


def scene_key(scene, tensors, *extra) -> tuple:
    """(id, length, *extra, the tensors' in-place version counters and storage): equal while the
    same scene object is unchanged."""
    return (id(scene), len(scene), *extra, tuple(int(t._version) for t in tensors),
            tuple(t.data_ptr() for t in tensors))


def is_current(upload, scene, key_of) -> bool:
    """True when `upload` (None, or anything with .ref, a weakref, and .key) was made from this
    scene object and key_of(scene) still equals its key."""
    return upload is not None and upload.ref() is scene and upload.key == key_of(scene)


class GeomShBuffers:
    """A splat scene's upload: per-primitive `geom` and `sh` GL buffers, its robust box (`bounds`)
    and the `key`/`ref` that is_current checks. Subclasses fill the arrays, then call store()."""

    count = 2  # GL buffers held

    def store(self, ctx, scene, geom: np.ndarray, sh: np.ndarray, key: tuple, empty_geom: int = 16) -> None:
        """Upload geom [n, ...] and sh [n, K, 3] float32 (n = 0: placeholder bytes; no empty GL buffers)."""
        self.geom = ctx.buffer(geom.tobytes() if len(geom) else b"\0" * empty_geom)
        self.sh = ctx.buffer(sh.tobytes() if len(sh) else b"\0" * 16)
        self.bounds = scene.bounds()
        self.key = key
        self.ref = weakref.ref(scene)

    @property
    def nbytes(self) -> int:
        return self.geom.size + self.sh.size

    def release(self) -> None:
        self.geom.release()
        self.sh.release()


def camera_uniforms(camera: Camera) -> dict:
    """view_rot, view_trans, cam_pos, intrinsics, image_size of the projection passes."""
    view = camera.T_camera_world.astype(np.float32)
    return dict(view_rot=tuple(view[:3, :3].T.flatten()),  # GLSL mat3 is column-major
                view_trans=tuple(view[:3, 3]), cam_pos=tuple(camera.position.astype(np.float32)),
                intrinsics=(camera.fx, camera.fy, camera.cx, camera.cy),
                image_size=(int(camera.width), int(camera.height)))


def capped_degree(degree: int, cap: int | None) -> int:
    """The SH degree drawn: the scene's, or at most `cap` (RenderSettings.sh_degree) when given."""
    return degree if cap is None else max(0, min(int(cap), degree))


def depth_range(settings: RenderSettings, camera: Camera, bounds: np.ndarray) -> tuple:
    """(near, far) of the depth colour map: settings.depth_range, else auto from bounds [2, 3];
    (0, 1) outside mode "depth"."""
    if settings.mode != "depth":
        return (0.0, 1.0)
    return settings.depth_range or colormap.auto_depth_range(bounds, camera.T_camera_world, camera.near)


class FrameRun:
    """One draw(): times its stages, remembers the stage running and checks GL errors.

        run = FrameRun(ctx, timing, queries)
        with run.upload():
            buffers = ...             # wall time; in the stats when over 1 ms
        with run:                     # an error names run.current in any GL error raised with it;
            with run.stage("blend"):  # at the end ctx.error is checked once ("frame (last stage: ..)")
                ...                   # with RADVIEW_GL_DEBUG=1, after every stage as well
        stats = run.stats({"visible": ...})
    """

    def __init__(self, ctx, timing: str, queries: dict, label: str = "frame"):
        self.ctx = ctx
        self.timer = StageTimer(ctx, timing, queries)
        self.debug = debug_enabled()
        self.label = label
        self.current = "upload"
        self.upload_ms = 0.0

    @contextmanager
    def upload(self):
        t0 = time.perf_counter()
        yield
        self.upload_ms = (time.perf_counter() - t0) * 1e3

    @contextmanager
    def stage(self, name: str):
        self.current = name
        with self.timer.stage(name):
            yield
        if self.debug:
            check_error(self.ctx, name)

    def __enter__(self) -> FrameRun:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            check_error(self.ctx, self.current)  # name the stage in any GL error raised alongside a failure
        else:
            check_error(self.ctx, f"{self.label} (last stage: {self.current})")
        return False

    def stats(self, counters: dict) -> FrameStats:
        """FrameStats of the stages timed (reads pending GL queries), "upload" when over 1 ms."""
        stats = FrameStats(stages_ms=self.timer.results(), backend="gl", counters=counters)
        if self.upload_ms > 1.0:
            stats.stages_ms["upload"] = self.upload_ms
        return stats


class PixelBuffers:
    """A software blend's outputs as storage buffers (shaders/pixel_out.glsl OUT_BUFFERS).

        px = PixelBuffers.bind(scratch, W, H, max_words)   # None: use the images (too big a binding)
        ... run the blend with px.defines ...
        arrays = px.finish(out_rgba, out_depth, readback)  # read back, or copied into the textures

    On llvmpipe an imageStore costs several times a buffer store; reading the buffers back (render)
    or copying them into the textures draw() returns, on the GL side, costs less than the stores saved.
    bind_display: the colour alone as display-ready RGBA8 (OUT_DISPLAY), copied into `shown`.
    """

    def __init__(self, rgba, depth, size: tuple[int, int], shown=None):
        self.rgba, self.depth, self.size, self.shown = rgba, depth, size, shown

    @property
    def defines(self) -> dict:
        return {"OUT_BUFFERS": 1, **({"OUT_DISPLAY": 1} if self.shown is not None else {})}

    @classmethod
    def bind(cls, scratch, width: int, height: int, max_words: int) -> PixelBuffers | None:
        """Buffers at bindings 2 (vec4 per pixel) and 3 (float), or None when one would not fit a
        storage buffer binding (binding a bigger one is undefined: it crashed Mesa)."""
        if 4 * width * height > max_words:
            return None
        px = cls(scratch.get("out_rgba", 16 * width * height), scratch.get("out_depth", 4 * width * height),
                 (width, height))
        px.rgba.bind_to_storage_buffer(2)
        px.depth.bind_to_storage_buffer(3)
        return px

    @classmethod
    def bind_display(cls, scratch, textures: Textures, width: int, height: int,
                     max_words: int) -> PixelBuffers | None:
        """A buffer at binding 2 of RGBA8 words, bottom row first (pixel_out.glsl OUT_DISPLAY), and
        the RGBA8 texture `shown` that finish() copies it into; or bind()'s buffers when it would
        not fit a storage buffer binding."""
        if width * height > max_words:
            return cls.bind(scratch, width, height, max_words)
        px = cls(scratch.get("out_display", 4 * width * height), None, (width, height),
                 textures.get("out_display", (width, height), 4, "f1"))
        px.rgba.bind_to_storage_buffer(2)
        return px

    @classmethod
    def for_blend(cls, scratch, textures: Textures, width: int, height: int, max_words: int,
                  display: bool) -> PixelBuffers | None:
        """bind_display where `display` (the caller wants neither depth nor a read-back), else bind."""
        if display:
            return cls.bind_display(scratch, textures, width, height, max_words)
        return cls.bind(scratch, width, height, max_words)

    def finish(self, rgba_tex, depth_tex, readback: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """The (rgba [H,W,4], depth [H,W,1]) arrays when reading back, else copy into the textures
        (display-ready words into `shown`, the float textures left as they were)."""
        W, H = self.size
        if self.shown is not None:
            self.shown.write(self.rgba)
            return None
        if readback:  # into arrays of their own (writable: to_frame keeps them without a copy)
            rgba, depth = np.empty((H, W, 4), np.float32), np.empty((H, W, 1), np.float32)
            self.rgba.read_into(rgba, size=rgba.nbytes)
            self.depth.read_into(depth, size=depth.nbytes)
            return rgba, depth
        rgba_tex.write(self.rgba)
        if depth_tex is not None:  # (None: the blend stored no depth)
            depth_tex.write(self.depth)
        return None


LOOP_CAP = 65535  # llvmpipe (Mesa 22) ends an invocation's loops after this many iterations in all;
# later Mesa has no such cap (context.loop_cap measures it), and no tile is then counted as cut
# Dynamic tiles (group_tile.glsl FOR_EACH_TILE): a work group takes tiles while it has used fewer
# than GRAB_BUDGET loop iterations, so a tile it takes has LOOP_CAP - GRAB_BUDGET - 1 left.
GRAB_BUDGET = 16384
DYNAMIC_GROUPS = 64  # work groups at least: some for each of llvmpipe's threads (one per core)


def dynamic_groups(iterations: int) -> int:
    """Work groups to dispatch for a dynamic-tile pass whose tiles take at most `iterations` loop
    iterations in all (a tile's own, plus one a tile): more than can all stop on their budget
    before the tiles run out, and at least DYNAMIC_GROUPS.

    Why dynamic: llvmpipe (Mesa 22) hands each thread one contiguous run of a dispatch's work
    groups, so a frame waits for the slower thread; with tiles taken from a counter the faster one
    takes more. Measured per thread (CPU time per blend, 100k Gaussians): 37 and 26 ms with a
    tile per work group."""
    return max(DYNAMIC_GROUPS, iterations // GRAB_BUDGET + 1)


def tile_defines(dynamic: bool, lockstep: bool) -> dict:
    """Defines of a per-tile software pass (group_tile.glsl): dynamic tiles or not, and LOCKSTEP
    where its work group is one subgroup run as one SIMD vector."""
    return ({"DYNAMIC_TILES": 1, "GRAB_BUDGET": GRAB_BUDGET, "NEXT_TILE": NEXT_TILE} if dynamic else {}) | (
        {"LOCKSTEP": 1} if lockstep else {})


def run_tiles(cs, dynamic: bool, tiles_x: int, tiles_y: int, iterations: int) -> None:
    """Dispatch a per-tile pass: a work group a tile, or (dynamic: counters[NEXT_TILE] zeroed, as
    projection_buffers leaves it) dynamic_groups(iterations) work groups."""
    set_uniforms(cs, num_tiles=tiles_x * tiles_y, tiles_x=tiles_x)
    if dynamic:
        cs.run(dynamic_groups(iterations))
    else:
        cs.run(tiles_x, tiles_y)


def blend_cut_limit(per_iteration: int, dynamic: bool) -> int:
    """The most pairs one tile (or column) of a software blend can take within the loop cap."""
    return (LOOP_CAP - (GRAB_BUDGET + 1 if dynamic else 0)) * per_iteration


def bind_inputs(textures, as_images: bool, first_image_unit: int = 2) -> int:
    """Bind a pass's read-only texture inputs: to image units first_image_unit + i where the pass
    reads them with imageLoad (its IMAGE_INPUTS: CPU rasterizers, where llvmpipe runs an image
    load as plain per-lane reads and a texelFetch through its sampler code), else to texture
    units i; None entries are skipped. Returns the unit the first input's uniform names."""
    for i, t in enumerate(textures):
        if t is None:
            continue
        if as_images:
            t.bind_to_image(first_image_unit + i, read=True, write=False)
        else:
            t.use(location=i)
    return first_image_unit if as_images else 0


def check_blend_cut(cut: int, pairs_per_tile: int) -> None:
    """Raise if a software blend reported `cut` tiles (or columns) that llvmpipe's loop limit ended
    with pairs left and a pixel open (gs_blend.comp / cvx_blend.comp counters[6]): the frame would
    be incomplete. pairs_per_tile: the most one tile can blend (LOOP_CAP iterations)."""
    if cut:
        raise RuntimeError(
            f"{cut} tile(s) hold more (tile, primitive) pairs than the CPU rasterizer lets one tile "
            f"blend ({pairs_per_tile:,}: llvmpipe's loop limit), and this frame would be incomplete; "
            "render at a higher resolution, with fewer primitives, or with the torch backend")


def read_images(rgba_tex, depth_tex, scratch) -> tuple[np.ndarray, np.ndarray]:
    """The RGBA32F and R32F output images as numpy arrays rgba [H,W,4], depth [H,W,1] (writable),
    through scratch.read_texture."""
    W, H = rgba_tex.size
    return (scratch.read_texture(rgba_tex, np.empty((H, W, 4), np.float32)),
            scratch.read_texture(depth_tex, np.empty((H, W, 1), np.float32)))


def to_frame(rgba: np.ndarray, depth: np.ndarray, stats: FrameStats,
             normals: np.ndarray | None = None) -> Frame:
    """Frame.rgb [H,W,3], alpha [H,W,1], depth [H,W,1] (and normals [H,W,3]) from read-back arrays
    (kept without a copy where writable: read_images and PixelBuffers.finish give arrays of their own)."""
    def own(a: np.ndarray) -> np.ndarray:
        return a if a.flags.writeable and a.flags.c_contiguous else a.copy()

    # rgb and alpha are views of the one RGBA array (strided, as Frame allows): splitting them into
    # contiguous copies took ~3 ms of a frame at 800x800.
    rgba_t = torch.from_numpy(own(rgba))
    return Frame(rgb=rgba_t[..., :3], alpha=rgba_t[..., 3:],
                 depth=torch.from_numpy(own(depth)),
                 normals=None if normals is None else torch.from_numpy(np.ascontiguousarray(normals)),
                 stats=stats)


__all__ = ["Textures", "bind_inputs", "held", "scene_key", "is_current", "GeomShBuffers", "camera_uniforms",
           "capped_degree", "depth_range", "FrameRun", "PixelBuffers", "read_images", "to_frame"]
