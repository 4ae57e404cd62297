"""The marker modes of a GaussianScene on GL: "points", "ellipsoids" and "normals" (z-buffers).

Semantics are the torch twin's (renderer/torch_backend/gaussians.py, _render_points and
_render_ellipsoids): each Gaussian that the rgb pass would call visible and whose opacity is
>= settings.min_opacity is drawn opaque, the nearest wins (equal depths: the smaller index):
    points      a disc of settings.point_size px radius (pixel centres within it) in its DC colour
    ellipsoids  its settings.ellipsoid_sigma ellipsoid, ray cast per pixel, DC colour times
                (0.25 + 0.75 max(0, n . -view)), a headlight
    normals     the same ellipsoids, rgb = world normal * 0.5 + 0.5
Frame.alpha (1 where covered), Frame.depth (the winner's view z; 0 where empty) and, for the
ellipsoids, Frame.normals (world, unit; 0 where empty) are filled.

Stages (shaders/ in brackets; FrameStats names as the twin's laps):
    project  [mk_setup.comp]    one invocation per Gaussian: culling, record, pixel box, and the
                                box split into work items of about CHUNK_PX pixels (llvmpipe ends
                                an invocation after 65535 loop iterations: no long loops)
    bin      [mk_clear.comp, mk_raster.comp x 2]  the z-buffer: per work item, imageAtomicMin of
                                the hits' depth bits, then of the index where the depth won
    blend    [mk_resolve.comp]  per pixel: shade the winner into RGBA32F (+ R32F depth, normals)
    readback                    (render only) the images to torch tensors

The per-Gaussian inputs are the splatting pipeline's scene buffers (gaussians._SceneBuffers or a
4D slice's slice4d.GPUGaussians: geom and sh in gs_project.comp's layout), so a scene is on the
GPU once whichever mode draws it.
"""

from __future__ import annotations

import numpy as np

from ..profiling import release_query_pool
from ..types import Camera, Frame, RenderSettings
from .pipeline import FrameRun, Textures, held, read_images, to_frame
from .shaders import compute_shader
from .sort import Scratch, groups, set_uniforms

MARKER_MODES = ("points", "ellipsoids", "normals")
CHUNK_PX = 256  # pixels one raster invocation tests at most (bigger boxes are split)
MAX_CHUNKS = 4096  # work items one Gaussian emits, about at most (chunks grow beyond that)
RASTER_GROUP = 64  # mk_raster.comp local_size_x
MAX_GROUPS_X = 65535  # GL's guaranteed dispatch size per dimension
_RESOLVE_MODE = {"points": 0, "ellipsoids": 1, "normals": 2}


