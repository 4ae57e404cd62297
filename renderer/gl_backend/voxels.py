"""GL compute ray marcher for VoxelGridScene (shaders/voxels_march.comp); twin of torch_backend/voxels.py.

    render_voxels(ctx, scene, camera, settings, readback=True) -> Frame
    draw_voxels(ctx, scene, camera, settings) -> (RGBA32F texture, FrameStats)   # no read-back

Scene data lives in textures made once per scene (per context) and reused while the scene's tensors
are unchanged:
- vox_tex: a 2D RGBA32F texture holding, per voxel, G = ceil((1 + C) / 4) vec4s: (density, f0, f1, f2),
  (f3, ..), ... A flat layout serves dense grids (voxel index (i*Y + j)*Z + k) and Plenoxels' sparse
  data (index from the links texture) alike.
- links_tex (sparse scenes): R32I 3D texture; mask_tex: R8UI 3D texture.
- The MLP: one uniform block per layer (all invocations read the same weight, which a uniform block
  broadcasts; llvmpipe reads storage buffers per lane), a texture when a layer exceeds
  GL_MAX_UNIFORM_BLOCK_SIZE.
Interpolation is manual trilinear with texelFetch, not the sampler's filtering. On llvmpipe, linear
filtering of R32F textures is exact to ~1e-7 (tests/test_voxels_gl.py::
test_hardware_filter_precision_is_not_enough prints it), but GPUs compute the weights in fixed point
with 8 fractional bits (CUDA C Programming Guide, "Linear Filtering"), an error of up to 1/512 of the
step between neighbouring voxels: for DVGO raw densities (steps of 10+ between voxels) that moves
alpha visibly, so parity with the torch twin needs the manual path everywhere.
"""

from __future__ import annotations

import math
import time
import weakref

import numpy as np
import torch

from scenes.voxels import VoxelGridScene

from .. import colormap
from ..profiling import StageTimer
from ..types import Camera, Frame, FrameStats, RenderSettings
from .context import check_error, is_software
from .pipeline import Textures, bind_inputs, capped_degree, is_current, read_images, to_frame
from .shaders import compute_shader
from .sort import Scratch, set_uniforms

LOCAL = 8  # local_size_x = local_size_y in voxels_march.comp
MODES = {"rgb": 0, "alpha": 1, "depth": 2}
COUNTERS = (
    "samples",
    "samples_visited",
    "samples_skipped_mask",
    "samples_skipped_alpha",
    "samples_shaded",
    "density_lookups",
    "rays_hit",
    "samples_skipped_early",
)
MAX_UBO_LAYERS = 6  # MLPW0..MLPW5 in the shader; deeper MLPs read their weights from a texture
MLP_TEX_W = 4096  # width of the MLP weight texture (the shader's `& 4095, >> 12`)


def _nearest(ctx, tex) -> None:
    tex.filter = (ctx.NEAREST, ctx.NEAREST)
    tex.repeat_x = tex.repeat_y = False


def _scene_key(scene: VoxelGridScene) -> tuple:
    ts = [scene.density, scene.features, scene.xyz_min, scene.xyz_max, scene.mask, scene.links]
    ts += [t for wb in (scene.mlp or []) for t in wb]
    return tuple((t.data_ptr(), t._version, tuple(t.shape)) if t is not None else None for t in ts) + (
        scene.color_mode,
        scene.density_activation,
        scene.rgbnet_direct,
        scene.viewbase_pe,
    )


