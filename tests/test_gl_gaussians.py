"""The GL Gaussian pipeline against its torch twin, plus resources, dispatch and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import check_display_texture, orbit_camera, psnr, random_gaussians, save_diff, shared_file

from renderer import Camera, RenderSettings, get_renderer, look_at_pose
from renderer.bench import frame_camera

pytestmark = pytest.mark.gl

W, H = 80, 60


@pytest.fixture(scope="module")
def scene():
    # 20k, larger than the bench's Gaussians so that a small image still shows structure.
    return random_gaussians(20_000, seed=3, log_scale=-3.8)


def _camera(kind: str) -> Camera:
    if kind == "outside":
        return orbit_camera(3.0, 30, 20, W, H)
    if kind == "inside":  # in the middle of the cloud: Gaussians on every side, many behind
        return Camera.look_at((0.1, 0.05, -0.2), (0.3, 0.2, 1.0), (0, -1, 0), W, H, fov_y_deg=70)
    if kind == "grazing":  # along the cube's top face, nearly edge-on to the slab of Gaussians
        return Camera.look_at((-2.5, -1.0, -0.4), (1.0, -0.95, 0.2), (0, -1, 0), W, H, fov_y_deg=40)
    if kind == "behind":  # at the cube's face looking in: half of the cloud is behind the camera
        return Camera.look_at((0.0, 0.0, 0.0), (1.0, 0.3, 0.0), (0, -1, 0), W, H, fov_y_deg=60)
    raise ValueError(kind)


def _compare(name: str, a, b, min_psnr: float = 45.0) -> None:
    for ch, x, y in (("rgb", a.rgb, b.rgb), ("alpha", a.alpha, b.alpha)):
        p = psnr(x, y)
        if p < min_psnr:
            path = save_diff(f"{name}_{ch}", x, y)
            pytest.fail(f"{name}: {ch} PSNR {p:.1f} dB < {min_psnr} (diff image: {path})")


CASES = [(cam, aa) for cam in ("outside", "inside", "grazing", "behind") for aa in ("classic", "mip")]


@pytest.mark.parametrize("cam,aa", CASES)
def test_parity_with_torch(gl, torch_r, scene, cam, aa):
    degree = CASES.index((cam, aa)) % 4  # every SH degree 0..3 is covered across the cases
    s = RenderSettings(antialias=aa, sh_degree=degree, background=(0.1, 0.2, 0.3))
    camera = _camera(cam)
    a = gl.render(scene, camera, s)
    b = torch_r.render(scene, camera, s)
    assert a.rgb.shape == (H, W, 3) and a.alpha.shape == (H, W, 1) and a.depth.shape == (H, W, 1)
    assert a.rgb.dtype == torch.float32
    assert float(b.alpha.max()) > 0.2, "the camera sees nothing: the case tests nothing"
    _compare(f"gl_parity_{cam}_{aa}", a, b)
    assert a.stats.counters["visible"] == b.stats.counters["visible"]


@pytest.mark.parametrize("mode", ["depth", "alpha"])
def test_modes_match_torch(gl, torch_r, scene, mode):
    s = RenderSettings(mode=mode, background=(0.2, 0.2, 0.2), splat_scale=1.3)
    camera = _camera("outside")
    a, b = gl.render(scene, camera, s), torch_r.render(scene, camera, s)
    _compare(f"gl_mode_{mode}", a, b)
    has = b.alpha[..., 0] > 0.05  # depth normalised by small alphas is noisy in float32
    assert torch.allclose(a.depth[has], b.depth[has], rtol=1e-3, atol=1e-3)


def test_covariances_override_quats(gl, scene):
    from renderer.torch_backend.project import quat_scale_to_covar

    camera = _camera("outside")
    s = RenderSettings(splat_scale=0.8)
    with_cov = scene.map(lambda t: t)
    with_cov.covars = quat_scale_to_covar(scene.quats, scene.scales)
    # Scramble quats/scales: the covariances alone must decide the shapes.
    with_cov.quats = torch.nn.functional.normalize(torch.randn_like(scene.quats), dim=-1)
    a, b = gl.render(with_cov, camera, s), gl.render(scene, camera, s)
    assert psnr(a.rgb, b.rgb) > 60


def test_real_3dgs_ply(gl, torch_r):
    from scenes import load_scene

    path = shared_file("3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply")
    scene = load_scene(path)
    camera = frame_camera(scene.bounds(), 64, 48)
    for aa in ("classic", "mip"):
        s = RenderSettings(antialias=aa)
        a, b = gl.render(scene, camera, s), torch_r.render(scene, camera, s)
        assert float(b.alpha.mean()) > 0.05
        _compare(f"gl_real_ply_{aa}", a, b)


@pytest.mark.parametrize("mode", ["rgb", "alpha", "depth"])
def test_draw_returns_texture_without_readback(gl, scene, mode):
    """draw() (the viewer's path: no read-back, no depth output) shows what render() returns."""
    camera = _camera("outside")
    tex, stats = gl.draw(scene, camera, RenderSettings(mode=mode))
    assert tex.size == (W, H) and tex.components == 4 and tex.dtype == "f4"
    assert "readback" not in stats.stages_ms and stats.backend == "gl"
    frame = gl.render(scene, camera, RenderSettings(mode=mode))
    rgba = np.frombuffer(tex.read(), dtype=np.float32).reshape(H, W, 4)
    assert np.array_equal(rgba[..., :3], frame.rgb.numpy())
    assert set(frame.stats.stages_ms) >= {"project", "sort", "bin", "blend", "readback"}


def test_empty_scene_is_background(gl):
    from scenes import GaussianScene

    s = RenderSettings(background=(0.25, 0.5, 1))
    f = gl.render(GaussianScene.empty(sh_degree=3), _camera("outside"), s)
    assert torch.equal(f.rgb, torch.tensor([0.25, 0.5, 1.0]).expand(H, W, 3))
    assert float(f.alpha.abs().max()) == 0 and float(f.depth.abs().max()) == 0


def test_everything_culled_is_background(gl, scene):
    away = Camera.look_at((0, 0, -5), (0, 0, -10), (0, -1, 0), W, H)  # the cloud is behind
    f = gl.render(scene, away, RenderSettings(background=(1, 0, 0)))
    assert f.stats.counters["visible"] == 0
    assert torch.equal(f.rgb, torch.tensor([1.0, 0, 0]).expand(H, W, 3))


@pytest.mark.parametrize("method", ["auto", "parallel"])
def test_no_growth_over_frames_and_scene_swap_frees(gl_ctx, method):
    """(parallel: the GPUs' binning, whose pair count moves with the camera more than the rest)"""
    r = get_renderer("gl", ctx=gl_ctx, blend_tile=16 if method == "parallel" else None)
    r.gaussians.binning.method = method if method != "auto" else r.gaussians.binning.method
    a = random_gaussians(2000, seed=5)
    b = random_gaussians(500, seed=6)
    base = None
    for i in range(50):
        cam = orbit_camera(3.0, 7.0 * i, 10 + i % 5, 64, 48)
        r.render(a, cam, RenderSettings())
        if i == 1:
            base = r.resource_stats()
        elif i > 1:
            assert r.resource_stats() == base, f"GPU resources changed at frame {i}"
    old = r.gaussians.scene
    old_geom = old.geom
    r.render(b, orbit_camera(width=64, height=48), RenderSettings())
    assert r.gaussians.scene is not old
    assert type(old_geom.mglo).__name__ == "InvalidObject", "the previous scene's buffers were not released"
    assert r.resource_stats()["bytes"] < base["bytes"]
    r.release()
    assert gl_ctx.error == "GL_NO_ERROR"


def test_in_place_edit_reuploads(gl_ctx):
    r = get_renderer("gl", ctx=gl_ctx)
    s = random_gaussians(300, seed=7, log_scale=-3)
    cam = orbit_camera(width=48, height=36)
    before = r.render(s, cam, RenderSettings()).rgb
    with torch.no_grad():
        s.sh[:, 0] += 1.0  # training-style in-place update
    after = r.render(s, cam, RenderSettings()).rgb
    assert float((after - before).abs().max()) > 0.1
    r.release()


def test_gaussians4d_are_sliced(gl, scene):
    class Fake4D:
        kind = "gaussians4d"

        def __init__(self):
            self.times = []

        def slice(self, t):
            self.times.append(t)
            return scene

    s4 = Fake4D()
    camera = _camera("outside")
    f = gl.render(s4, camera, RenderSettings(time=0.5))
    assert s4.times == [0.5]
    assert torch.equal(f.rgb, gl.render(scene, camera, RenderSettings()).rgb)


def test_supports_and_errors(gl, scene):
    assert gl.supports(scene)
    assert not gl.supports(object())
    with pytest.raises(ValueError, match="mode"):
        gl.render(scene, _camera("outside"), RenderSettings(mode="albedo"))


def test_no_context_raises_clear_error(monkeypatch):
    import moderngl

    from renderer.gl_backend import GLRenderer, gl_available

    def boom(*a, **k):
        raise moderngl.Error("no EGL display")

    monkeypatch.setattr(moderngl, "create_standalone_context", boom)
    with pytest.raises(RuntimeError, match="OpenGL 4.3"):
        GLRenderer()
    ok, why = gl_available()
    assert not ok and "no EGL display" in why


def test_denormals_are_flushed_in_the_block_only():
    """denormals_flushed: x86-64 Linux flushes denormals to zero inside the block and restores the
    thread's floating-point environment after it (elsewhere a no-op)."""
    import platform
    import sys

    from renderer.gl_backend.context import denormals_flushed

    tiny = np.float32(1e-39)  # a denormal float32
    assert tiny * np.float32(0.5) > 0
    with denormals_flushed():
        inside = tiny * np.float32(0.5)
    assert tiny * np.float32(0.5) > 0
    if sys.platform == "linux" and platform.machine() in ("x86_64", "AMD64"):
        assert inside == 0


def test_cpu_rasterizer_threads_flush_denormals(gl_ctx):
    """llvmpipe's compute threads start with the floating-point state of the thread that made the
    first context (create_context flushes denormals for that): a denormal product comes out 0.
    Without it the blend paid ~10x per vector operation on the tails of large Gaussians."""
    import platform

    from renderer.gl_backend.context import is_software

    if not is_software(gl_ctx) or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("flushing is set up for CPU rasterizers on x86-64")
    buf = gl_ctx.buffer(np.array([1e-39, 0.5, -1.0], np.float32).tobytes())
    prog = gl_ctx.compute_shader("#version 430\nlayout(local_size_x = 8) in;\n"
                                 "layout(std430, binding = 0) buffer B { float b[]; };\n"
                                 "void main() { if (gl_LocalInvocationIndex == 0u) b[2] = b[0] * b[1]; }\n")
    try:
        buf.bind_to_storage_buffer(0)
        prog.run(4)
        assert float(np.frombuffer(buf.read(), np.float32)[2]) == 0.0
    finally:
        prog.release()
        buf.release()


def test_gl_error_names_stage():
    from renderer.gl_backend import GLStageError, check_error

    class FakeCtx:
        error = "GL_INVALID_OPERATION"

    with pytest.raises(GLStageError, match="blend"):
        check_error(FakeCtx(), "blend")


def test_camera_stateless(gl, scene):
    c1, c2 = _camera("outside"), _camera("grazing")
    a = gl.render(scene, c1, RenderSettings()).rgb
    gl.render(scene, c2, RenderSettings())
    assert torch.equal(gl.render(scene, c1, RenderSettings()).rgb, a)


def test_off_centre_principal_point(gl, torch_r, scene):
    cam = Camera(W, H, 70.0, 75.0, 30.0, 35.0, look_at_pose((2.2, -1.0, -2.0), (0, 0, 0), (0, -1, 0)))
    s = RenderSettings()
    _compare("gl_off_centre", gl.render(scene, cam, s), torch_r.render(scene, cam, s))


def test_gl_timer_queries_fill_stats(gl_ctx, scene):
    r = get_renderer("gl", ctx=gl_ctx, timing="gl")
    f = r.render(scene, _camera("outside"), RenderSettings())
    assert {"project", "sort", "bin", "blend", "readback"} <= set(f.stats.stages_ms)
    assert all(v >= 0 for v in f.stats.stages_ms.values())
    before = r.resource_stats()
    r.render(scene, _camera("inside"), RenderSettings())
    assert r.resource_stats() == before  # queries are pooled, not made per frame
    r.release()


@pytest.mark.parametrize("cam", ["outside", "inside"])
def test_gpu_paths_parity_with_torch(gl_ctx, torch_r, scene, cam):
    """The GPU choices (hardware blend on 16 px tiles, parallel bins, grouped atomics) vs the twin."""
    from renderer.gl_backend.gaussians import GaussianPipeline

    p = GaussianPipeline(gl_ctx, timing="off", blend_tile=16, blend="hardware", bin_method="parallel")
    p.software = p.host_counts = False
    s = RenderSettings(antialias="mip", background=(0.1, 0.2, 0.3))
    a, b = p.render(scene, _camera(cam), s), torch_r.render(scene, _camera(cam), s)
    p.release()
    _compare(f"gl_gpu_paths_{cam}", a, b)
    assert a.stats.counters["visible"] == b.stats.counters["visible"]


def test_tile_rows_dealt_to_threads_cover_the_image(gl, torch_r, scene):
    """group_tile.glsl deals blocks of 4 tile rows alternately to the dispatch's halves: with 17
    tile rows (4 blocks and a row left over) every tile is still blended once, as the twin's."""
    camera = orbit_camera(3.0, 30, 20, 40, 136)  # 5 x 17 tiles of 8 px
    a, b = gl.render(scene, camera, RenderSettings()), torch_r.render(scene, camera, RenderSettings())
    assert float(b.alpha[:32].mean()) > 0.05 and float(b.alpha[-32:].mean()) > 0.05
    _compare("gl_tile_rows", a, b)


def test_host_counts_match_atomic_counters(gl_ctx, scene):
    """gs_project.comp's HOST_COUNTS (CPU rasterizers: the host reduces keys and per-Gaussian pair
    counts) gives the visible count, pair count and key range (hence sort order) that the atomic
    counters give, per invocation and grouped per work group (the GPU choice)."""
    from renderer.gl_backend.gaussians import GaussianPipeline

    p = GaussianPipeline(gl_ctx, timing="off")
    got = {}
    for mode in ("host", "atomics", "grouped"):
        p.host_counts = mode == "host"
        p.software = mode != "grouped"
        f = p.render(scene, _camera("inside"), RenderSettings())
        st = p.debug_state()
        got[mode] = (f, st)
    p.release()
    f0, st0 = got["host"]
    assert 0 < f0.stats.counters["visible"] < len(scene)  # some culled behind the camera
    for mode in ("atomics", "grouped"):
        f, st = got[mode]
        assert f.stats.counters == f0.stats.counters, mode
        for k in ("sorted_keys", "sorted_vals", "tile_start", "ids"):
            np.testing.assert_array_equal(st[k], st0[k], err_msg=f"{mode}: {k}")
        assert torch.equal(f.rgb, f0.rgb), mode


@pytest.mark.parametrize("stored", [0, 1, 2, 3])
def test_stored_sh_degrees_match_torch(gl, torch_r, stored):
    """sh.glsl reads SH_K = (degree + 1)^2 coefficients per Gaussian, as vec4s where 3K is a
    multiple of 4 (K = 4, 16) and as floats otherwise (K = 1, 9): every stored degree."""
    scene = random_gaussians(3000, seed=30 + stored, sh_degree=stored, log_scale=-3.5)
    s = RenderSettings(background=(0.1, 0.2, 0.3))
    cam = _camera("outside")
    a, b = gl.render(scene, cam, s), torch_r.render(scene, cam, s)
    assert float(b.alpha.mean()) > 0.05
    assert psnr(a.rgb, b.rgb) > 45


def _rgb9e5_reference(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EXT_texture_shared_exponent's RGB9_E5 encoding (N = 9, B = 15): (bits, decoded colour)."""
    c = np.clip(rgb.astype(np.float64), 0.0, 511 / 512 * 2.0**16)
    m = c.max(axis=1)
    with np.errstate(divide="ignore"):
        e = np.maximum(-16, np.floor(np.log2(m))) + 16
    e = np.where(np.floor(m / 2.0 ** (e - 24) + 0.5) >= 512, e + 1, e)
    q = np.floor(c / 2.0 ** (e - 24)[:, None] + 0.5).astype(np.uint32)
    bits = q[:, 0] | (q[:, 1] << 9) | (q[:, 2] << 18) | (e.astype(np.uint32) << 27)
    return bits, (q * 2.0 ** (e - 24)[:, None]).astype(np.float32)


def test_rgb9e5_colours_match_the_spec(gl_ctx):
    """gs_common.glsl pack_rgb9e5 / unpack_rgb9e5 (the software blend's staged colours) against
    the extension's reference encoding, and packing a decoded colour again is exact."""
    from renderer.gl_backend.shaders import read_shader_file

    src = "#version 430\n" + read_shader_file("gs_common.glsl") + """
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer In { vec4 rgb_in[]; };
layout(std430, binding = 1) writeonly buffer Bits { uvec2 bits[]; };
layout(std430, binding = 2) writeonly buffer Out { vec4 rgb_out[]; };
void main() {
    uint i = gl_GlobalInvocationID.x;
    uint v = pack_rgb9e5(rgb_in[i].rgb);
    vec3 d = unpack_rgb9e5(v);
    bits[i] = uvec2(v, pack_rgb9e5(d));
    rgb_out[i] = vec4(d, 0.0);
}
"""
    rng = np.random.default_rng(5)
    n = 4096
    rgb = rng.uniform(0, 1, (n, 3)) * 10.0 ** rng.uniform(-7, 5, (n, 1))
    rgb[:64] = rng.choice([0.0, 0.5, 1.0, 2.0, 1.0 - 2**-11, 70000.0, -1.0, 1e-30], (64, 3))
    rgb = rgb.astype(np.float32)
    cs = gl_ctx.compute_shader(src)
    bufs = [gl_ctx.buffer(np.pad(rgb, ((0, 0), (0, 1))).tobytes()), gl_ctx.buffer(reserve=8 * n),
            gl_ctx.buffer(reserve=16 * n)]
    for i, b in enumerate(bufs):
        b.bind_to_storage_buffer(i)
    cs.run(n // 64)
    bits = np.frombuffer(bufs[1].read(), dtype=np.uint32).reshape(n, 2)
    out = np.frombuffer(bufs[2].read(), dtype=np.float32).reshape(n, 4)[:, :3]
    for b in bufs:
        b.release()
    cs.release()
    want_bits, want_rgb = _rgb9e5_reference(rgb)
    assert np.array_equal(bits[:, 0], want_bits)
    assert np.array_equal(out, want_rgb)
    assert np.array_equal(bits[:, 1], bits[:, 0])  # re-packing a quantised colour is exact
    # At most half a step: 2^-9 of the largest channel, or half the smallest scale 2^-24.
    big = rgb.clip(0, 65408).max(axis=1, keepdims=True)
    assert np.all(np.abs(out - rgb.clip(0, 65408)) <= np.maximum(big * 2.0**-9, 2.0**-25))


@pytest.mark.parametrize("mode", ["rgb", "alpha", "depth"])
def test_display_texture_is_the_frame_in_rgba8(gl, scene, mode):
    """The viewer's display-ready frames (draw display=True) are the float frames in RGBA8."""
    settings = RenderSettings(mode=mode, background=(0.1, 0.2, 0.3))
    check_display_texture(gl, scene, _camera("outside"), settings)


@pytest.mark.parametrize("mode", ["rgb", "depth"])
def test_gpu_blend_gives_the_same_display_frames(gl_ctx, scene, mode):
    """The GPUs' blend (gs_blend_hw.comp, run here on llvmpipe) writes display-ready RGBA8 too:
    the viewer's texture and render_rgb8 are its float frame rounded."""
    r = get_renderer("gl", ctx=gl_ctx, blend_tile=16)
    r.gaussians.blend = "hardware"
    settings = RenderSettings(mode=mode, background=(0.1, 0.2, 0.3))
    cam = _camera("outside")
    assert r.draw(scene, cam, settings, display=True)[0].dtype == "f1"
    check_display_texture(r, scene, cam, settings)
    got, want = r.render_rgb8(scene, cam, settings), r.render(scene, cam, settings).to_uint8()
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3 and want.std() > 2
    r.release()


def test_render_rgb8_is_render_to_uint8(gl, scene):
    """render_rgb8 (video and PNG output) is render().to_uint8() for every kind of scene GL draws:
    Gaussians through the display-ready path, voxels and the marker modes through float textures."""
    from test_gl_convex import _scene as convex_scene

    from scenes.voxels import procedural_shell

    cam = _camera("outside")
    cases = [(scene, RenderSettings(background=(0.1, 0.2, 0.3))), (scene, RenderSettings(mode="depth")),
             (scene, RenderSettings(mode="points")), (convex_scene(), RenderSettings()),
             (procedural_shell(16, fine=False, seed=2), RenderSettings())]
    for s, settings in cases:
        got, want = gl.render_rgb8(s, cam, settings), gl.render(s, cam, settings).to_uint8()
        assert got.shape == (H, W, 3) and got.dtype == np.uint8 and got.flags.c_contiguous
        diff = np.abs(got.astype(int) - want.astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (s.kind, settings.mode, diff.max())
        assert want.std() > 2  # a picture


def test_gpu_read_back_through_a_staging_buffer_is_exact(gl_ctx, scene, monkeypatch):
    """On GPUs images are read back by packing them into a buffer first (Scratch.read_texture):
    forced here on llvmpipe with the GPUs' blend, render, render_rgb8 and the markers' normals
    give the same numbers."""
    import renderer.gl_backend.sort as sort_mod

    gl = get_renderer("gl", ctx=gl_ctx, blend_tile=16)
    gl.gaussians.blend = "hardware"
    cam = _camera("outside")
    cases = [RenderSettings(background=(0.1, 0.2, 0.3)), RenderSettings(mode="normals")]
    want = [gl.render(scene, cam, s) for s in cases]
    want8 = gl.render_rgb8(scene, cam, cases[0])
    monkeypatch.setattr(sort_mod, "is_software", lambda ctx: False)
    got = [gl.render(scene, cam, s) for s in cases]
    assert "_pack" in gl.gaussians.scratch.buffers and "_pack" in gl.markers.scratch.buffers  # it ran
    for g, w in zip(got, want, strict=True):
        for key in ("rgb", "alpha", "depth", "normals"):
            if getattr(w, key) is not None:
                assert torch.equal(getattr(g, key), getattr(w, key)), key
    assert want[1].normals is not None and want[1].normals.abs().max() > 0.5
    assert np.array_equal(gl.render_rgb8(scene, cam, cases[0]), want8)
    gl.release()
