"""The GL convex splat pipeline against its torch twin; shared sort/binning; resources and dispatch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import check_display_texture, orbit_camera, psnr, save_diff
from test_convex_torch import random_convexes

from renderer import Camera, RenderSettings, get_renderer
from scenes.convex import ConvexScene

pytestmark = pytest.mark.gl

W, H = 64, 48


def _scene(n=300, k=6, seed=2, sh_degree=3, quirk=True, size=0.12) -> ConvexScene:
    s = random_convexes(n, k=k, seed=seed, sh_degree=sh_degree, size=size)
    s.sh_center_quirk = quirk
    return s


def _camera(kind: str, w: int = W, h: int = H) -> Camera:
    if kind == "outside":
        return orbit_camera(3.0, 30, 20, w, h)
    if kind == "inside":  # in the middle of the cloud: convexes on every side, many behind
        return Camera.look_at((0.1, 0.05, -0.2), (0.3, 0.2, 1.0), (0, -1, 0), w, h, fov_y_deg=70)
    if kind == "behind":  # at the cube's centre looking out: half of the convexes are behind
        return Camera.look_at((0.0, 0.0, 0.0), (1.0, 0.3, 0.0), (0, -1, 0), w, h, fov_y_deg=60)
    if kind == "close":  # near the cloud's edge: some points of a convex behind, some in front
        return orbit_camera(1.0, 100, -30, w, h)
    raise ValueError(kind)


def _compare(name: str, a, b, min_psnr: float = 45.0) -> None:
    for ch, x, y in (("rgb", a.rgb, b.rgb), ("alpha", a.alpha, b.alpha)):
        p = psnr(x, y)
        if p < min_psnr:
            path = save_diff(f"{name}_{ch}", x, y)
            pytest.fail(f"{name}: {ch} PSNR {p:.1f} dB < {min_psnr} (diff image: {path})")


# (camera, points per convex, SH degree cap, quirk, mode): every degree 0..3, both quirk settings
# and every mode are covered across the cases.
CASES = [
    ("outside", 6, 3, True, "rgb"),
    ("outside", 6, 1, False, "rgb"),
    ("inside", 6, 2, True, "rgb"),
    ("behind", 6, 3, False, "rgb"),
    ("close", 6, 0, True, "rgb"),
    ("outside", 3, 2, False, "rgb"),
    ("inside", 8, 3, True, "rgb"),
    ("outside", 6, 3, False, "depth"),
    ("behind", 6, 1, True, "alpha"),
]


@pytest.mark.parametrize("cam,k,degree,quirk,mode", CASES)
def test_parity_with_torch(gl, torch_r, cam, k, degree, quirk, mode):
    scene = _scene(k=k, quirk=quirk, size=0.12 if cam == "outside" else 0.05)
    s = RenderSettings(mode=mode, sh_degree=degree, background=(0.1, 0.2, 0.3))
    camera = _camera(cam)
    a, b = gl.render(scene, camera, s), torch_r.render(scene, camera, s)
    assert a.rgb.shape == (H, W, 3) and a.alpha.shape == (H, W, 1) and a.depth.shape == (H, W, 1)
    assert float(b.alpha.mean()) > 0.2, "the camera sees little: the case tests little"
    _compare(f"gl_convex_{cam}_k{k}_d{degree}_{quirk}_{mode}", a, b)
    assert a.stats.counters["visible"] == b.stats.counters["visible"]
    has = b.alpha[..., 0] > 0.05  # depth normalised by small alphas is noisy in float32
    assert torch.allclose(a.depth[has], b.depth[has], rtol=1e-3, atol=1e-3)


def test_quirk_and_degree_reach_the_image(gl):
    """Guards the parity cases against testing nothing: both settings change the GL image."""
    camera = _camera("outside")
    a = gl.render(_scene(quirk=True), camera, RenderSettings()).rgb
    b = gl.render(_scene(quirk=False), camera, RenderSettings()).rgb
    c = gl.render(_scene(quirk=True), camera, RenderSettings(sh_degree=0)).rgb
    assert float((a - b).abs().max()) > 0.01 and float((a - c).abs().max()) > 0.01


def test_2000_convexes_match_torch(gl, torch_r):
    scene = _scene(2000, seed=5, size=0.07)
    camera = _camera("outside", 200, 150)
    s = RenderSettings(background=(0.0, 0.0, 0.0))
    a, b = gl.render(scene, camera, s), torch_r.render(scene, camera, s)
    assert float(b.alpha.mean()) > 0.3
    _compare("gl_convex_2000", a, b)
    assert a.stats.counters["visible"] == b.stats.counters["visible"]


def test_long_tile_lists(gl, torch_r):
    """~2000 faint convexes blend into every pixel: the blend loop must not stop early (llvmpipe's
    65535-iteration cap would cut a loop that spends many iterations per pair)."""
    n = 3000
    s = random_convexes(n, seed=1, sh_degree=0, size=1.0)
    s.points = s.points - s.points.mean(dim=1, keepdim=True) + 0.02 * torch.randn(n, 1, 3)
    s.opacities = torch.full((n,), 0.0045)  # just above 1/255: T < 1e-4 after ~2000 layers
    s.deltas = torch.full((n,), 5.0)
    cam = Camera.look_at((0, 0, -4), (0, 0, 0), (0, -1, 0), 32, 24, fov_y_deg=20)
    a, b = gl.render(s, cam, RenderSettings()), torch_r.render(s, cam, RenderSettings())
    assert float(b.alpha.min()) > 0.95
    assert a.stats.counters["blended_samples"] > 1000 * 32 * 24
    _compare("gl_convex_long_lists", a, b)


def test_tile_blend_cut_by_the_loop_cap_raises(gl, torch_r):
    """70k convexes on one pixel: the columns next to it stay open past llvmpipe's 65535 loop
    iterations (one per pair, Mesa 22), which would cut their blend short without notice: the frame
    raises. Where loops are not capped (later Mesa, GPUs) the same frame renders whole."""
    from renderer.gl_backend.context import loop_cap

    n = 70_000
    s = random_convexes(n, k=3, seed=4, sh_degree=0, size=0.01)
    depth = torch.linspace(-0.01, 0.01, n)[:, None, None] * torch.tensor([0.0, 0.0, 1.0])
    s.points = s.points - s.points.mean(dim=1, keepdim=True) + depth
    s.opacities = torch.full((n,), 0.5)
    s.deltas = torch.full((n,), 50.0)
    s.sigmas = torch.full((n,), 1.0)  # a few pixels each: the tile's others stay open
    cam = Camera.look_at((0, 0, -3), (0, 0, 0), (0, -1, 0), 8, 8, fov_y_deg=40)
    if loop_cap(gl.ctx) is None:
        _compare("gl_convex_uncapped_long_list", gl.render(s, cam, RenderSettings()),
                 torch_r.render(s, cam, RenderSettings()))
    else:
        with pytest.raises(RuntimeError, match="loop limit"):
            gl.render(s, cam, RenderSettings())
    few = ConvexScene(s.points[:6000], s.deltas[:6000], s.sigmas[:6000], s.opacities[:6000], s.sh[:6000])
    f = gl.render(few, cam, RenderSettings())  # the same kind of tile, well within the limit
    assert f.stats.counters["tile_pairs"] > 3000 and float(f.alpha.max()) > 0.5


def test_binning_is_the_twins_with_16px_tiles(gl_ctx):
    """With 16 px tiles the shared sort + binning give exactly the twin's per-tile lists."""
    from renderer.gl_backend.convex import ConvexPipeline
    from renderer.torch_backend.convex import project_convex
    from renderer.torch_backend.tiles import bin_tiles

    scene = _scene(500, seed=7, size=0.1)
    cam = orbit_camera(2.5, 40, 10, 100, 70)  # 7 x 5 tiles, partial edge tiles
    pipe = ConvexPipeline(gl_ctx, timing="off", blend_tile=16)
    pipe.draw(scene, cam, RenderSettings())
    st = pipe.debug_state()
    proj = project_convex(scene.points, scene.deltas, scene.sigmas,
                          torch.as_tensor(cam.T_camera_world, dtype=torch.float32),
                          cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height)
    bins = bin_tiles(proj.centers2d, proj.radii, proj.depths, proj.valid, cam.width, cam.height)
    assert bins.num_pairs > 500
    assert np.array_equal(st["tile_start"], bins.tile_start.numpy())
    a, b = st["ids"], bins.ids.numpy()
    # Same lists in the same order, except convexes whose depths tie to an ulp (float32 centres
    # computed in a different order) may swap.
    z = proj.depths.numpy()
    diff = np.nonzero(a != b)[0]
    assert len(diff) < 0.01 * len(a)
    assert np.all(np.abs(z[a[diff]] - z[b[diff]]) <= 1e-6 * z[b[diff]])
    for t in range(len(st["tile_start"]) - 1):
        s0, s1 = st["tile_start"][t], st["tile_start"][t + 1]
        assert sorted(a[s0:s1]) == sorted(b[s0:s1])
    pipe.release()