class MarkerPipeline:
    """Draws the marker modes on one moderngl context; holds its scratch buffers and images.

    timing: a StageTimer mode ("auto" | "wall" | "gl" | "off").
    """

    def __init__(self, ctx, timing: str = "auto"):
        self.ctx = ctx
        self.timing = timing
        self.scratch = Scratch(ctx)
        self.textures = Textures(ctx)
        self.queries: dict = {}

    # ---- resources -------------------------------------------------------------------------
    def resource_stats(self) -> dict:
        """What this pipeline holds on the GPU: {'objects': count, 'bytes': total}."""
        return held(self.scratch, self.textures, queries=self.queries)

    def release(self) -> None:
        self.scratch.release()
        self.textures.release()
        release_query_pool(self.queries)

    # ---- the frame -------------------------------------------------------------------------
    def draw(self, scene, camera: Camera, settings: RenderSettings, scene_buffers, readback: bool = False):
        """Run every stage; returns (rgba texture, depth texture, FrameStats, readback arrays|None).

        Args:
            scene: what scene_buffers takes (a GaussianScene, or a GPUGaussians 4D slice)
            scene_buffers: scene -> its GPU buffers (n, k, has_covars, geom, sh), e.g.
                GaussianPipeline._scene_buffers (which keeps them across frames)
        Returns:
            textures RGBA32F (rgb over the background, alpha) and R32F (view z), row 0 = the top
            image row; with readback, numpy arrays rgba [H,W,4], depth [H,W,1] and normals
            [H,W,3] (None for points).
        """
        mode = settings.mode
        if mode not in MARKER_MODES:
            raise ValueError(f"mode {mode!r} is not a marker mode (use one of {', '.join(MARKER_MODES)})")
        if settings.antialias not in ("classic", "mip"):
            raise ValueError(f"antialias must be 'classic' or 'mip', got {settings.antialias!r}")
        ctx = self.ctx
        ellipsoids = mode != "points"
        run = FrameRun(ctx, self.timing, self.queries, "markers frame")
        W, H = int(camera.width), int(camera.height)
        out_rgba = self.textures.get("out_rgba", (W, H), 4)
        out_depth = self.textures.get("out_depth", (W, H), 1)
        out_normals = self.textures.get("out_normals", (W, H), 4) if ellipsoids else None
        zbuf = self.textures.get("zbuf", (W, H), 1, "u4")
        ids = self.textures.get("ids", (W, H), 1, "u4")
        view = camera.T_camera_world.astype(np.float32)
        view_rot = tuple(view[:3, :3].T.flatten())  # GLSL mat3 is column-major
        intrinsics = (camera.fx, camera.fy, camera.cx, camera.cy)

        with run.upload():
            sb = scene_buffers(scene)
        n = int(sb.n)
        # A scene uploaded in Morton order (gaussians._SceneBuffers slots): ties by its own index.
        slots = getattr(sb, "slots", None)
        slot_bufs = slots.buffers if slots is not None else ()
        slot_defs = {"SLOTS": 1} if slots is not None else {}
        recs = self.scratch.get("recs", 96 * max(n, 1))  # REC (6) vec4 per Gaussian
        boxes = self.scratch.get("boxes", 16 * max(n, 1))
        counters = self.scratch.get("counters", 16)
        # Most Gaussians need one work item; room for two each avoids regrowing as the view moves.
        items = self.scratch.get("items", 8 * max(2 * n, 4096))
        cnt = np.zeros(4, dtype=np.uint32)
        with run:
            with run.stage("project"):
                if n > 0:
                    defs = {"ELLIPSOIDS": int(ellipsoids), "CHUNK_PX": CHUNK_PX, "MAX_CHUNKS": MAX_CHUNKS,
                            **({"HAS_COVARS": 1} if sb.has_covars else {})}
                    cs = compute_shader(ctx, "mk_setup.comp", defs)
                    r = max(float(settings.point_size), 0.5)
                    k = float(settings.ellipsoid_sigma)
                    uniforms = dict(
                        n=n, view_rot=view_rot, view_trans=tuple(view[:3, 3]), intrinsics=intrinsics,
                        image_size=(W, H), near_far=(camera.near, min(camera.far, 3e38)),
                        splat_scale=float(settings.splat_scale), min_opacity=float(settings.min_opacity),
                        sh_k=int(sb.k), point_r2=r * r, point_k=int(np.ceil(r)), sigma2=k * k,
                        box_scale=1.25 * k)
                    for _ in range(2):  # a second run only when the work items outgrow their buffer
                        self.scratch.zero(counters, counters.size)
                        for i, b in enumerate((sb.geom, sb.sh, recs, boxes, items, counters)):
                            b.bind_to_storage_buffer(i)
                        set_uniforms(cs, capacity=items.size // 8, **uniforms)
                        cs.run(groups(n, 128))
                        ctx.memory_barrier()
                        cnt = np.frombuffer(self.scratch.read(counters, 16), dtype=np.uint32).copy()
                        if int(cnt[0]) <= items.size // 8:
                            break
                        items = self.scratch.get("items", 8 * int(cnt[0] * 1.25))
            total = int(cnt[0])

            with run.stage("bin"):
                zbuf.bind_to_image(0, read=False, write=True)
                ids.bind_to_image(1, read=False, write=True)
                cs = compute_shader(ctx, "mk_clear.comp")
                set_uniforms(cs, image_size=(W, H))
                cs.run(groups(W, 16), groups(H, 16))
                ctx.memory_barrier()
                if total > 0:
                    cs = compute_shader(ctx, "mk_raster.comp", {"ELLIPSOIDS": int(ellipsoids), **slot_defs})
                    for i, b in enumerate((recs, boxes, items, *slot_bufs[:1])):
                        b.bind_to_storage_buffer(i)
                    zbuf.bind_to_image(0, read=True, write=True)
                    ids.bind_to_image(1, read=True, write=True)
                    n_groups = groups(total, RASTER_GROUP)
                    gx = min(n_groups, MAX_GROUPS_X)
                    for pass_id in (0, 1):
                        set_uniforms(cs, total=total, pass_id=pass_id, intrinsics=intrinsics,
                                     near=camera.near)
                        cs.run(gx, groups(n_groups, gx))
                        ctx.memory_barrier()

            with run.stage("blend"):
                cs = compute_shader(ctx, "mk_resolve.comp", {"MODE": _RESOLVE_MODE[mode], **slot_defs})
                recs.bind_to_storage_buffer(0)
                if slot_bufs:
                    slot_bufs[1].bind_to_storage_buffer(1)
                zbuf.bind_to_image(0, read=True, write=False)
                ids.bind_to_image(1, read=True, write=False)
                out_rgba.bind_to_image(2, read=False, write=True)
                out_depth.bind_to_image(3, read=False, write=True)
                if out_normals is not None:
                    out_normals.bind_to_image(4, read=False, write=True)
                set_uniforms(cs, image_size=(W, H), background=tuple(float(c) for c in settings.background),
                             view_rot=view_rot, intrinsics=intrinsics)
                cs.run(groups(W, 16), groups(H, 16))
                ctx.memory_barrier()

            arrays = None
            if readback:
                with run.stage("readback"):
                    rgba, depth = read_images(out_rgba, out_depth, self.scratch)
                    normals = None
                    if out_normals is not None:
                        xyzw = self.scratch.read_texture(out_normals, np.empty((H, W, 4), np.float32))
                        normals = xyzw[..., :3]
                    arrays = (rgba, depth, normals)
        stats = run.stats({
            "visible": int(cnt[1]), "drawn": int(cnt[2]), "box_px": int(cnt[3]), "work_items": total})
        return out_rgba, out_depth, stats, arrays

    def render(self, scene, camera: Camera, settings: RenderSettings, scene_buffers) -> Frame:
        """draw() with read-back: Frame.rgb [H,W,3], alpha [H,W,1], depth [H,W,1], normals [H,W,3]."""
        _, _, stats, (rgba, depth, normals) = self.draw(scene, camera, settings, scene_buffers, readback=True)
        return to_frame(rgba, depth, stats, normals)


__all__ = ["MarkerPipeline", "MARKER_MODES"]
