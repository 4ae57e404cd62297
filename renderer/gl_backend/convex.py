"""The 3D Convex Splatting compute pipeline: project + hull + SH, depth sort, tile binning, blend.

Stages (shaders/ in brackets):
    project  [cvx_project.comp]  one invocation per convex: centre culling, point projection, 2D
                                 hull (angle sort + Graham passes in registers, K <= 8), edge lines,
                                 3DCS bounds, tile rectangle, SH colour, record, sort key
    sort     [radix.comp, scan.comp]  shared with the Gaussian pipeline (binning.TileBinning)
    bin      [bin.comp, scan.comp]    shared: depth-sorted convexes bucketed stably into tiles
    blend    [cvx_blend.comp]    one work group per blend tile, front to back, LSE indicator
    readback                     (render only) the image and depth to torch tensors

Same forward model as renderer/torch_backend/convex.py (REFERENCE 4, FORMATS 4). The scene is
uploaded once (keyed by identity, length and the tensors' in-place version counters).
"""

from __future__ import annotations

import time
import weakref

import numpy as np
import torch

from scenes.convex import MAX_POINTS

from .. import colormap
from ..profiling import StageTimer, release_query_pool
from ..types import Camera, Frame, FrameStats, RenderSettings
from .binning import PAIR_TEX_W, TileBinning, nearest_texture
from .context import check_error, debug_enabled, is_software
from .shaders import compute_shader
from .sort import Scratch, groups, set_uniforms

TILE = 16  # the twin's tile (getRect)
MODES = {"rgb": 0, "depth": 1, "alpha": 2}


def record_texels(k: int) -> int:
    """Texels of one convex's record for k points (cvx_common.glsl CVX_REC)."""
    return 2 + (3 * k + 3) // 4


def _scene_key(scene) -> tuple:
    tensors = [scene.points, scene.deltas, scene.sigmas, scene.opacities, scene.sh]
    return (id(scene), len(scene), tuple(int(t._version) for t in tensors),
            tuple(t.data_ptr() for t in tensors))


class _ConvexBuffers:
    """A scene's per-convex data on the GPU: geom (K points + 1 parameter vec4 per convex) and SH."""

    def __init__(self, ctx, scene):
        n, k = len(scene), scene.num_points
        if not 3 <= k <= MAX_POINTS:
            raise ValueError(f"convexes have {k} points each, the GL pipeline takes 3 to {MAX_POINTS}")
        self.n, self.k = n, k
        self.sh_k = int(scene.sh.shape[1])
        self.degree = scene.sh_degree
        self.quirk = bool(scene.sh_center_quirk)
        geom = np.zeros((n, k + 1, 4), dtype=np.float32)
        with torch.no_grad():
            geom[:, :k, :3] = scene.points.detach().float().cpu().numpy()
            geom[:, k, 0] = scene.deltas.detach().float().cpu().numpy()
            geom[:, k, 1] = scene.sigmas.detach().float().cpu().numpy()
            geom[:, k, 2] = scene.opacities.detach().float().cpu().numpy()
            sh = np.ascontiguousarray(scene.sh.detach().float().cpu().numpy())
        # Non-finite rows are dropped (REFERENCE: reported and dropped): NaN points fail z > near.
        bad = ~np.isfinite(geom.reshape(n, (k + 1) * 4)).all(axis=1)
        bad |= ~np.isfinite(sh.reshape(n, self.sh_k * 3)).all(axis=1)
        if bad.any():
            geom[bad] = np.nan
            sh[bad] = 0.0
        self.geom = ctx.buffer(geom.tobytes() if n else b"\0" * 16)
        self.sh = ctx.buffer(sh.tobytes() if n else b"\0" * 16)
        self.bounds = scene.bounds()
        self.key = _scene_key(scene)
        self.ref = weakref.ref(scene)

    @property
    def nbytes(self) -> int:
        return self.geom.size + self.sh.size

    def release(self) -> None:
        self.geom.release()
        self.sh.release()


