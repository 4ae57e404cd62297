"""The 3DGS compute pipeline: project + SH colour, depth sort, tile binning, per-tile blend.

Stages (shaders/ in brackets):
    project  [gs_project.comp]  one invocation per Gaussian: EWA projection, culling, radius, tile
                                rectangle, SH colour, sort key (view z bits; culled -> 0xFFFFFFFF)
    sort     [radix.comp, scan.comp]  stable radix sort of (key, index), or numpy on the CPU
    bin      [host_bin.py on CPU rasterizers (bin.comp without numba), bin_par.comp on GPUs;
              scan.comp]        depth-sorted Gaussians bucketed stably into tiles (binning.py);
                                each pair's Gaussian id goes into an R32UI texture (records:
                                RGBA32F textures)
    blend    [gs_blend.comp on CPU rasterizers: batches of 8 pairs, every SIMD lane loading each
              pair's record, 16 rows a lane; gs_blend_hw.comp on GPUs: a pixel per invocation,
              shared-memory batches]
                                one work group per tile, front to back, into an RGBA32F image
    readback                    (render only) the image and depth to torch tensors

Same forward model as renderer/torch_backend (project.py, tiles.py, rasterize.py, gaussians.py).
Scene buffers are uploaded once per scene (keyed by identity, length and the tensors' in-place
version counters); changing the camera only changes uniforms.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from ..profiling import release_query_pool
from ..types import Camera, Frame, RenderSettings
from .binning import PAIR_TEX_W, WALK_ITERATIONS, TileBinning, nearest_texture  # noqa: F401 - re-exported names
from .context import is_software
from .locality import SpatialOrder
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
from .sort import GROUP, Scratch, groups, set_uniforms, subgroup_size

TILE = 16
MODES = {"rgb": 0, "depth": 1, "alpha": 2}
# Blend (and bin) tile shapes, (width, height) in px: 8 x 16 only for the software blend.
TILE_SHAPES = ((8, 8), (16, 16), (8, 16))
# CPU rasterizers: 8 x 16 px tiles, each SIMD lane shading 16 rows of one column (gs_blend.comp PPT
# 16): a pair's loads, the costly part of its fixed cost on llvmpipe, serve 16 rows. The
# tiles have 0.63x the pairs of 8 px tiles (bench scene), so the binning has less to do, for more
# pixel tests in the blend. Bench scene at 800x800, one process, alternating frames, the same
# image bit for bit: the stages took 0.92x to 0.94x the time of 8 px tiles at 100k Gaussians
# (bin 0.67x, blend 1.02x) and 0.83x at 300k (bin 0.60x, blend 0.95x). 16 px tiles with 16 rows a
# lane bin cheaper still but blend 1.27x (100k): more pixels tested per pair. Measured again after
# the blend's loads changed (each lane loading every pair's record rather than staging it through
# shared memory): 8 px tiles took 1.12x the frame time at 100k and 1.08x at 300k, 16 px tiles with
# 16 rows a lane 1.31x and 1.14x.
SOFTWARE_TILE = (8, 16)


def _scene_key(scene) -> tuple:
    tensors = [scene.means, scene.quats, scene.scales, scene.opacities, scene.sh]
    if scene.covars is not None:
        tensors.append(scene.covars)
    return scene_key(scene, tensors)


def _lazy_buffer(slot: str, texture: int) -> property:
    """A _SceneBuffers storage buffer kept in `slot`, made from textures[texture] on first use."""

    def get(self):
        if getattr(self, slot) is None:
            setattr(self, slot, self._buffer(texture))
        return getattr(self, slot)

    def put(self, buf) -> None:
        setattr(self, slot, buf)

    return property(get, put)


class _SceneBuffers(GeomShBuffers):
    """A scene's per-Gaussian data on the GPU: geom (3 vec4 per Gaussian) and SH coefficients, and
    with textures=True also as RGBA32F textures (`textures`: geom, sh; None where the SH are not
    whole texels or the textures would be too tall), which gs_project.comp reads with imageLoad
    (IMAGE_INPUTS): on llvmpipe a storage-buffer read is a loop over the SIMD lanes, an image load
    plain per-lane reads (a random vec4 read took 0.35x the time; the projection 0.755x at 100k
    Gaussians, 0.765x at 300k, bench scene). With textures the storage buffers are made from them
    on first use only (the marker pipeline reads buffers), so the scene is held once.
    slots=True: the rows in the order of the scene's locality.SpatialOrder (`slots`, else None),
    or in that of the SpatialOrder given (the same scene changed in place: any order is correct)."""

    def __init__(self, ctx, scene, textures: bool = False, slots: bool | SpatialOrder = False):
        n = len(scene)
        self.n = n
        self.k = int(scene.sh.shape[1])
        self.degree = scene.sh_degree
        self.has_covars = scene.covars is not None
        geom = np.zeros((n, 3, 4), dtype=np.float32)
        with torch.no_grad():
            geom[:, 0, :3] = scene.means.detach().float().cpu().numpy()
            geom[:, 0, 3] = scene.opacities.detach().float().cpu().numpy()
            if self.has_covars:
                c = scene.covars.detach().float().cpu().numpy().reshape(n, 9)
                geom[:, 1] = c[:, [0, 1, 2, 4]]
                geom[:, 2, :2] = c[:, [5, 8]]
            else:
                geom[:, 1] = scene.quats.detach().float().cpu().numpy()
                geom[:, 2, :3] = scene.scales.detach().float().cpu().numpy()
            sh = np.ascontiguousarray(scene.sh.detach().float().cpu().numpy())
        # Non-finite rows would poison the sort; move them behind any camera (NaN fails z >= near).
        bad = ~np.isfinite(geom.reshape(n, 12)).all(axis=1)
        bad |= ~np.isfinite(sh.reshape(n, self.k * 3)).all(axis=1)
        if bad.any():
            geom[bad] = 0.0
            geom[bad, 0, :3] = np.nan
            sh[bad] = 0.0
        self.ctx = ctx
        self.textures = None
        self._geom = self._sh = None
        self.slots = None
        if isinstance(slots, SpatialOrder):
            if len(slots.order) == n:
                self.slots = slots
            else:  # (the count changed: a new order)
                slots.release()
        if slots and self.slots is None and n > 0:
            self.slots = SpatialOrder(ctx, geom[:, 0, :3])
        if self.slots is not None:
            geom, sh = geom[self.slots.order], sh[self.slots.order]
        texels = 3 * self.k * n // 4  # SH texels
        max_rows = int(ctx.info.get("GL_MAX_TEXTURE_SIZE", 16384))
        if textures and n > 0 and (3 * self.k) % 4 == 0 and -(-texels // PAIR_TEX_W) <= max_rows:
            self.textures = [_texels(ctx, geom.reshape(-1, 4)), _texels(ctx, sh.reshape(-1, 4))]
            self.bounds = scene.bounds()
            self.key = _scene_key(scene)
            self.ref = weakref.ref(scene)
        else:
            self.store(ctx, scene, geom, sh, _scene_key(scene), empty_geom=48)

    def _buffer(self, i: int):
        """Texture i's texels as a storage buffer (in texel order: the buffers' layout, padded)."""
        tex = self.textures[i]
        buf = self.ctx.buffer(reserve=16 * tex.width * tex.height)
        tex.read_into(buf)
        return buf

    geom = _lazy_buffer("_geom", 0)
    sh = _lazy_buffer("_sh", 1)

    def _held(self) -> list:
        slots = self.slots.buffers if self.slots is not None else ()
        return [o for o in (self._geom, self._sh, *slots, *(self.textures or ())) if o is not None]

    @property
    def count(self) -> int:
        return len(self._held())

    @property
    def nbytes(self) -> int:
        buffers = sum(b.size for b in (self._geom, self._sh) if b is not None)
        slots = sum(b.size for b in self.slots.buffers) if self.slots is not None else 0
        return buffers + slots + sum(16 * t.width * t.height for t in self.textures or ())

    def release(self) -> None:
        for o in self._held():
            o.release()
        self._geom = self._sh = None
        self.slots = None
        self.textures = None


def _texels(ctx, rows: np.ndarray):
    """An RGBA32F texture PAIR_TEX_W wide holding rows [m, 4] float32 in order (texel i at
    (i % PAIR_TEX_W, i // PAIR_TEX_W)), zero-padded."""
    h = -(-len(rows) // PAIR_TEX_W)
    data = np.zeros((h * PAIR_TEX_W, 4), np.float32)
    data[: len(rows)] = rows
    tex = nearest_texture(ctx, (PAIR_TEX_W, h), 4)
    tex.write(data.tobytes())
    return tex


class GaussianPipeline:
    """Renders GaussianScenes on one moderngl context; holds scene buffers and scratch space.

    sort: "gpu" (radix sort in compute), "cpu" (numpy sorts the read-back keys) or "auto" (cpu on
    CPU rasterizers, gpu elsewhere: binning.TileBinning). timing: a StageTimer mode.
    blend_tile: 16 or 8 px square tiles, or (8, 16) (8 px wide, 16 tall: the software blend only);
    None picks per platform (SOFTWARE_TILE on CPU rasterizers, 16 on GPUs). A Gaussian is binned
    into the tiles of the twin's 16 px rectangle that its alpha >= 1/255 ellipse reaches (the same
    image as binning it into the whole rectangle, with fewer pairs: 8.5 instead of 13.4 a Gaussian
    in the bench's 1M scene at 1920x1080; tile_pairs counts these).
    exact_tiles (16 px only): the twin's whole rectangles, its pairs exactly (tests).
    pixels_per_thread: pixels one software-blend invocation shades, one column (None: 16 for 8 x 16
    tiles, else 8). bin_method: "auto" | "chunks"
    | "parallel" (binning.TileBinning). blend: "auto" | "software" (gs_blend.comp) | "hardware"
    (gs_blend_hw.comp, square tiles); auto picks by is_software(ctx) and the tile shape. Every
    choice gives the same image, but for the software blend's exp2 (a cubic: alpha within 1e-4
    relative).
    count_blends: count the pixel blends into FrameStats.counters["blended_samples"] (the software
    blend spends ~8% of its time on it and leaves the counter out without; the hardware blend
    always counts). An attribute: it may change between frames.
    """

    def __init__(self, ctx, sort: str = "auto", timing: str = "auto",
                 blend_tile: int | tuple[int, int] | None = 8, pixels_per_thread: int | None = None,
                 bin_method: str = "auto", blend: str = "auto", exact_tiles: bool = False,
                 count_blends: bool = True):
        if sort not in ("auto", "gpu", "cpu"):
            raise ValueError(f"sort must be 'auto', 'gpu' or 'cpu', got {sort!r}")
        if blend not in ("auto", "software", "hardware"):
            raise ValueError(f"blend must be 'auto', 'software' or 'hardware', got {blend!r}")
        self.ctx = ctx
        self.timing = timing
        if blend_tile is None:
            # Measured on an H200 (1M Gaussians, 1920x1080): a frame took 5.5 ms on 16 px tiles and
            # 6.4 ms on 8 px ones (twice the pairs to bin). llvmpipe: see SOFTWARE_TILE.
            blend_tile = SOFTWARE_TILE if is_software(ctx) else 16
        tw, th = (blend_tile, blend_tile) if isinstance(blend_tile, int) else tuple(blend_tile)
        if (tw, th) not in TILE_SHAPES:
            raise ValueError(f"blend_tile must be 8, 16 or (8, 16) (width, height in px), got {blend_tile!r}")
        if pixels_per_thread is None:
            pixels_per_thread = 16 if th == 16 and tw == 8 else 8
        if th % pixels_per_thread or pixels_per_thread not in (4, 8, 16):
            raise ValueError("pixels_per_thread must be 4, 8 or 16 and divide the tile height")
        self.tile_w, self.tile_h = tw, th
        self.blend_tile = tw if tw == th else (tw, th)
        self.exact_tiles = exact_tiles and (tw, th) == (16, 16)
        self.ppt = pixels_per_thread
        self.count_blends = count_blends
        self.software = is_software(ctx)
        # Per platform (measured, see renderer/bench.py notes): CPU rasterizers blend with
        # gs_blend.comp (8-wide SIMD lanes, batches of pairs, PPT pixels per invocation) and bin
        # on the host (host_bin.py); GPUs blend with gs_blend_hw.comp (a pixel per invocation, shared-
        # memory batches) and bin in parallel (bin_par.comp). gs_blend_hw.comp takes square tiles only,
        # so auto gives a GPU asked for 8 x 16 px tiles the software blend.
        self.blend = blend
        if blend == "auto":
            self.blend = "software" if self.software or tw != th else "hardware"
        if self.blend == "hardware" and tw != th:
            raise ValueError("the hardware blend (gs_blend_hw.comp) takes square tiles only")
        # Software blend: pairs per batch (gs_blend.comp BATCH, unrolled; the subgroup size, whose
        # vote ends the batch loop); 1 = unbatched. On llvmpipe 8 (AVX2): batches of 4 took 1.17x
        # the blend time, of 16 1.17x and 1.22x (100k, 300k Gaussians).
        self.batch = subgroup_size(ctx) if subgroup_size(ctx) in (4, 8, 16) else 1
        # llvmpipe runs a subgroup as one SIMD vector: dynamic tiles need no barrier there
        # (group_tile.glsl LOCKSTEP).
        self.lockstep = "llvmpipe" in str(ctx.info.get("GL_RENDERER", "")).lower()
        # The software blend writes storage buffers rather than images on CPU rasterizers (cheaper
        # stores there; gs_blend.comp OUT_BUFFERS); draw() then copies them into its textures.
        self.out_buffers = self.software
        # ... and reads its pair ids and records through image loads (gs_blend.comp IMAGE_INPUTS).
        self.image_inputs = self.software
        # ... and takes its tiles from a counter (group_tile.glsl DYNAMIC_TILES, pipeline.run_tiles).
        self.dynamic_tiles = self.software
        # Likewise the projection's records (gs_project.comp REC_BUFFERS), copied into the record
        # textures after the pass.
        self.rec_buffers = self.software
        # ... and leave the visible count, pair count and key range to the host (gs_project.comp
        # HOST_COUNTS): llvmpipe's atomics took 20% of the projection at 300k Gaussians.
        self.host_counts = self.software
        # Where the depth sort runs on the host: the scene is uploaded in the Morton order of its
        # means (locality.py: the records of a tile near each other; frame 0.93x to 0.95x at 100k
        # Gaussians, 0.93x at 300k, bench scene), the host sort keeping the scene's tie order.
        # An attribute: the scene is uploaded again when it changes.
        self.spatial_order = True
        group = tw * (th // pixels_per_thread)  # invocations per work group
        if not self.lockstep and self.batch > 1 and group > self.batch:
            self.batch = 1  # several subgroups a work group (GPUs): the unbatched loop their tests ran
        self.scene: _SceneBuffers | None = None
        self.scratch = Scratch(ctx)
        # Depth sort, tile binning and the pair-id texture, shared with the convex pipeline.
        self.binning = TileBinning(ctx, self.scratch, sort, bin_method)
        self.textures = Textures(ctx)
        self.queries: dict = {}

    # ---- resources -------------------------------------------------------------------------
    def _scene_buffers(self, scene) -> _SceneBuffers:
        if getattr(scene, "on_gpu", False):
            # Per-Gaussian inputs already on the GPU in _SceneBuffers' layout (slice4d.GPUGaussians:
            # a 4D scene sliced by a compute pass, a flipbook frame); their owner keeps them.
            return scene
        slots = self.spatial_order and self.binning.sort_mode == "cpu"
        old = self.scene
        if not is_current(old, scene, _scene_key) or (old.slots is not None) != slots:
            if slots and old is not None and old.slots is not None and old.ref() is scene:
                # The same scene changed in place (training): keep its order (morton_order took
                # ~0.12 s per million Gaussians here).
                slots, old.slots = old.slots, None
            self.release_scene()
            self.scene = _SceneBuffers(self.ctx, scene, textures=self.image_inputs, slots=slots)
        return self.scene

    def release_scene(self) -> None:
        """Free the current scene's buffers and the scratch space sized by it."""
        if self.scene is not None:
            self.scene.release()
            self.scene = None
        self.scratch.release()
        self.binning.release()
        self.textures.drop("pair", "rec")

    def _pair_texture(self, n_pairs: int):
        """R32UI texture of >= n_pairs texels (grown by 1.5x): the Gaussian id of each pair."""
        return self.binning.pair_texture(n_pairs)

    def _record_textures(self, n: int) -> list:
        """The projected record of each of n Gaussians: RGBA32F rec0 and RGBA32UI rec1 textures."""
        # Never shrink (release_scene drops them): a 4D slice's n changes per frame.
        rows = max(1, (n + PAIR_TEX_W - 1) // PAIR_TEX_W, self.textures.height("rec0"))
        return [self.textures.get("rec0", (PAIR_TEX_W, rows), 4),
                self.textures.get("rec1", (PAIR_TEX_W, rows), 4, "u4")]

    def resource_stats(self) -> dict:
        """What this pipeline holds on the GPU: {'objects': count, 'bytes': total}."""
        return held(self.scratch, self.textures, self.binning, self.scene, queries=self.queries)

    def release(self) -> None:
        self.release_scene()
        self.textures.release()
        release_query_pool(self.queries)

    # ---- the frame -------------------------------------------------------------------------
    def draw(self, scene, camera: Camera, settings: RenderSettings, readback: bool = False,
             depth: bool = True, display: bool = False):
        """Run every stage; returns (rgba texture, depth texture, FrameStats, readback arrays|None).

        depth=False (the viewer, which shows colour only): the software blend neither accumulates
        nor stores depth unless the mode shows it, and the depth texture is left as it was.
        display=True (with depth=False, no read-back): the colour comes as an RGBA8 texture with the
        bottom row first (GL's order, alpha 1), for a viewer to copy into its framebuffer as it is
        (pipeline.PixelBuffers.bind_display), unless its words would not fit a storage buffer
        binding; the rgba texture is then left as it was. The returned texture's dtype tells
        which: "f1" display-ready, "f4" the usual RGBA32F, top row first.
        """
        if settings.mode not in MODES:
            raise ValueError(f"mode {settings.mode!r} is not supported by the GL Gaussian pipeline "
                             f"(use one of {', '.join(MODES)})")
        if settings.antialias not in ("classic", "mip"):
            raise ValueError(f"antialias must be 'classic' or 'mip', got {settings.antialias!r}")
        ctx = self.ctx
        run = FrameRun(ctx, self.timing, self.queries)
        W, H = int(camera.width), int(camera.height)
        tw, th = self.tile_w, self.tile_h
        tiles_x, tiles_y = (W + tw - 1) // tw, (H + th - 1) // th  # blend (and bin) grid
        num_tiles = tiles_x * tiles_y
        out_rgba = self.textures.get("out_rgba", (W, H), 4)
        out_depth = self.textures.get("out_depth", (W, H), 1)
        with run.upload():
            sb = self._scene_buffers(scene)
        n = sb.n
        rects, keys, vals, counters = self.binning.projection_buffers(n)
        n_vis = 0
        bins = None
        out_bufs = None
        with run:
            if n > 0:
                with run.stage("project"):
                    recs = self._record_textures(n)
                    # Buffers only where one fits a storage buffer binding (bigger ones are undefined).
                    rec_words = 4 * recs[0].width * recs[0].height
                    use_rec_buffers = self.rec_buffers and rec_words <= self.binning.max_words
                    if use_rec_buffers:
                        rec_bufs = [self.scratch.get(f"rec{i}", 16 * t.width * t.height)
                                    for i, t in enumerate(recs)]
                        for i, b in enumerate(rec_bufs):
                            b.bind_to_storage_buffer(7 + i)
                    else:
                        for i, t in enumerate(recs):
                            t.bind_to_image(i, read=False, write=True)
                    defs = {"BLEND_TILE": tw, "BLEND_TILE_H": th, "SH_K": sb.k,
                            **({"HAS_COVARS": 1} if sb.has_covars else {}),
                            **({} if self.exact_tiles else {"CULL_TILES": 1}),
                            **({} if self.software else {"GROUP_ATOMICS": 1}),
                            **({"REC_BUFFERS": 1} if use_rec_buffers else {}),
                            **({"HOST_COUNTS": 1} if self.host_counts else {})}
                    slots = getattr(sb, "slots", None)  # (a 4D slice has none)
                    scene_tex = getattr(sb, "textures", None)  # (None: the storage buffers)
                    if scene_tex is not None:
                        defs["IMAGE_INPUTS"] = 1
                        for i, t in enumerate(scene_tex):
                            t.bind_to_image(2 + i, read=True, write=False)
                    cs = compute_shader(ctx, "gs_project.comp", defs)
                    inputs = () if scene_tex is not None else ((0, sb.geom), (1, sb.sh))
                    for i, b in (*inputs, (3, rects), (4, keys), (6, counters)):
                        b.bind_to_storage_buffer(i)
                    npairs = self.scratch.get("npairs", 4 * n) if self.host_counts else None
                    if npairs is not None:
                        npairs.bind_to_storage_buffer(11)
                    degree = capped_degree(sb.degree, settings.sh_degree)
                    set_uniforms(
                        cs, n=n, **camera_uniforms(camera),
                        tiles=((W + TILE - 1) // TILE, (H + TILE - 1) // TILE),
                        near_far=(camera.near, min(camera.far, 3e38)),
                        splat_scale=float(settings.splat_scale), mip=int(settings.antialias == "mip"),
                        sh_degree=degree)
                    cs.run(groups(n, 128))
                    ctx.memory_barrier()
                    if use_rec_buffers:
                        for t, b in zip(recs, rec_bufs, strict=True):
                            t.write(b)  # buffer to texture on the GL side: the blend reads textures
                    if npairs is not None:
                        n_vis, expect_pairs, key_range, host_keys = self.binning.host_counts(keys, npairs, n)
                    else:
                        cnt = np.frombuffer(self.scratch.read(counters, 24), dtype=np.uint32)
                        n_vis, expect_pairs = int(cnt[0]), int(cnt[2])
                        key_range = (int(cnt[4]), int(cnt[5]))
                        host_keys = None  # (the keys stay on the GL side)

                with run.stage("sort"):
                    if n_vis > 0:
                        keys, vals = self.binning.sort(keys, vals, n, key_range, iota=True, slots=slots,
                                                       host_keys=host_keys)

                with run.stage("bin"):
                    bins = self.binning.bin(keys, vals, rects, n_vis, expect_pairs, num_tiles, tiles_x)

            with run.stage("blend"):
                if bins is None or bins.n_pairs == 0:
                    bins = self.binning.empty(num_tiles)  # nothing on screen: every tile's range is empty
                n_pairs, hist = bins.n_pairs, bins.hist
                pair_ids = self._pair_texture(max(n_pairs, 1))
                recs = self._record_textures(max(n, 1))
                no_depth = False
                # (with LOCKSTEP, work groups of one subgroup only: gs_blend.comp DYNAMIC_TILES)
                dynamic = (self.blend == "software" and self.dynamic_tiles
                           and not (self.lockstep and tw * (th // self.ppt) > self.batch))
                if self.blend == "hardware":
                    if display and not (depth or readback):  # display-ready RGBA8 where asked
                        out_bufs = PixelBuffers.bind_display(self.scratch, self.textures, W, H,
                                                             self.binning.max_words)
                    defs = {"BLEND_TILE": tw, "MODE": MODES[settings.mode],
                            **(out_bufs.defines if out_bufs is not None else {})}
                    cs = compute_shader(ctx, "gs_blend_hw.comp", defs)
                else:
                    no_depth = not (depth or readback) and settings.mode != "depth"
                    if self.out_buffers:
                        ready = display and not (depth or readback)  # display-ready RGBA8 where asked
                        out_bufs = PixelBuffers.for_blend(self.scratch, self.textures, W, H,
                                                          self.binning.max_words, ready)
                    defs = {"BLEND_TILE": tw, "BLEND_TILE_H": th, "PPT": self.ppt, "STEP": th // self.ppt,
                            "BATCH": self.batch,
                            "MODE": MODES[settings.mode], **tile_defines(dynamic, self.lockstep),
                            **(out_bufs.defines if out_bufs is not None else {}),
                            **({"NO_DEPTH": 1} if no_depth else {}),
                            **({"COUNT_BLENDS": 1} if self.count_blends else {}),
                            **({"IMAGE_INPUTS": 1} if self.image_inputs else {})}
                    cs = compute_shader(ctx, "gs_blend.comp", defs)
                hist.bind_to_storage_buffer(0)
                counters.bind_to_storage_buffer(1)
                # Inputs: texture units 0-2 for texelFetch, or image units 2-4 (IMAGE_INPUTS); the
                # uniforms name the unit either way.
                unit = bind_inputs([pair_ids, *recs], self.blend == "software" and self.image_inputs)
                out_rgba.bind_to_image(0, read=False, write=True)
                out_depth.bind_to_image(1, read=False, write=True)
                rng = depth_range(settings, camera, sb.bounds)
                set_uniforms(cs, pair_ids=unit, rec0=unit + 1, rec1=unit + 2, image_size=(W, H),
                             tiles_x=tiles_x, range_base=bins.range_base,
                             background=tuple(float(c) for c in settings.background),
                             depth_range=tuple(float(r) for r in rng))
                if self.blend == "hardware":
                    cs.run(tiles_x, tiles_y)
                else:  # (iterations: batches of every tile, plus the do-while's and the tile loop's own)
                    run_tiles(cs, dynamic, tiles_x, tiles_y, n_pairs // self.batch + 3 * num_tiles)
                ctx.memory_barrier()

            arrays = None
            if out_bufs is not None:  # the software blend wrote buffers: read back or copy over
                with run.stage("readback" if readback else "blend"):
                    arrays = out_bufs.finish(out_rgba, None if no_depth else out_depth, readback)
            elif readback:
                with run.stage("readback"):
                    arrays = read_images(out_rgba, out_depth, self.scratch)
            counters_np = np.frombuffer(self.scratch.read(counters, 32), dtype=np.uint32)
        self._last = {"bins": bins, "n": n, "n_vis": n_vis, "slots": getattr(sb, "slots", None),
                      "keys": keys if n > 0 else None, "vals": vals if n > 0 else None}
        self.binning.check(bins, counters_np)
        check_blend_cut(int(counters_np[6]), blend_cut_limit(self.batch, dynamic))
        counts = {"visible": n_vis, "tile_pairs": n_pairs, "blended_samples": int(counters_np[1]),
                  "tile_px": tw, "tile_px_h": th}
        if self.blend == "software" and not self.count_blends:
            del counts["blended_samples"]  # not counted (a 0 would read as a measurement)
        stats = run.stats(counts)
        shown = out_bufs.shown if out_bufs is not None else None  # display-ready RGBA8, if written
        return (out_rgba if shown is None else shown), out_depth, stats, arrays

    def debug_state(self) -> dict:
        """Read back the last frame's sort and bins (for tests): numpy arrays

        sorted_keys [n], sorted_vals [n], rects [n, 4] (x0, y0, x1, y1; max exclusive),
        tile_start [T+1] and ids [P] (Gaussian index per pair, tile-major, front to back), and
        order [n]: the scene's index of each index in the others (slots: see locality.py).
        """
        last = self._last
        out = self.binning.debug_state(last["keys"], last["vals"], last["n"], last["bins"])
        slots = last["slots"]
        out["order"] = np.arange(last["n"]) if slots is None else slots.order.astype(np.int64)
        return out

    def render(self, scene, camera: Camera, settings: RenderSettings) -> Frame:
        _, _, stats, (rgba, depth) = self.draw(scene, camera, settings, readback=True)
        return to_frame(rgba, depth, stats)


__all__ = ["GaussianPipeline", "GROUP"]
