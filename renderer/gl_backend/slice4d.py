"""4D Gaussians on the GPU: the scene's 4D parameters are uploaded once, then every frame one
compute pass (shaders/slice4d.comp) slices them at t straight into the 3D records that the
projection pass reads (gaussians.py, gs_project.comp with HAS_COVARS). No per-frame CPU slicing,
no per-frame upload, no per-frame buffer allocation.

Per frame, for N Gaussians (all dispatches; one 4-byte read-back for the kept count M):
    count   [slice4d.comp MODE 0]  per chunk of CHUNK Gaussians, how many the pre-cull keeps
    scan    [scan.comp]            exclusive prefix sum of the chunk counts -> write offsets
    emit    [slice4d.comp MODE 1]  the kept Gaussians' indices, ascending (stream compaction)
    slice   [slice4d.comp MODE 2]  per kept Gaussian: mean(t), Sigma3|t, opacity(t), SH(t)

The pre-cull is Gaussian4DScene.visible_at (the model's cut: 0.5 w dt^2 < 16 for 4D-Rotor,
marginal > 0.05 for Yang, plus alpha >= 1/255): it needs t_i, the marginal variance and q_max,
which do not depend on t and are computed once per scene with the twin's own functions. The
output order equals Gaussian4DScene.slice(t)'s, so depth ties sort as the torch twin's.

Flipbooks (scenes/formats/flipbook.py) have nothing to slice: the frame for t is uploaded as a
plain 3D scene and kept on the GPU by frame index (a few frames, least recently used first out).

Twin: scenes/gaussians4d.py (Gaussian4DScene.slice), rendered by renderer/torch_backend.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from scenes.gaussians4d import Gaussian4DScene, q_cut

from .context import is_software
from .gaussians import _SceneBuffers, _texels
from .pipeline import capped_degree, held, is_current, scene_key
from .shaders import compute_shader
from .sort import Scratch, exclusive_scan, groups, scan_total, set_uniforms

CHUNK = 256  # Gaussians one count/emit invocation walks (llvmpipe: short loops per invocation)
LOCAL = 64  # local_size_x of slice4d.comp
FLIPBOOK_GPU_FRAMES = 3  # flipbook frames kept on the GPU


@dataclass(eq=False)
class GPUGaussians:
    """Per-Gaussian inputs already on the GPU, in gaussians._SceneBuffers' layout.

    GaussianPipeline.draw takes one in place of a GaussianScene (it checks `on_gpu`) and reads
    the first n records; the buffers belong to whoever made this (the Slicer4D).
    """

    kind: ClassVar[str] = "gaussians"
    on_gpu: ClassVar[bool] = True

    n: int  # records to project
    k: int  # SH coefficients stored per Gaussian
    degree: int  # SH degree those hold
    has_covars: bool  # geom holds covariances (True) or quats and scales (False)
    geom: object  # moderngl.Buffer, vec4[3 n] (see gs_project.comp)
    sh: object  # moderngl.Buffer, float[n k 3]
    bounds: np.ndarray  # [2, 3] the scene's robust box (depth mode's auto range)
    stages_ms: dict = field(default_factory=dict)  # the slicing's share of the frame time
    counters: dict = field(default_factory=dict)  # "sliced": Gaussians kept at t


def _key4d(scene) -> tuple:
    tensors = [scene.means, scene.times, scene.scales, scene.rotations, scene.opacities, scene.sh]
    return scene_key(scene, tensors, scene.model, float(scene.prefilter_var), scene.time_duration)


class _Params4D:
    """One 4D scene on the GPU: inputs (uploaded once) and outputs sized for all N Gaussians."""

    def __init__(self, ctx, scene, images: bool = False):
        n = len(scene)
        self.n = n
        self.model = scene.model
        self.t_blocks = int(scene.sh.shape[1])
        self.k = int(scene.sh.shape[2])
        self.degree = scene.sh_degree
        self.q_cut = q_cut(scene.model)
        pf = float(scene.prefilter_var)
        self.prefilter = pf if scene.model == "yang" and pf > 0 else 0.0
        self.omega = (0.0,)
        if self.t_blocks > 1:
            if scene.time_duration is None:
                raise ValueError("this yang scene has time colour but no time_duration (t0, t1)")
            length = float(scene.time_duration[1] - scene.time_duration[0])
            # float32(2 pi b / L), as fold_time_sh's scalar becomes when it multiplies a float32 dt
            self.omega = tuple(float(np.float32(2.0 * math.pi * b / length)) for b in range(self.t_blocks))
        with torch.no_grad():
            # The twin's own pre-cull inputs (Gaussian4DScene.visible_at), so both keep the same set.
            var = scene._marginal_var(scene.sigma_tt())
            q_max = scene._q_max(True)
            cull = torch.stack([scene.times.detach(), var, q_max, torch.zeros_like(var)], dim=1)
            params = torch.cat([scene.means.detach(), scene.opacities.detach()[:, None],
                                scene.scales.detach(), scene.rotations.detach()], dim=1)
            cull = np.ascontiguousarray(cull.float().cpu().numpy())
            params = np.ascontiguousarray(params.float().cpu().numpy())
            sh4 = np.ascontiguousarray(scene.sh.detach().float().cpu().numpy())
        nb = groups(n, CHUNK)
        self.num_chunks = nb
        self.cull = ctx.buffer(cull.tobytes() if n else b"\0" * 16)
        # The slice pass's inputs as RGBA32F textures where it reads them with image loads
        # (slice4d.comp INPUT_IMAGES: CPU rasterizers, SH rows of whole texels), else buffers.
        self.images = images and n > 0 and self.k * 3 % 4 == 0
        if self.images:
            self.params, self.sh4 = _texels(ctx, params.reshape(-1, 4)), _texels(ctx, sh4.reshape(-1, 4))
        else:
            self.params = ctx.buffer(params.tobytes() if n else b"\0" * 64)
            self.sh4 = ctx.buffer(sh4.tobytes() if n else b"\0" * 16)
        self.partial = ctx.buffer(reserve=4 * (nb + 1))
        self.list = ctx.buffer(reserve=max(16, 4 * n))
        self.geom = ctx.buffer(reserve=max(48, 48 * n))
        self.sh = ctx.buffer(reserve=max(16, 12 * self.k * n))
        self.bounds = scene.bounds()
        self.key = _key4d(scene)
        self.ref = weakref.ref(scene)

    @property
    def objects(self) -> list:
        """Every GL object held: buffers, and the input textures where self.images."""
        return [self.cull, self.params, self.sh4, self.partial, self.list, self.geom, self.sh]

    @property
    def count(self) -> int:
        return len(self.objects)

    @property
    def nbytes(self) -> int:
        inputs = (self.params, self.sh4) if self.images else ()  # RGBA32F textures
        return (sum(b.size for b in self.objects if not any(b is t for t in inputs))
                + sum(16 * t.width * t.height for t in inputs))

    def release(self) -> None:
        for b in self.objects:
            b.release()


class Slicer4D:
    """Slices 4D Gaussian scenes (and picks flipbook frames) on one moderngl context.

    slice(scene, t) -> GPUGaussians for GaussianPipeline.draw. Holds one 4D scene's buffers (the
    last one sliced) and a few flipbook frames; release() frees them.
    """

    def __init__(self, ctx):
        self.ctx = ctx
        self.scene: _Params4D | None = None
        self.scratch = Scratch(ctx)  # the scan's block sums
        self.frames: OrderedDict = OrderedDict()  # (id(flipbook), frame index) -> (_SceneBuffers, ref)

    # ---- resources -------------------------------------------------------------------------
    def _params(self, scene) -> _Params4D:
        if not is_current(self.scene, scene, _key4d):
            self.release_scene()
            self.scene = _Params4D(self.ctx, scene, images=is_software(self.ctx))
        return self.scene

    def release_scene(self) -> None:
        if self.scene is not None:
            self.scene.release()
            self.scene = None
        self.scratch.release()

    def release_frames(self) -> None:
        for sb, _ in self.frames.values():
            sb.release()
        self.frames.clear()

    def release(self) -> None:
        self.release_scene()
        self.release_frames()

    @property
    def holds(self) -> bool:
        return self.scene is not None or bool(self.frames)

    def resource_stats(self) -> dict:
        """{'objects': count, 'bytes': total} of the GPU buffers held."""
        return held(self.scratch, self.scene, *(sb for sb, _ in self.frames.values()))

    # ---- per frame ---------------------------------------------------------------------------
    def slice(self, scene, t: float, sh_degree: int | None = None):
        """The 3D Gaussians of `scene` at time t: GPUGaussians, or a GaussianScene to upload.

        Args:
            scene: a Gaussian4DScene (sliced on the GPU), a FlipbookScene (anything with
                frame_index and frame: the frame's buffers), or any other "gaussians4d" kind with
                slice(t) -> GaussianScene (sliced by its own code; the pipeline uploads the result).
            t: seconds.
            sh_degree: cap on the SH degree kept (None: the scene's); fewer coefficients to fold.
        """
        if isinstance(scene, Gaussian4DScene):
            return self._slice4d(scene, float(t), sh_degree)
        if hasattr(scene, "frame_index") and hasattr(scene, "frame"):
            return self._flipbook_frame(scene, t)
        return scene.slice(t)

    def _slice4d(self, scene, t: float, sh_degree: int | None) -> GPUGaussians:
        ctx = self.ctx
        t0 = time.perf_counter()
        p = self._params(scene)
        upload_ms = (time.perf_counter() - t0) * 1e3
        degree = capped_degree(p.degree, sh_degree)
        k_out = (degree + 1) ** 2
        t1 = time.perf_counter()
        m = 0
        if p.n > 0:
            t32 = float(np.float32(t)) if math.isfinite(t) else t
            uni = {"t": t32, "n": p.n, "q_cut": p.q_cut}
            count = compute_shader(ctx, "slice4d.comp", {"MODE": 0, "CHUNK": CHUNK})
            set_uniforms(count, **uni)
            p.cull.bind_to_storage_buffer(0)
            p.partial.bind_to_storage_buffer(1)
            count.run(groups(p.num_chunks, LOCAL))
            ctx.memory_barrier()
            exclusive_scan(ctx, self.scratch, p.partial, p.num_chunks)
            m = scan_total(self.scratch, p.num_chunks)  # the one read-back: the kept count
        if m > 0:
            emit = compute_shader(ctx, "slice4d.comp", {"MODE": 1, "CHUNK": CHUNK})
            set_uniforms(emit, **uni)
            p.cull.bind_to_storage_buffer(0)
            p.partial.bind_to_storage_buffer(1)
            p.list.bind_to_storage_buffer(2)
            emit.run(groups(p.num_chunks, LOCAL))
            ctx.memory_barrier()
            defs = {"MODE": 2, "CHUNK": CHUNK, "ROTOR": int(p.model == "rotor"), "T_BLOCKS": p.t_blocks,
                    "K_IN": p.k, "K_OUT": k_out, "SH_VEC4": int(p.k * 3 % 4 == 0 and k_out * 3 % 4 == 0),
                    **({"INPUT_IMAGES": 1} if p.images else {})}
            cs = compute_shader(ctx, "slice4d.comp", defs)
            set_uniforms(cs, t=t32, n=m, prefilter_var=p.prefilter, omega=p.omega)
            for i, b in ((0, p.cull), (2, p.list), (5, p.geom), (6, p.sh)):
                b.bind_to_storage_buffer(i)
            for i, b in ((3, p.params), (4, p.sh4)):
                if p.images:
                    b.bind_to_image(i - 3, read=True, write=False)
                else:
                    b.bind_to_storage_buffer(i)
            cs.run(groups(m, LOCAL))
            ctx.memory_barrier()
        stages = {"slice": (time.perf_counter() - t1) * 1e3}
        if upload_ms > 1.0:
            stages["upload4d"] = upload_ms
        return GPUGaussians(m, k_out, degree, True, p.geom, p.sh, p.bounds, stages,
                            {"sliced": m, "culled_at_t": p.n - m})

    def _flipbook_frame(self, book, t: float) -> GPUGaussians:
        idx = book.frame_index(float(t))
        key = (id(book), idx)
        hit = self.frames.get(key)
        t0 = time.perf_counter()
        if hit is not None and hit[1]() is book:
            self.frames.move_to_end(key)
            sb = hit[0]
        else:
            if hit is not None:
                self.frames.pop(key)[0].release()  # a stale entry: another flipbook at the same id
            sb = _SceneBuffers(self.ctx, book.frame(idx))
            self.frames[key] = (sb, weakref.ref(book))
            while len(self.frames) > FLIPBOOK_GPU_FRAMES:
                self.frames.popitem(last=False)[1][0].release()
        stages = {}
        ms = (time.perf_counter() - t0) * 1e3
        if ms > 1.0:
            stages["upload"] = ms
        return GPUGaussians(sb.n, sb.k, sb.degree, sb.has_covars, sb.geom, sb.sh, sb.bounds, stages,
                            {"frame": idx})

    # ---- tests and tools ----------------------------------------------------------------------
    def read_back(self, out: GPUGaussians) -> dict:
        """The records of a slice as tensors (for tests): means [M,3], covars [M,3,3],
        opacities [M], sh [M,K,3], index [M] (row of the 4D scene)."""
        m, k = out.n, out.k
        p = self.scene
        geom = np.frombuffer(out.geom.read(48 * m), dtype=np.float32).reshape(m, 3, 4) if m else \
            np.zeros((0, 3, 4), np.float32)
        c = geom[:, 1:].reshape(m, 8)
        cov = c[:, [0, 1, 2, 1, 3, 4, 2, 4, 5]].reshape(m, 3, 3)
        sh = np.frombuffer(out.sh.read(12 * k * m), dtype=np.float32).reshape(m, k, 3) if m else \
            np.zeros((0, k, 3), np.float32)
        idx = np.frombuffer(p.list.read(4 * m), dtype=np.uint32) if m and p is not None else \
            np.zeros(0, np.uint32)
        return {"means": torch.from_numpy(geom[:, 0, :3].copy()),
                "opacities": torch.from_numpy(geom[:, 0, 3].copy()),
                "covars": torch.from_numpy(cov.copy()), "sh": torch.from_numpy(sh.copy()),
                "index": torch.from_numpy(idx.astype(np.int64))}


__all__ = ["GPUGaussians", "Slicer4D", "CHUNK"]
