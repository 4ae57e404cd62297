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

import numpy as np
import torch

from scenes.convex import MAX_POINTS

from ..profiling import release_query_pool
from ..types import Camera, Frame, RenderSettings
from .binning import PAIR_TEX_W, TileBinning
from .context import is_software
from .pipeline import (
    FrameRun,
    GeomShBuffers,
    PixelBuffers,
    Textures,
    bind_inputs,
    blend_cut_limit,
    camera_uniforms,
    capped_degree,
    check_blend_cut,
    depth_range,
    held,
    is_current,
    read_images,
    run_tiles,
    scene_key,
    tile_defines,
    to_frame,
)
from .shaders import compute_shader
from .sort import Scratch, groups, set_uniforms, subgroup_size

TILE = 16  # the twin's tile (getRect)
MODES = {"rgb": 0, "depth": 1, "alpha": 2}


def record_texels(k: int) -> int:
    """Texels of one convex's record for k points (cvx_common.glsl CVX_REC)."""
    return 2 + (3 * k + 3) // 4


def _scene_key(scene) -> tuple:
    return scene_key(scene, [scene.points, scene.deltas, scene.sigmas, scene.opacities, scene.sh])


class _ConvexBuffers(GeomShBuffers):
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
        self.store(ctx, scene, geom, sh, _scene_key(scene))