def test_tile_sizes_give_the_same_image(gl_ctx):
    from renderer.gl_backend.convex import ConvexPipeline

    scene = _scene(600, seed=8, size=0.1)
    cam = orbit_camera(width=100, height=70)
    frames = []
    for bt in (16, 8):
        p = ConvexPipeline(gl_ctx, timing="off", blend_tile=bt)
        frames.append(p.render(scene, cam, RenderSettings()))
        p.release()
    assert float((frames[0].rgb - frames[1].rgb).abs().max()) < 1e-5
    assert frames[0].stats.counters["blended_samples"] == frames[1].stats.counters["blended_samples"]
    # The 8 px sub-tile cull keeps fewer pixel tests than splitting every 16 px tile in four.
    assert frames[1].stats.counters["tile_pairs"] < 4 * frames[0].stats.counters["tile_pairs"]


def test_image_and_texel_fetch_inputs_give_the_same_image(gl_ctx):
    """The blend reads its pair ids and records through image loads on CPU rasterizers and
    texelFetch elsewhere (cvx_blend.comp IMAGE_INPUTS): one image, one count."""
    from renderer.gl_backend.convex import ConvexPipeline

    scene = _scene(600, seed=9, size=0.1)
    cam = orbit_camera(width=100, height=70)
    frames = []
    for images in (True, False):
        p = ConvexPipeline(gl_ctx, timing="off")
        p.image_inputs = images
        frames.append(p.render(scene, cam, RenderSettings(mode="depth")))
        p.release()
    assert torch.equal(frames[0].rgb, frames[1].rgb) and torch.equal(frames[0].depth, frames[1].depth)
    assert frames[0].stats.counters == frames[1].stats.counters
    assert frames[0].stats.counters["blended_samples"] > 1000