class ConvexPipeline:
    """Renders ConvexScenes on one moderngl context; holds scene buffers and scratch space.

    sort: "auto"/"gpu" or "cpu" (binning.TileBinning). timing: a StageTimer mode. blend_tile: 16
    bins exactly as the twin; 8 (default) bins into the 8 px sub-tiles the convex can reach with
    alpha >= 1/255 (same image, fewer pixel tests); None picks per platform. pixels_per_thread:
    pixels one blend invocation shades.
    """

    def __init__(self, ctx, sort: str = "auto", timing: str = "auto", blend_tile: int | None = 8,
                 pixels_per_thread: int = 8):
        if blend_tile is None:
            # Same rule as GaussianPipeline: llvmpipe prefers 8 px tiles (fewer pixel tests); on an
            # H200 16 px tiles were faster for 50k convexes at 800x800 (38.6 vs 41 ms).
            blend_tile = 8 if is_software(ctx) else 16
        if blend_tile not in (8, 16) or blend_tile % pixels_per_thread:
            raise ValueError("blend_tile must be 8 or 16, and a multiple of pixels_per_thread")
        self.ctx = ctx
        self.timing = timing
        self.blend_tile = blend_tile
        self.ppt = pixels_per_thread
        self.scene: _ConvexBuffers | None = None
        self.scratch = Scratch(ctx)
        self.binning = TileBinning(ctx, self.scratch, "gpu" if sort == "auto" else sort)
        self.textures: dict[str, object] = {}
        self.queries: dict = {}
        self._last: dict = {}

    # ---- resources -------------------------------------------------------------------------
    def _scene_buffers(self, scene) -> _ConvexBuffers:
        key = _scene_key(scene)
        if self.scene is not None and self.scene.key == key and self.scene.ref() is scene:
            return self.scene
        self.release_scene()
        self.scene = _ConvexBuffers(self.ctx, scene)
        return self.scene

    def _texture(self, name: str, size: tuple[int, int], components: int):
        tex = self.textures.get(name)
        if tex is not None and tex.size == size and tex.components == components:
            return tex
        if tex is not None:
            tex.release()
        tex = self.textures[name] = nearest_texture(self.ctx, size, components)
        return tex

    def _record_texture(self, n: int, k: int):
        """One RGBA32F texture holding record_texels(k) texels per convex."""
        rows = max(1, (n * record_texels(k) + PAIR_TEX_W - 1) // PAIR_TEX_W)
        cur = self.textures.get("rec")
        if cur is not None and cur.height > rows:
            rows = cur.height
        return self._texture("rec", (PAIR_TEX_W, rows), 4)

    def release_scene(self) -> None:
        """Free the current scene's buffers and the scratch space sized by it."""
        if self.scene is not None:
            self.scene.release()
            self.scene = None
        self.scratch.release()
        self.binning.release()
        if "rec" in self.textures:
            self.textures.pop("rec").release()

    def resource_stats(self) -> dict:
        """What this pipeline holds on the GPU: {'objects': count, 'bytes': total}."""
        tex_bytes = sum(t.width * t.height * t.components * 4 for t in self.textures.values())
        scene_bytes = self.scene.nbytes if self.scene else 0
        n_obj = (self.scratch.count + len(self.textures) + self.binning.count + (2 if self.scene else 0)
                 + len(self.queries))
        n_bytes = self.scratch.nbytes + tex_bytes + self.binning.nbytes + scene_bytes
        return {"objects": n_obj, "bytes": n_bytes}

    def release(self) -> None:
        self.release_scene()
        for t in self.textures.values():
            t.release()
        self.textures.clear()
        release_query_pool(self.queries)

    # ---- the frame -------------------------------------------------------------------------
    def draw(self, scene, camera: Camera, settings: RenderSettings, readback: bool = False):
        """Run every stage; returns (rgba texture, depth texture, FrameStats, readback arrays|None)."""
        if settings.mode not in MODES:
            raise ValueError(f"mode {settings.mode!r} is not supported by the GL convex pipeline "
                             f"(use one of {', '.join(MODES)})")
        ctx = self.ctx
        debug = debug_enabled()
        timer = StageTimer(ctx, self.timing, self.queries)
        W, H = int(camera.width), int(camera.height)
        bt = self.blend_tile
        tiles_x, tiles_y = (W + bt - 1) // bt, (H + bt - 1) // bt
        num_tiles = tiles_x * tiles_y
        out_rgba = self._texture("out_rgba", (W, H), 4)
        out_depth = self._texture("out_depth", (W, H), 1)
        stage = "upload"

        def checkpoint(name):
            if debug:
                check_error(ctx, name)

        t0 = time.perf_counter()
        sb = self._scene_buffers(scene)
        upload_ms = (time.perf_counter() - t0) * 1e3
        n, k = sb.n, sb.k
        rects, keys, vals, counters = self.binning.projection_buffers(n)
        n_keyed = n_visible = 0
        bins = None
        try:
            if n > 0:
                stage = "project"
                with timer.stage("project"):
                    rec = self._record_texture(n, k)
                    rec.bind_to_image(0, read=False, write=True)
                    cs = compute_shader(ctx, "cvx_project.comp", {"NPTS": k, "BLEND_TILE": bt})
                    for i, b in ((0, sb.geom), (1, sb.sh), (3, rects), (4, keys), (5, vals), (6, counters)):
                        b.bind_to_storage_buffer(i)
                    view = camera.T_camera_world.astype(np.float32)
                    cap = settings.sh_degree
                    degree = sb.degree if cap is None else max(0, min(cap, sb.degree))
                    set_uniforms(
                        cs, n=n, view_rot=tuple(view[:3, :3].T.flatten()), view_trans=tuple(view[:3, 3]),
                        cam_pos=tuple(camera.position.astype(np.float32)),
                        intrinsics=(camera.fx, camera.fy, camera.cx, camera.cy), image_size=(W, H),
                        tiles=((W + TILE - 1) // TILE, (H + TILE - 1) // TILE),
                        sh_k=sb.sh_k, sh_degree=degree, sh_quirk=int(sb.quirk))
                    cs.run(groups(n, 64))
                    ctx.memory_barrier()
                    cnt = np.frombuffer(counters.read(16), dtype=np.uint32)
                    n_keyed, expect_pairs, n_visible = int(cnt[0]), int(cnt[2]), int(cnt[3])
                checkpoint("project")

                stage = "sort"
                with timer.stage("sort"):
                    if n_keyed > 0:
                        keys, vals = self.binning.sort(keys, vals, n)
                checkpoint("sort")

                stage = "bin"
                with timer.stage("bin"):
                    bins = self.binning.bin(keys, vals, rects, n_keyed, expect_pairs, num_tiles, tiles_x)
                checkpoint("bin")

            stage = "blend"
            with timer.stage("blend"):
                if bins is None or bins.n_pairs == 0:
                    bins = self.binning.empty(num_tiles)  # nothing on screen: every tile's range is empty
                pair_ids = self.binning.pair_texture(max(bins.n_pairs, 1))
                rec = self._record_texture(max(n, 1), k)
                defs = {"NPTS": k, "BLEND_TILE": bt, "PPT": self.ppt, "STEP": bt // self.ppt}
                cs = compute_shader(ctx, "cvx_blend.comp", defs)
                bins.hist.bind_to_storage_buffer(0)
                counters.bind_to_storage_buffer(1)
                pair_ids.use(location=0)
                rec.use(location=1)
                out_rgba.bind_to_image(0, read=False, write=True)
                out_depth.bind_to_image(1, read=False, write=True)
                rng = (0.0, 1.0)
                if settings.mode == "depth":
                    rng = settings.depth_range or colormap.auto_depth_range(sb.bounds, camera.T_camera_world,
                                                                           camera.near)
                set_uniforms(cs, pair_ids=0, rec=1, image_size=(W, H), tiles_x=tiles_x,
                             num_chunks=bins.chunks,
                             background=tuple(float(c) for c in settings.background),
                             mode=MODES[settings.mode], depth_range=tuple(float(r) for r in rng))
                cs.run(tiles_x, tiles_y)
                ctx.memory_barrier()
            checkpoint("blend")

            arrays = None
            if readback:
                stage = "readback"
                with timer.stage("readback"):
                    rgba = np.frombuffer(out_rgba.read(), dtype=np.float32).reshape(H, W, 4)
                    depth = np.frombuffer(out_depth.read(), dtype=np.float32).reshape(H, W, 1)
                    arrays = (rgba, depth)
                checkpoint("readback")
            counters_np = np.frombuffer(counters.read(8), dtype=np.uint32)
        except Exception:
            check_error(ctx, stage)  # name the stage in any GL error raised alongside a failure
            raise
        check_error(ctx, f"frame (last stage: {stage})")
        self._last = {"bins": bins, "n": n, "keys": keys if n > 0 else None, "vals": vals if n > 0 else None}
        stats = FrameStats(stages_ms=timer.results(), backend="gl", counters={
            "visible": n_visible, "tile_pairs": bins.n_pairs, "blended_samples": int(counters_np[1]),
            "tile_px": bt})
        if upload_ms > 1.0:
            stats.stages_ms["upload"] = upload_ms
        return out_rgba, out_depth, stats, arrays

    def debug_state(self) -> dict:
        """The last frame's sort and bins read back (binning.TileBinning.debug_state)."""
        last = self._last
        return self.binning.debug_state(last["keys"], last["vals"], last["n"], last["bins"])

    def render(self, scene, camera: Camera, settings: RenderSettings) -> Frame:
        _, _, stats, (rgba, depth) = self.draw(scene, camera, settings, readback=True)
        rgba_t = torch.from_numpy(rgba.copy())
        return Frame(rgb=rgba_t[..., :3].contiguous(), alpha=rgba_t[..., 3:].contiguous(),
                     depth=torch.from_numpy(depth.copy()), stats=stats)


__all__ = ["ConvexPipeline", "record_texels"]
