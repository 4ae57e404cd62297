"""The marker modes on GL ("points", "ellipsoids", "normals": renderer/gl_backend/markers.py)
against their torch twin (renderer/torch_backend/gaussians.py), plus exact single-Gaussian
cases, the settings that drive them, 4D scenes, the chunking paths and allocation hygiene.

The torch reference runs in float64: in float32 its ray-ellipsoid root cancels
((d.At)^2 - (d.A.d)(t.At - k^2), both terms ~1e6 for a small, distant Gaussian), which moves
silhouettes and depths by more than the GL path (set up in double, cancellation-free) does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import orbit_camera, random_gaussians, save_diff

from renderer import Camera, RenderSettings, get_renderer
from renderer.gl_backend import markers
from renderer.torch_backend.gaussians import render_gaussians
from scenes import Gaussian4DScene, GaussianScene

pytestmark = pytest.mark.gl

W, H = 160, 120
MODES = ("points", "ellipsoids", "normals")
BG = (0.1, 0.2, 0.3)
# Pixels allowed to differ: a z-buffer flips where two surfaces are within rounding of each other
# (nearly equal depths) and on silhouettes, where the pixel centre lies within rounding of the
# disc's or ellipse's edge: GL's float32 projection and the twin's differ in the last bits.
MAX_MISMATCH = 0.005


def f64(scene: GaussianScene) -> GaussianScene:
    return scene.map(lambda t: t.double())


def mismatch(name: str, ref, out, check_normals: bool = False) -> float:
    """Fraction of pixels where rgb differs by > 1e-3, or alpha or depth by > 1e-4 relative.

    On every other pixel alpha and depth thus agree within 1e-4 (relative for depth).
    """
    rgb_bad = (ref.rgb.float() - out.rgb).abs().amax(-1) > 1e-3
    alpha_bad = (ref.alpha.float() - out.alpha).abs()[..., 0] > 1e-4
    zr = ref.depth.float()
    depth_bad = ((zr - out.depth).abs() > 1e-4 * zr.abs().clamp_min(1e-6))[..., 0]
    bad = rgb_bad | alpha_bad | depth_bad
    if check_normals:
        bad |= (ref.normals.float() - out.normals).abs().amax(-1) > 1e-3
    frac = float(bad.float().mean())
    if frac >= MAX_MISMATCH:
        save_diff(name, ref.rgb, out.rgb)
    return frac


CAMERAS = {
    # (Gaussians, seed, orbit distance): outside the cloud; inside it (Gaussians behind the camera
    # and right next to it); at its edge.
    "outside": (400, 3, 3.0),
    "inside": (1500, 4, 0.5),
    "edge": (800, 5, 1.1),
}


@pytest.mark.parametrize("where", list(CAMERAS))
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch(gl, mode, where):
    n, seed, dist = CAMERAS[where]
    scene = random_gaussians(n, seed=seed, log_scale=-3.0)
    cam = orbit_camera(distance=dist, azimuth_deg=40.0, elevation_deg=25.0, width=W, height=H)
    st = RenderSettings(mode=mode, background=BG)
    ref = render_gaussians(f64(scene), cam, st)
    out = gl.render(scene, cam, st)
    assert out.rgb.shape == (H, W, 3) and out.alpha.shape == (H, W, 1) and out.depth.shape == (H, W, 1)
    assert float(out.alpha.mean()) > 0.05  # the view shows something
    if where == "inside":
        pts = scene.means.double() @ torch.as_tensor(cam.T_camera_world[:3, :3]).T
        assert bool(((pts + torch.as_tensor(cam.T_camera_world[:3, 3]))[:, 2] < 0).any())
    assert mismatch(f"markers_{mode}_{where}", ref, out, check_normals=mode != "points") < MAX_MISMATCH
    assert out.stats.counters["visible"] == ref.stats.counters["visible"]
    if mode == "points":
        assert out.normals is None
    else:
        hit = out.alpha[..., 0] > 0
        assert torch.allclose(out.normals[hit].norm(dim=-1), torch.ones(int(hit.sum())), atol=1e-4)
        assert float(out.normals[~hit].abs().sum()) == 0.0


@pytest.mark.parametrize("mode", ["points", "ellipsoids"])
def test_min_opacity_filters(gl, mode):
    scene = random_gaussians(600, seed=6, log_scale=-3.0)
    cam = orbit_camera(distance=2.5, width=W, height=H)
    st = RenderSettings(mode=mode, min_opacity=0.6, background=BG)
    out = gl.render(scene, cam, st)
    assert mismatch(f"markers_min_opacity_{mode}", render_gaussians(f64(scene), cam, st), out) < MAX_MISMATCH
    # The same as drawing only the Gaussians at or above the threshold.
    keep = scene.opacities >= 0.6
    assert 0 < int(keep.sum()) < len(scene)
    sub = gl.render(scene.map(lambda t: t[keep]), cam, RenderSettings(mode=mode, background=BG))
    assert torch.equal(out.rgb, sub.rgb) and torch.equal(out.depth, sub.depth)
    all_ = gl.render(scene, cam, RenderSettings(mode=mode, background=BG))
    assert float(all_.alpha.sum()) > float(out.alpha.sum())


def single(mean, log_scale: float, dc=(0.5, -0.3, 1.0)) -> GaussianScene:
    """One isotropic Gaussian, opaque, DC colour from `dc` (SH coefficient 0)."""
    sh = torch.zeros(1, 1, 3)
    sh[0, 0] = torch.tensor(dc)
    return GaussianScene.from_raw(torch.tensor([mean], dtype=torch.float32), torch.tensor([[1.0, 0, 0, 0]]),
                                  torch.full((1, 3), log_scale), torch.tensor([10.0]), sh)


def test_point_disc_is_exact(gl):
    """A point projecting onto (80, 60): the pixel centres within the radius, in its DC colour."""
    scene = single((0.0, 0.0, 2.0), -4.0)
    cam = Camera(W, H, 100.0, 100.0, 80.0, 60.0)
    colour = torch.clamp_min(0.28209479177387814 * scene.sh[0, 0] + 0.5, 0.0)  # torch's: no upper clamp
    for r in (0.3, 1.0, 2.0, 3.5):
        out = gl.render(scene, cam, RenderSettings(mode="points", point_size=r, background=BG))
        j, i = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        inside = (i + 0.5 - 80.0) ** 2 + (j + 0.5 - 60.0) ** 2 <= max(r, 0.5) ** 2
        assert torch.equal(out.alpha[..., 0] > 0, inside), r
        assert torch.allclose(out.rgb[inside], colour.expand(int(inside.sum()), 3), atol=1e-6)
        assert torch.allclose(out.rgb[~inside], torch.tensor(BG).expand(int((~inside).sum()), 3))
        assert torch.allclose(out.depth[inside], torch.tensor(2.0))
        assert float(out.depth[~inside].abs().max()) == 0


def test_point_size_matches_torch(gl):
    scene = random_gaussians(500, seed=7, log_scale=-3.0)
    cam = orbit_camera(distance=3.0, width=W, height=H)
    cover = []
    for size in (1.0, 4.0):
        st = RenderSettings(mode="points", point_size=size, background=BG)
        out = gl.render(scene, cam, st)
        ref = render_gaussians(f64(scene), cam, st)
        assert mismatch(f"markers_point_size_{size}", ref, out) < MAX_MISMATCH
        cover.append(float(out.alpha.mean()))
    assert cover[1] > 2 * cover[0]


def test_sphere_depth_normal_and_shading(gl):
    """An isotropic Gaussian is a sphere of radius k s: nearest depth z0 - k s, normal -z, headlight 1."""
    s, z0 = math.exp(-2.0), 2.0
    scene = single((0.0, 0.0, z0), -2.0)
    cam = Camera(W, H, 100.0, 100.0, 80.0, 60.0)  # identity pose: world = camera axes
    colour = torch.clamp_min(0.28209479177387814 * scene.sh[0, 0] + 0.5, 0.0)
    radii = []
    for k in (1.0, 3.0):
        fe = gl.render(scene, cam, RenderSettings(mode="ellipsoids", ellipsoid_sigma=k))
        fn = gl.render(scene, cam, RenderSettings(mode="normals", ellipsoid_sigma=k))
        d = np.array([0.5 / 100.0, 0.5 / 100.0, 1.0])  # the ray through pixel (80, 60)
        b = d @ np.array([0.0, 0.0, z0])  # nearer root z of |z d - c|^2 = (k s)^2
        z = (b - math.sqrt(b * b - (d @ d) * (z0 * z0 - (k * s) ** 2))) / (d @ d)
        assert float(fe.depth[60, 80]) == pytest.approx(z, rel=1e-5)
        n = (z * d - np.array([0.0, 0.0, z0])) / (k * s)  # the sphere's normal at the hit
        assert torch.allclose(fn.normals[60, 80], torch.tensor(n, dtype=torch.float32), atol=1e-4)
        assert torch.allclose(fe.normals[60, 80], fn.normals[60, 80])
        assert torch.allclose(fn.rgb[60, 80], fn.normals[60, 80] * 0.5 + 0.5, atol=1e-6)
        shade = 0.25 + 0.75 * max(0.0, float(n @ -d) / math.sqrt(d @ d))  # the headlight
        assert torch.allclose(fe.rgb[60, 80], colour * shade, atol=1e-4)
        # silhouette radius in px: f * R / sqrt(z0^2 - R^2)
        radii.append(math.sqrt(float(fe.alpha.sum()) / math.pi))
        assert radii[-1] == pytest.approx(100.0 * k * s / math.sqrt(z0 * z0 - (k * s) ** 2), rel=0.03)
    assert radii[1] > 2.5 * radii[0]


def test_ellipsoid_sigma_changes_the_image(gl):
    scene = random_gaussians(400, seed=8, log_scale=-3.0)
    cam = orbit_camera(distance=3.0, width=W, height=H)
    frames = []
    for k in (1.0, 3.0):
        st = RenderSettings(mode="ellipsoids", ellipsoid_sigma=k, background=BG)
        frames.append(gl.render(scene, cam, st))
        ref = render_gaussians(f64(scene), cam, st)
        assert mismatch(f"markers_sigma_{k}", ref, frames[-1]) < MAX_MISMATCH
    assert float(frames[1].alpha.mean()) > 1.5 * float(frames[0].alpha.mean())
    assert float((frames[1].rgb - frames[0].rgb).abs().mean()) > 0.01


def test_chunking_paths_give_the_same_image(gl, monkeypatch):
    """Tiny chunks (many work items per Gaussian, the per-Gaussian cap, the item buffer regrowing,
    a 2D dispatch) draw what the defaults draw."""
    scene = random_gaussians(1500, seed=4, log_scale=-3.0)
    cam = orbit_camera(distance=0.5, width=W, height=H)
    for mode in ("points", "ellipsoids"):
        st = RenderSettings(mode=mode, point_size=6.0)
        ref = gl.render(scene, cam, st)
        with monkeypatch.context() as m:
            m.setattr(markers, "CHUNK_PX", 8)
            m.setattr(markers, "MAX_CHUNKS", 16)
            m.setattr(markers, "MAX_GROUPS_X", 7)
            out = gl.render(scene, cam, st)
        assert out.stats.counters["work_items"] > 4096 > ref.stats.counters["work_items"] / 2
        assert torch.equal(out.rgb, ref.rgb) and torch.equal(out.depth, ref.depth)


def test_empty_and_unseen_scenes(gl):
    cam = orbit_camera(distance=3.0, width=W, height=H)
    empty = random_gaussians(4, seed=0).map(lambda t: t[:0])
    behind = single((0.0, 0.0, -2.0), -2.0)  # behind the identity camera
    for scene, c in ((empty, cam), (behind, Camera(W, H, 100.0, 100.0, 80.0, 60.0))):
        for mode in MODES:
            out = gl.render(scene, c, RenderSettings(mode=mode, background=BG))
            assert float(out.alpha.abs().max()) == 0 and float(out.depth.abs().max()) == 0
            assert torch.allclose(out.rgb, torch.tensor(BG).expand(H, W, 3))


def rotor_scene(n: int = 400, seed: int = 9) -> Gaussian4DScene:
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * 2 - 1
    times = torch.rand(n, generator=g)
    log_scales = torch.cat([-2.6 + 0.5 * torch.randn(n, 3, generator=g),
                            math.log(0.15) + 0.6 * torch.randn(n, 1, generator=g)], dim=1)
    rot = torch.cat([0.5 * torch.randn(n, 4, generator=g) + torch.tensor([0.8, 0, 0, 0]),
                     0.15 * torch.randn(n, 4, generator=g)], dim=1)
    sh = 0.3 * torch.randn(n, 1, 16, 3, generator=g)
    logits = 1.5 * torch.randn(n, generator=g)
    return Gaussian4DScene.from_raw("rotor", means, times, log_scales, rot, logits, sh)


@pytest.mark.parametrize("mode", MODES)
def test_4d_scene_after_slicing(gl, mode):
    scene = rotor_scene()
    cam = orbit_camera(distance=3.0, width=W, height=H)
    st = RenderSettings(mode=mode, time=0.45, background=BG)
    out = gl.render(scene, cam, st)
    ref = render_gaussians(f64(scene.slice(0.45)), cam, st)
    assert float(out.alpha.mean()) > 0.02
    assert mismatch(f"markers_4d_{mode}", ref, out) < MAX_MISMATCH
    assert "sliced" in out.stats.counters  # the GPU slice fed the marker pipeline


def test_draw_without_readback_allocates_nothing_per_frame(gl_ctx):
    r = get_renderer("gl", ctx=gl_ctx)
    try:
        scene = random_gaussians(800, seed=10, log_scale=-3.0)
        cams = [orbit_camera(distance=1.0 + 0.1 * i, azimuth_deg=12.0 * i, width=W, height=H)
                for i in range(30)]
        for mode in MODES:  # warm-up: every mode's buffers and images once
            r.draw(scene, cams[0], RenderSettings(mode=mode))
        before = r.resource_stats()
        for i, cam in enumerate(cams):
            tex, stats = r.draw(scene, cam, RenderSettings(mode=MODES[i % 3]))
            assert tex.size == (W, H) and tex.components == 4 and tex.dtype == "f4"
            assert "readback" not in stats.stages_ms
            assert r.resource_stats() == before, i
        # The texture holds what render() reads back (whose row 0, the top, test_matches_torch checks).
        st = RenderSettings(mode="ellipsoids", background=BG)
        tex, _ = r.draw(scene, cams[5], st)
        rgba = torch.from_numpy(np.frombuffer(tex.read(), dtype=np.float32).reshape(H, W, 4).copy())
        frame = r.render(scene, cams[5], st)
        assert torch.equal(rgba[..., :3], frame.rgb) and torch.equal(rgba[..., 3:], frame.alpha)
    finally:
        r.release()
    assert gl_ctx.error == "GL_NO_ERROR"