@pytest.mark.parametrize("lockstep", [True, False], ids=["lockstep", "barriers"])
def test_dynamic_tiles_give_the_static_image(gl_ctx, monkeypatch, lockstep):
    """The blend taking its tiles from a counter (group_tile.glsl DYNAMIC_TILES) or one tile per
    work group: one image and count, also where work groups spend their loop budget after a tile
    or two (GRAB_BUDGET 4: the host dispatches more groups)."""
    from renderer.gl_backend import pipeline as PL
    from renderer.gl_backend.convex import ConvexPipeline

    scene = _scene(600, seed=9, size=0.1)
    cam = orbit_camera(width=100, height=70)
    frames = []
    for dynamic, budget, least in ((False, PL.GRAB_BUDGET, PL.DYNAMIC_GROUPS),
                                   (True, PL.GRAB_BUDGET, PL.DYNAMIC_GROUPS), (True, 4, 1)):
        monkeypatch.setattr(PL, "GRAB_BUDGET", budget)
        monkeypatch.setattr(PL, "DYNAMIC_GROUPS", least)
        p = ConvexPipeline(gl_ctx, timing="off")
        p.dynamic_tiles, p.lockstep = dynamic, lockstep and p.lockstep
        frames.append(p.render(scene, cam, RenderSettings()))
        p.release()
    assert frames[0].stats.counters["blended_samples"] > 1000
    for f in frames[1:]:
        assert torch.equal(frames[0].rgb, f.rgb) and torch.equal(frames[0].depth, f.depth)
        assert frames[0].stats.counters == f.stats.counters