class _SceneTextures:
    """GL objects holding one scene; `defines` select the shader variant."""

    def __init__(self, ctx, scene: VoxelGridScene):
        t0 = time.perf_counter()
        self.objects: list = []
        self.ref = weakref.ref(scene)
        self.key = _scene_key(scene)
        scene = scene.to("cpu")
        C = scene.n_channels
        G = (1 + C + 3) // 4
        sparse = scene.links is not None
        if sparse:
            dens = scene.density.detach().reshape(-1, 1)
            feats = scene.features.detach()
        else:
            dens = scene.density.detach().reshape(-1, 1)
            feats = scene.features.detach().reshape(C, -1).T
        V = dens.shape[0]
        packed = np.zeros((V, G * 4), dtype=np.float32)
        packed[:, 0] = dens[:, 0].numpy()
        packed[:, 1 : 1 + C] = feats.numpy()
        max_size = int(ctx.info.get("GL_MAX_TEXTURE_SIZE", 16384))
        texels = max(1, V * G)
        self.texw_log2 = 12
        while (1 << self.texw_log2) < max_size and -(-texels // (1 << self.texw_log2)) > max_size:
            self.texw_log2 += 1
        width = 1 << self.texw_log2
        rows = -(-texels // width)
        if rows > max_size:
            raise ValueError(
                f"the voxel grid ({V} voxels x {G} vec4) exceeds this GL's texture limit "
                f"({max_size} x {max_size})"
            )
        flat = np.zeros((rows * width, 4), dtype=np.float32)
        flat[:texels] = packed.reshape(-1, 4)
        self.vox = ctx.texture((width, rows), 4, flat.tobytes(), dtype="f4")
        _nearest(ctx, self.vox)
        self.objects.append(self.vox)
        self.links = self.mask = None
        if sparse:
            X, Y, Z = scene.grid_shape
            self.links = ctx.texture3d(
                (Z, Y, X), 1, scene.links.numpy().astype(np.int32).tobytes(), dtype="i4"
            )
            _nearest(ctx, self.links)
            self.objects.append(self.links)
        if scene.mask is not None:
            mx, my, mz = scene.mask.shape
            self.mask = ctx.texture3d(
                (mz, my, mx), 1, scene.mask.numpy().astype(np.uint8).tobytes(), dtype="u1"
            )
            _nearest(ctx, self.mask)
            self.objects.append(self.mask)
        self.defines = {
            "G": G,
            "C": C,
            "COLOR_MODE": {"sigmoid_k0": 0, "mlp": 1, "sh": 2}[scene.color_mode],
            "ACT": 0 if scene.density_activation == "softplus" else 1,
            "SPARSE": int(sparse),
            "HAS_MASK": int(scene.mask is not None),
            "PE": scene.viewbase_pe,
            "RGBNET_DIRECT": int(scene.rgbnet_direct),
        }
        self.mlp_bufs: list = []
        self.mlp_tex = None
        if scene.color_mode == "mlp":
            self._upload_mlp(ctx, scene)
        self.upload_ms = (time.perf_counter() - t0) * 1e3

    def _upload_mlp(self, ctx, scene: VoxelGridScene) -> None:
        layers = [(w.detach().float().numpy(), b.detach().float().numpy()) for w, b in scene.mlp]
        dims = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
        mats, biases = [], []
        for w, b in layers:
            out, inp = w.shape
            in4 = -(-inp // 4)
            m = np.zeros((out, in4 * 4), dtype=np.float32)
            m[:, :inp] = w
            mats.append(m.reshape(-1, 4))
            bb = np.zeros(-(-out // 4) * 4, dtype=np.float32)
            bb[:out] = b
            biases.append(bb.reshape(-1, 4))
        bias = np.concatenate(biases)
        wmax = max(m.shape[0] for m in mats)
        limit = int(ctx.info.get("GL_MAX_UNIFORM_BLOCK_SIZE", 16384))
        max_blocks = int(ctx.info.get("GL_MAX_COMPUTE_UNIFORM_BLOCKS", 12))
        use_tex = wmax * 16 > limit or len(layers) + 1 > max_blocks or len(layers) > MAX_UBO_LAYERS
        if bias.nbytes > limit:
            raise ValueError(f"the MLP's biases ({bias.nbytes} bytes) exceed a uniform block ({limit} bytes)")
        self.defines.update(
            {
                "MLP_LAYERS": len(layers),
                "MLP_DIMS": ",".join(str(d) for d in dims),
                "MLP_MAXW4": max(-(-d // 4) for d in dims),
                "MLP_B4": bias.shape[0],
                "MLP_TEX": int(use_tex),
            }
        )
        if not use_tex:
            self.defines.update({f"MLP_W{i}": m.shape[0] for i, m in enumerate(mats)})
        b = ctx.buffer(bias.tobytes())
        self.mlp_bufs.append(b)
        if use_tex:
            allw = np.concatenate(mats)
            rows = -(-allw.shape[0] // MLP_TEX_W)
            flat = np.zeros((rows * MLP_TEX_W, 4), dtype=np.float32)
            flat[: allw.shape[0]] = allw
            self.mlp_tex = ctx.texture((MLP_TEX_W, rows), 4, flat.tobytes(), dtype="f4")
            _nearest(ctx, self.mlp_tex)
            self.objects.append(self.mlp_tex)
        else:
            self.mlp_bufs += [ctx.buffer(np.ascontiguousarray(m).tobytes()) for m in mats]
        self.objects += self.mlp_bufs

    @property
    def nbytes(self) -> int:
        total = 0
        for o in self.objects:
            if hasattr(o, "size") and isinstance(o.size, int):
                total += o.size
            elif hasattr(o, "components"):
                dims = o.size
                total += int(np.prod(dims)) * o.components * 4
        return total

    def bind(self, images: bool = False) -> None:
        """Texture units 0-2, or with images (voxels_march.comp IMAGE_INPUTS) image units 2-4."""
        bind_inputs((self.vox, self.links, self.mask), images)
        if self.mlp_tex is not None:
            self.mlp_tex.use(location=3)
        for i, b in enumerate(self.mlp_bufs):
            b.bind_to_uniform_block(i)

    def release(self) -> None:
        for o in self.objects:
            o.release()
        self.objects.clear()


class _State:
    """Per-context resources: the current scene's textures, output images, the counter buffer."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.scene: _SceneTextures | None = None
        self.out = Textures(ctx)
        self.scratch = Scratch(ctx)  # the counter buffer, zeroed and read back through copies
        self.counters = self.scratch.get("counters", 4 * len(COUNTERS))
        self.queries: dict = {}
        # CPU rasterizers read the grid through image loads (voxels_march.comp IMAGE_INPUTS).
        self.image_inputs = is_software(ctx)

    def scene_textures(self, scene: VoxelGridScene) -> tuple[_SceneTextures, bool]:
        if is_current(self.scene, scene, _scene_key):
            return self.scene, False
        if self.scene is not None:
            self.scene.release()
        self.scene = _SceneTextures(self.ctx, scene)
        return self.scene, True

    def output(self, name: str, size: tuple[int, int], components: int):
        tex = self.out.get(name, size, components)
        tex.repeat_x = tex.repeat_y = False  # clamped like the scene textures (the viewer samples it)
        return tex

    def release(self) -> None:
        if self.scene is not None:
            self.scene.release()
            self.scene = None
        self.out.release()
        self.scratch.release()


_STATES: dict[int, _State] = {}


def _state(ctx) -> _State:
    st = _STATES.get(id(ctx))
    if st is None or st.ctx is not ctx:
        st = _STATES[id(ctx)] = _State(ctx)
    return st


def release_context(ctx) -> None:
    """Free every GL object this module holds for `ctx`."""
    st = _STATES.pop(id(ctx), None)
    if st is not None:
        st.release()


def _march(ctx, scene: VoxelGridScene, camera: Camera, settings: RenderSettings, readback: bool):
    if settings.mode not in MODES:
        raise ValueError(f"mode {settings.mode} is not supported for voxel grids (rgb, alpha, depth)")
    scene.validate()
    st = _state(ctx)
    timer = StageTimer(ctx, "auto", st.queries)
    tex, fresh = st.scene_textures(scene)
    W, H = int(camera.width), int(camera.height)
    out_rgba = st.output("rgba", (W, H), 4)
    out_depth = st.output("depth", (W, H), 1)
    images = st.image_inputs
    cs = compute_shader(ctx, "voxels_march.comp", {**tex.defines, **({"IMAGE_INPUTS": 1} if images else {})})
    size = np.array(scene.grid_shape, dtype=np.float32)
    lo = scene.xyz_min.detach().cpu().float().numpy()
    hi = scene.xyz_max.detach().cpu().float().numpy()
    grid_scale = (size - np.float32(1)) / (hi - lo)  # float32, the same arithmetic as the torch twin
    rng = (0.0, 1.0)
    if settings.mode == "depth":
        rng = settings.depth_range or colormap.auto_depth_range(
            scene.bounds(), camera.T_camera_world, camera.near
        )
    deg = 0
    if scene.color_mode == "sh":
        deg = capped_degree(scene.sh_degree, settings.sh_degree)
    uni = dict(
        vox_tex=2 if images else 0,  # (image units with IMAGE_INPUTS, texture units otherwise)
        links_tex=3 if images else 1,
        mask_tex=4 if images else 2,
        mlp_tex=3,
        texw_log2=tex.texw_log2,
        image_size=(W, H),
        intrinsics=(camera.fx, camera.fy, camera.cx, camera.cy),
        cam_rot=tuple(camera.T_world_camera[:3, :3].astype(np.float32).T.flatten()),
        cam_pos=tuple(camera.position.astype(np.float32)),
        near_far=(float(camera.near), float(min(camera.far, 3e38))),
        box_lo=tuple(lo),
        box_hi=tuple(hi),
        grid_scale=tuple(grid_scale),
        grid_size=tuple(int(s) for s in size),
        step_world=scene.step_world(),
        interval=scene.interval(),
        act_shift=float(scene.act_shift),
        color_thres=float(scene.fast_color_thres),
        log_stop=math.log(scene.stop_thresh),
        background=tuple(float(c) for c in settings.background),
        mode=MODES[settings.mode],
        depth_range=tuple(float(r) for r in rng),
        sh_degree=deg,
    )
    if scene.mask is not None:
        uni["mask_scale"] = tuple(scene.mask_xyz2ijk_scale.detach().cpu().float().numpy())
        uni["mask_shift"] = tuple(scene.mask_xyz2ijk_shift.detach().cpu().float().numpy())
    set_uniforms(cs, **uni)
    st.scratch.zero(st.counters, 4 * len(COUNTERS))
    with timer.stage("march"):
        tex.bind(images)
        st.counters.bind_to_storage_buffer(0)
        out_rgba.bind_to_image(0, read=False, write=True)
        out_depth.bind_to_image(1, read=False, write=True)
        cs.run(-(-W // LOCAL), -(-H // LOCAL))
        ctx.memory_barrier()
    arrays = None
    if readback:
        with timer.stage("readback"):
            arrays = read_images(out_rgba, out_depth, st.scratch)
    raw = np.frombuffer(st.scratch.read(st.counters, 4 * len(COUNTERS)), dtype=np.uint32)
    check_error(ctx, "voxels march")
    c = {name: int(v) for name, v in zip(COUNTERS, raw, strict=True)}
    c["rays"] = W * H
    c["feature_lookups"] = c["samples_shaded"]
    c["grid_lookups"] = c["density_lookups"] + c["feature_lookups"]
    c["mlp_macs"] = c["samples_shaded"] * scene.mlp_macs
    stats = FrameStats(stages_ms=timer.results(), counters=c, backend="gl")
    if fresh:
        stats.stages_ms["upload"] = tex.upload_ms
    return out_rgba, out_depth, stats, arrays


def draw_voxels(ctx, scene: VoxelGridScene, camera: Camera, settings: RenderSettings):
    """March without read-back: (RGBA32F texture, row 0 = top image row; FrameStats)."""
    out_rgba, _, stats, _ = _march(ctx, scene, camera, settings, readback=False)
    return out_rgba, stats


def render_voxels(
    ctx, scene: VoxelGridScene, camera: Camera, settings: RenderSettings, readback: bool = True
) -> Frame:
    """March and (by default) read back: Frame.rgb [H,W,3], alpha [H,W,1], depth [H,W,1] float32.

    With readback=False the tensors are empty and Frame.extras["texture"] is the RGBA32F texture
    (and "depth_texture" the R32F depth).
    """
    out_rgba, out_depth, stats, arrays = _march(ctx, scene, camera, settings, readback)
    if arrays is None:
        empty = torch.zeros(0, 0, 3)
        return Frame(
            rgb=empty,
            alpha=torch.zeros(0, 0, 1),
            stats=stats,
            extras={"texture": out_rgba, "depth_texture": out_depth},
        )
    return to_frame(*arrays, stats)