class ConvexPipeline:
    """Renders ConvexScenes on one moderngl context; holds scene buffers and scratch space.

    sort: "auto", "gpu" or "cpu" (binning.TileBinning). timing: a StageTimer mode. blend_tile: 16
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
        self.binning = TileBinning(ctx, self.scratch, sort)
        self.textures = Textures(ctx)
        self.queries: dict = {}
        self._last: dict = {}
        # Pixels into storage buffers on CPU rasterizers (pipeline.PixelBuffers), as GaussianPipeline.
        self.out_buffers = is_software(ctx)
        # ... and reads its pair ids and records through image loads (cvx_blend.comp IMAGE_INPUTS),
        # and takes its tiles from a counter (group_tile.glsl DYNAMIC_TILES, pipeline.run_tiles).
        self.image_inputs = is_software(ctx)
        self.dynamic_tiles = is_software(ctx)
        # A work group of one subgroup runs in lockstep on llvmpipe: no barrier for the tile it takes.
        self.lockstep = ("llvmpipe" in str(ctx.info.get("GL_RENDERER", "")).lower()
                         and blend_tile * (blend_tile // pixels_per_thread) <= subgroup_size(ctx))

    # ---- resources -------------------------------------------------------------------------
    def _scene_buffers(self, scene) -> _ConvexBuffers:
        if not is_current(self.scene, scene, _scene_key):
            self.release_scene()
            self.scene = _ConvexBuffers(self.ctx, scene)
        return self.scene

    def _record_texture(self, n: int, k: int):
        """One RGBA32F texture holding record_texels(k) texels per convex."""
        rows = max(1, (n * record_texels(k) + PAIR_TEX_W - 1) // PAIR_TEX_W, self.textures.height("rec"))
        return self.textures.get("rec", (PAIR_TEX_W, rows), 4)

    def release_scene(self) -> None:
        """Free the current scene's buffers and the scratch space sized by it."""
        if self.scene is not None:
            self.scene.release()
            self.scene = None
        self.scratch.release()
        self.binning.release()
        self.textures.drop("rec")

    def resource_stats(self) -> dict:
        """What this pipeline holds on the GPU: {'objects': count, 'bytes': total}."""
        return held(self.scratch, self.textures, self.binning, self.scene, queries=self.queries)

    def release(self) -> None:
        self.release_scene()
        self.textures.release()
        release_query_pool(self.queries)

    # ---- the frame -------------------------------------------------------------------------
    def draw(self, scene, camera: Camera, settings: RenderSettings, readback: bool = False,
             display: bool = False):
        """Run every stage; returns (rgba texture, depth texture, FrameStats, readback arrays|None).

        display=True (no read-back): the colour may come as a display-ready RGBA8 texture instead,
        and no depth (as GaussianPipeline.draw).
        """
        if settings.mode not in MODES:
            raise ValueError(f"mode {settings.mode!r} is not supported by the GL convex pipeline "
                             f"(use one of {', '.join(MODES)})")
        ctx = self.ctx
        run = FrameRun(ctx, self.timing, self.queries)
        W, H = int(camera.width), int(camera.height)
        bt = self.blend_tile
        tiles_x, tiles_y = (W + bt - 1) // bt, (H + bt - 1) // bt
        num_tiles = tiles_x * tiles_y
        out_rgba = self.textures.get("out_rgba", (W, H), 4)
        out_depth = self.textures.get("out_depth", (W, H), 1)
        with run.upload():
            sb = self._scene_buffers(scene)
        n, k = sb.n, sb.k
        rects, keys, vals, counters = self.binning.projection_buffers(n)
        n_keyed = n_visible = 0
        bins = None
        with run:
            if n > 0:
                with run.stage("project"):
                    rec = self._record_texture(n, k)
                    rec.bind_to_image(0, read=False, write=True)
                    defs = {"NPTS": k, "BLEND_TILE": bt, "SH_K": sb.sh_k}
                    cs = compute_shader(ctx, "cvx_project.comp", defs)
                    for i, b in ((0, sb.geom), (1, sb.sh), (3, rects), (4, keys), (5, vals), (6, counters)):
                        b.bind_to_storage_buffer(i)
                    degree = capped_degree(sb.degree, settings.sh_degree)
                    set_uniforms(
                        cs, n=n, **camera_uniforms(camera),
                        tiles=((W + TILE - 1) // TILE, (H + TILE - 1) // TILE),
                        sh_degree=degree, sh_quirk=int(sb.quirk))
                    cs.run(groups(n, 64))
                    ctx.memory_barrier()
                    cnt = np.frombuffer(self.scratch.read(counters, 16), dtype=np.uint32)
                    n_keyed, expect_pairs, n_visible = int(cnt[0]), int(cnt[2]), int(cnt[3])

                with run.stage("sort"):
                    if n_keyed > 0:
                        keys, vals = self.binning.sort(keys, vals, n)

                with run.stage("bin"):
                    bins = self.binning.bin(keys, vals, rects, n_keyed, expect_pairs, num_tiles, tiles_x)

            with run.stage("blend"):
                if bins is None or bins.n_pairs == 0:
                    bins = self.binning.empty(num_tiles)  # nothing on screen: every tile's range is empty
                pair_ids = self.binning.pair_texture(max(bins.n_pairs, 1))
                rec = self._record_texture(max(n, 1), k)
                out_bufs = PixelBuffers.for_blend(self.scratch, self.textures, W, H, self.binning.max_words,
                                                  display and not readback) if self.out_buffers else None
                defs = {"NPTS": k, "BLEND_TILE": bt, "PPT": self.ppt, "STEP": bt // self.ppt,
                        **(out_bufs.defines if out_bufs is not None else {}),
                        **({"IMAGE_INPUTS": 1} if self.image_inputs else {}),
                        **tile_defines(self.dynamic_tiles, self.lockstep)}
                cs = compute_shader(ctx, "cvx_blend.comp", defs)
                bins.hist.bind_to_storage_buffer(0)
                counters.bind_to_storage_buffer(1)
                # Inputs: texture units 0-1 for texelFetch, or image units 2-3 (IMAGE_INPUTS); the
                # uniforms name the unit either way.
                unit = bind_inputs((pair_ids, rec), self.image_inputs)
                out_rgba.bind_to_image(0, read=False, write=True)
                out_depth.bind_to_image(1, read=False, write=True)
                rng = depth_range(settings, camera, sb.bounds)
                set_uniforms(cs, pair_ids=unit, rec=unit + 1, image_size=(W, H), tiles_x=tiles_x,
                             range_base=bins.range_base,
                             background=tuple(float(c) for c in settings.background),
                             mode=MODES[settings.mode], depth_range=tuple(float(r) for r in rng))
                # (iterations: a tile's pairs, at least one, and the tile loop's own)
                run_tiles(cs, self.dynamic_tiles, tiles_x, tiles_y, bins.n_pairs + 2 * num_tiles)
                ctx.memory_barrier()

            arrays = None
            if out_bufs is not None:  # the software blend wrote buffers: read back or copy over
                with run.stage("readback" if readback else "blend"):
                    arrays = out_bufs.finish(out_rgba, out_depth, readback)
            elif readback:
                with run.stage("readback"):
                    arrays = read_images(out_rgba, out_depth, self.scratch)
            counters_np = np.frombuffer(self.scratch.read(counters, 32), dtype=np.uint32)
        self._last = {"bins": bins, "n": n, "keys": keys if n > 0 else None, "vals": vals if n > 0 else None}
        self.binning.check(bins, counters_np)
        # (cvx_blend.comp: one iteration per pair)
        check_blend_cut(int(counters_np[6]), blend_cut_limit(1, self.dynamic_tiles))
        stats = run.stats({
            "visible": n_visible, "tile_pairs": bins.n_pairs, "blended_samples": int(counters_np[1]),
            "tile_px": bt})
        shown = out_bufs.shown if out_bufs is not None else None  # display-ready RGBA8, if written
        return (out_rgba if shown is None else shown), out_depth, stats, arrays

    def debug_state(self) -> dict:
        """The last frame's sort and bins read back (binning.TileBinning.debug_state)."""
        last = self._last
        return self.binning.debug_state(last["keys"], last["vals"], last["n"], last["bins"])

    def render(self, scene, camera: Camera, settings: RenderSettings) -> Frame:
        _, _, stats, (rgba, depth) = self.draw(scene, camera, settings, readback=True)
        return to_frame(rgba, depth, stats)


__all__ = ["ConvexPipeline", "record_texels"]