def test_draw_returns_texture_and_stats(gl):
    scene, camera = _scene(), _camera("outside")
    tex, stats = gl.draw(scene, camera, RenderSettings())
    assert tex.size == (W, H) and tex.components == 4 and tex.dtype == "f4"
    assert "readback" not in stats.stages_ms and stats.backend == "gl"
    assert {"project", "sort", "bin", "blend"} <= set(stats.stages_ms)
    assert {"visible", "tile_pairs", "blended_samples"} <= set(stats.counters)
    frame = gl.render(scene, camera, RenderSettings())
    rgba = np.frombuffer(tex.read(), dtype=np.float32).reshape(H, W, 4)
    assert np.array_equal(rgba[..., :3], frame.rgb.numpy())
    assert "readback" in frame.stats.stages_ms and frame.stats.counters["tile_pairs"] > 0


def test_empty_and_behind_give_background(gl):
    bg = torch.tensor([0.25, 0.5, 1.0])
    s = RenderSettings(background=tuple(bg.tolist()))
    z = torch.zeros(0)
    empty = ConvexScene(torch.zeros(0, 6, 3), z, z, z, torch.zeros(0, 1, 3))
    f = gl.render(empty, _camera("outside"), s)
    assert torch.equal(f.rgb, bg.expand(H, W, 3)) and float(f.alpha.abs().max()) == 0
    away = Camera.look_at((0, 0, -5), (0, 0, -10), (0, -1, 0), W, H)  # the cloud is behind
    f = gl.render(_scene(), away, s)
    assert f.stats.counters["visible"] == 0
    assert torch.equal(f.rgb, bg.expand(H, W, 3))


def test_non_finite_convexes_are_dropped(gl, torch_r):
    scene = _scene(200, seed=9)
    bad = scene.map(lambda t: t.clone())
    bad.points[3, 1, 0] = float("nan")
    bad.sh[7, 0, 1] = float("inf")
    keep = torch.ones(len(scene), dtype=torch.bool)
    keep[[3, 7]] = False
    camera = _camera("outside")
    a = gl.render(bad, camera, RenderSettings())
    b = torch_r.render(scene.subset(keep), camera, RenderSettings())
    assert torch.isfinite(a.rgb).all()
    _compare("gl_convex_nan", a, b)


def test_resources_stable_and_freed(gl_ctx):
    r = get_renderer("gl", ctx=gl_ctx)
    a, b = _scene(800, seed=10), _scene(100, seed=11)
    base = None
    for i in range(6):
        r.render(a, orbit_camera(3.0, 20.0 * i, 10, 48, 36), RenderSettings())
        if i == 1:
            base = r.resource_stats()
        elif i > 1:
            assert r.resource_stats() == base, f"GPU resources changed at frame {i}"
    old_geom = r.convex.scene.geom
    r.render(b, orbit_camera(width=48, height=36), RenderSettings())
    assert type(old_geom.mglo).__name__ == "InvalidObject", "the previous scene's buffers were not released"
    assert r.resource_stats()["bytes"] < base["bytes"]
    # Switching to Gaussians frees the convex scene (one splat scene on the GPU at a time).
    from conftest import random_gaussians

    r.render(random_gaussians(50), orbit_camera(width=48, height=36), RenderSettings())
    assert r.convex.scene is None
    r.release()
    assert gl_ctx.error == "GL_NO_ERROR"


def test_supports_and_errors(gl):
    assert gl.supports(_scene(5))
    with pytest.raises(ValueError, match="mode"):
        gl.render(_scene(5), _camera("outside"), RenderSettings(mode="normals"))


@pytest.mark.parametrize("name", ["cvx_common.glsl", "cvx_project.comp", "cvx_blend.comp"])
def test_shader_headers(name):
    from importlib import resources

    lines = resources.files("shaders").joinpath(name).read_text().splitlines()
    start = 1 if lines[0].startswith("#version") else 0
    header = []
    for line in lines[start:]:
        if not line.startswith("//"):
            break
        header.append(line)
    head = "\n".join(header)
    assert header and header[0].startswith(f"// {name}:")
    assert "Bindings" in head and "Reference" in head


@pytest.mark.parametrize("mode", ["rgb", "depth"])
def test_display_texture_is_the_frame_in_rgba8(gl, mode):
    """The viewer's display-ready frames (draw display=True) are the float frames in RGBA8."""
    settings = RenderSettings(mode=mode, background=(0.1, 0.2, 0.3))
    check_display_texture(gl, _scene(), _camera("outside"), settings)
