"""Tile rasterizer and binning against brute-force references written here (REFERENCE 1.3, 1.4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import orbit_camera, random_gaussians, save_diff

from renderer.torch_backend.gaussians import render_gaussians
from renderer.torch_backend.project import project_gaussians, quat_scale_to_covar
from renderer.torch_backend.rasterize import blend_tiles, rasterize
from renderer.torch_backend.sh import eval_sh
from renderer.torch_backend.tiles import bin_tiles
from renderer.types import Camera, RenderSettings

TILE = 16


@pytest.fixture(autouse=True)
def one_thread():
    """Run these tests on one intra-op thread: on a shared, oversubscribed machine every parallel
    torch op waits for a descheduled second worker (measured here: 0.5 s vs 7 s per test)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --------------------------------------------------------------------------- brute force references

def brute_rects(means2d: np.ndarray, radii: np.ndarray, width: int, height: int) -> list[tuple[int, ...]]:
    """INRIA getRect per primitive, plain Python: (x0, y0, x1, y1) in tiles, max exclusive."""
    gx, gy = math.ceil(width / TILE), math.ceil(height / TILE)
    out = []
    for (mx, my), r in zip(means2d.tolist(), radii.tolist(), strict=True):
        rx, ry = (r, r) if np.isscalar(r) else r
        if rx <= 0 or ry <= 0:
            out.append((0, 0, 0, 0))
            continue
        x0 = min(gx, max(0, math.floor((mx - rx) / TILE)))
        y0 = min(gy, max(0, math.floor((my - ry) / TILE)))
        x1 = min(gx, max(0, math.floor((mx + rx + TILE - 1) / TILE)))
        y1 = min(gy, max(0, math.floor((my + ry + TILE - 1) / TILE)))
        out.append((x0, y0, x1, y1))
    return out


def brute_bins(means2d, radii, depths, valid, width, height) -> list[list[int]]:
    """Per tile (row-major), ids whose rect holds the tile, sorted by (depth, id)."""
    gx, gy = math.ceil(width / TILE), math.ceil(height / TILE)
    rects = brute_rects(np.asarray(means2d), np.asarray(radii), width, height)
    order = sorted((i for i in range(len(rects)) if valid[i]), key=lambda i: (float(depths[i]), i))
    lists = [[] for _ in range(gx * gy)]
    for i in order:
        x0, y0, x1, y1 = rects[i]
        for ty in range(y0, y1):
            for tx in range(x0, x1):
                lists[ty * gx + tx].append(i)
    return lists


def brute_render(means2d, conics, opac, feats, radii, depths, valid, width, height, bg):
    """Every Gaussian in depth order at every pixel, INRIA's rules, float64 numpy.

    A Gaussian reaches a pixel only if the pixel's tile lies in its getRect, as in renderCUDA.
    The loop runs over Gaussians one at a time, vectorized over the pixels of a tile.
    Returns (image [H, W, C], alpha [H, W, 1], number of pixels that hit the T < 1e-4 stop).
    """
    m, q, o, f = (np.asarray(t.detach().double()) for t in (means2d, conics, opac, feats))
    lists = brute_bins(m, np.asarray(radii), np.asarray(depths.detach()), np.asarray(valid), width, height)
    gx = math.ceil(width / TILE)
    img = np.zeros((height, width, f.shape[1]))
    alpha = np.zeros((height, width, 1))
    stops = 0
    for t_id, ids in enumerate(lists):
        x0, y0 = (t_id % gx) * TILE, (t_id // gx) * TILE
        xs = np.arange(x0, min(x0 + TILE, width))
        ys = np.arange(y0, min(y0 + TILE, height))
        px, py = np.meshgrid(xs + 0.5, ys + 0.5)  # [h, w] pixel centres
        T = np.ones(px.shape)
        C = np.zeros(px.shape + (f.shape[1],))
        alive = np.ones(px.shape, dtype=bool)
        for i in ids:
            dx, dy = m[i, 0] - px, m[i, 1] - py
            power = -0.5 * (q[i, 0] * dx * dx + q[i, 2] * dy * dy) - q[i, 1] * dx * dy
            a = np.minimum(0.99, o[i] * np.exp(power))
            use = alive & (power <= 0) & (a >= 1 / 255)
            t_next = T * (1 - a)
            stop = use & (t_next < 1e-4)
            stops += int(stop.sum())
            alive &= ~stop
            use &= ~stop
            C[use] += f[i] * (a * T)[use][:, None]
            T = np.where(use, t_next, T)
        img[y0:y0 + len(ys), x0:x0 + len(xs)] = C + T[..., None] * bg
        alpha[y0:y0 + len(ys), x0:x0 + len(xs), 0] = 1 - T
    return torch.from_numpy(img), torch.from_numpy(alpha), stops


# --------------------------------------------------------------------------- helpers

def off_centre_camera(width: int, height: int, **kw) -> Camera:
    cam = orbit_camera(width=width, height=height, **kw)
    return Camera(width, height, cam.fx, cam.fy * 1.05, cam.cx + 3.3, cam.cy - 2.1, cam.T_world_camera)


def project_scene(scene, cam: Camera, antialias: str, degree: int):
    covars = quat_scale_to_covar(scene.quats, scene.scales)
    vm = torch.as_tensor(cam.T_camera_world, dtype=scene.means.dtype)
    p = project_gaussians(scene.means, covars, vm, cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height,
                          antialias=antialias)
    dirs = F.normalize(scene.means - torch.as_tensor(cam.position, dtype=scene.means.dtype), dim=-1)
    rgb = eval_sh(scene.sh, dirs, degree)
    return p, rgb, scene.opacities * p.opacity_scale


def check_close(name, got, ref, tol=1e-4):
    err = float((got.double() - ref.double()).abs().max()) if got.numel() else 0.0
    if err >= tol:
        p = save_diff(name, got, ref)
        pytest.fail(f"{name}: max abs error {err:.3g} >= {tol} (diff image {p})")


# --------------------------------------------------------------------------- binning

def bins_as_lists(bins) -> list[list[int]]:
    s = bins.tile_start.tolist()
    ids = bins.ids.tolist()
    return [ids[s[t]:s[t + 1]] for t in range(bins.num_tiles)]


@pytest.mark.parametrize("case", ["random", "empty", "whole_image", "per_axis_radii", "ties"])
def test_bin_tiles_matches_brute_force(case):
    W, H = 70, 45
    g = torch.Generator().manual_seed(3)
    n = {"random": 25, "empty": 0, "whole_image": 30, "per_axis_radii": 80, "ties": 40}[case]
    means2d = torch.rand(n, 2, generator=g) * torch.tensor([W + 40.0, H + 40.0]) - 20
    radii = torch.randint(0, 12, (n,), generator=g).int()
    depths = torch.rand(n, generator=g) + 0.5
    valid = torch.rand(n, generator=g) > 0.1
    if case == "whole_image":
        means2d[0] = torch.tensor([W / 2, H / 2])
        radii[0], valid[0] = 500, True
        means2d[1:] += 1000.0  # the rest are off-image: only tile-less entries besides the big one
    if case == "per_axis_radii":
        radii = torch.randint(0, 20, (n, 2), generator=g).int()
    if case == "ties":
        depths = torch.randint(0, 3, (n,), generator=g).float()
    bins = bin_tiles(means2d, radii, depths, valid, W, H)
    ref = brute_bins(means2d.numpy(), radii.numpy(), depths.numpy(), valid.numpy(), W, H)
    got = bins_as_lists(bins)
    assert got == ref
    assert bins.tile_start.shape == (bins.num_tiles + 1,)
    assert int(bins.counts.sum()) == bins.num_pairs == sum(len(x) for x in ref)
    if case == "whole_image":
        assert all(lst == [0] for lst in got)
    if case == "random":
        assert any(len(lst) == 0 for lst in got)  # empty tiles occur and are handled


def test_bin_tiles_empty_input_renders_background():
    bins = bin_tiles(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int32), torch.zeros(0),
                     torch.zeros(0, dtype=torch.bool), 33, 17)
    assert bins.num_pairs == 0 and bins.counts.shape == (3 * 2,)
    img, alpha, counters = rasterize(torch.zeros(0, 2), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3),
                                     bins, 33, 17, background=torch.tensor([0.1, 0.2, 0.3]))
    assert img.shape == (17, 33, 3) and alpha.shape == (17, 33, 1)
    assert torch.allclose(img, torch.tensor([0.1, 0.2, 0.3]).expand(17, 33, 3))
    assert float(alpha.abs().max()) == 0.0 and counters["tile_pairs"] == 0


# --------------------------------------------------------------------------- rasterizer

@pytest.mark.parametrize("antialias", ["classic", "mip"])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_rasterize_matches_brute_force(antialias, degree):
    # Sizes are not multiples of 16; big, fairly opaque Gaussians so that pixels saturate and the
    # T < 1e-4 stop is exercised.
    W, H = (40, 30) if degree % 2 == 0 else (70, 50)
    n = 150 if W == 40 else 300
    scene = random_gaussians(n, seed=10 + degree, sh_degree=3, log_scale=-2.0, log_scale_std=0.6)
    scene.opacities = torch.sigmoid(torch.logit(scene.opacities) + 3.0)
    cam = off_centre_camera(W, H, distance=2.6, azimuth_deg=40.0 + 10 * degree)
    p, rgb, opac = project_scene(scene, cam, antialias, degree)
    feats = torch.cat([rgb, p.depths[:, None]], dim=1)
    bg = torch.tensor([0.2, 0.5, 0.8, 0.0])
    bins = bin_tiles(p.means2d, p.radii, p.depths, p.valid, W, H)
    ref_img, ref_alpha, stops = brute_render(p.means2d, p.conics, opac, feats, p.radii, p.depths, p.valid,
                                             W, H, bg.double().numpy())
    for block in (32, 5):  # 5: many rounds, T carried from round to round
        with torch.no_grad():
            img, alpha, counters = rasterize(p.means2d, p.conics, opac, feats, bins, W, H, bg, block=block)
        check_close(f"raster_{antialias}_{degree}_{block}", img, ref_img)
        check_close(f"raster_alpha_{antialias}_{degree}_{block}", alpha, ref_alpha)
    assert stops > 0, "the scene should saturate some pixels"
    assert 0 < counters["blended_pairs"] <= counters["evaluated_pairs"] <= counters["tile_pairs"]
    # The autograd path computes the same image.
    img_g, alpha_g, _ = rasterize(p.means2d.requires_grad_(), p.conics, opac, feats, bins, W, H, bg)
    check_close(f"raster_grad_path_{antialias}_{degree}", img_g.detach(), ref_img)


def test_rasterize_float64_agrees_tightly():
    W, H = 45, 35
    scene = random_gaussians(150, seed=4, sh_degree=1, log_scale=-2.5).map(lambda t: t.double())
    cam = off_centre_camera(W, H, distance=2.5)
    p, rgb, opac = project_scene(scene, cam, "classic", 1)
    bins = bin_tiles(p.means2d, p.radii, p.depths, p.valid, W, H)
    img, alpha, _ = rasterize(p.means2d, p.conics, opac, rgb, bins, W, H)
    ref_img, ref_alpha, _ = brute_render(p.means2d, p.conics, opac, rgb, p.radii, p.depths, p.valid,
                                         W, H, 0.0)
    assert img.dtype == torch.float64
    check_close("raster_f64", img, ref_img, tol=1e-9)
    check_close("raster_f64_alpha", alpha, ref_alpha, tol=1e-9)


def test_blend_tiles_generic_alpha_fn_matches_rasterize():
    """The public blender with a Gaussian alpha function written here equals rasterize."""
    W, H = 50, 36
    scene = random_gaussians(150, seed=6, sh_degree=0, log_scale=-2.5)
    cam = orbit_camera(width=W, height=H, distance=2.5)
    p, rgb, opac = project_scene(scene, cam, "classic", 0)
    bins = bin_tiles(p.means2d, p.radii, p.depths, p.valid, W, H)

    def alpha_fn(gid, px, py):
        m, q, o = p.means2d[gid], p.conics[gid], opac[gid]  # [Ta, B, ...]
        dx = m[..., 0, None, None] - px[:, None, None, :]  # [Ta, B, 1, tile]
        dy = m[..., 1, None, None] - py[:, None, :, None]  # [Ta, B, tile, 1]
        power = -0.5 * (q[..., 0, None, None] * dx**2 + q[..., 2, None, None] * dy**2) \
            - q[..., 1, None, None] * dx * dy
        a = torch.clamp_max(o[..., None, None] * torch.exp(power), 0.99)
        a = torch.where((power <= 0) & (a >= 1 / 255), a, torch.zeros_like(a))
        return a.reshape(*gid.shape, -1)

    with torch.no_grad():
        img, alpha, _ = blend_tiles(alpha_fn, rgb, bins, W, H)
        ref, ref_alpha, _ = rasterize(p.means2d, p.conics, opac, rgb, bins, W, H)
    check_close("blend_tiles_generic", img, ref, tol=1e-5)
    check_close("blend_tiles_generic_alpha", alpha, ref_alpha, tol=1e-5)


# --------------------------------------------------------------------------- render_gaussians modes

@pytest.fixture(scope="module")
def mode_case():
    W, H = 58, 42
    scene = random_gaussians(200, seed=8, sh_degree=2, log_scale=-2.4)
    cam = orbit_camera(width=W, height=H, distance=2.7, azimuth_deg=75.0)
    p, rgb, opac = project_scene(scene, cam, "classic", 2)
    feats = torch.cat([rgb, p.depths[:, None]], dim=1)
    ref, ref_alpha, _ = brute_render(p.means2d, p.conics, opac, feats, p.radii, p.depths, p.valid, W, H, 0.0)
    return scene, cam, ref, ref_alpha


def test_render_gaussians_rgb_matches_brute_force(mode_case):
    scene, cam, ref, ref_alpha = mode_case
    bg = (0.3, 0.1, 0.6)
    with torch.no_grad():
        fr = render_gaussians(scene, cam, RenderSettings(background=bg), "cpu")
    want = ref[..., :3] + (1 - ref_alpha) * torch.tensor(bg, dtype=torch.float64)
    check_close("render_rgb", fr.rgb, want)
    check_close("render_rgb_alpha", fr.alpha, ref_alpha)
    assert fr.rgb.shape == (cam.height, cam.width, 3) and fr.depth.shape == (cam.height, cam.width, 1)
    assert set(fr.stats.stages_ms) == {"project", "sort", "bin", "blend"}
    assert set(fr.stats.counters) == {"visible", "tile_pairs", "blended_pairs"}
    assert 0 < fr.stats.counters["blended_pairs"] <= fr.stats.counters["tile_pairs"]


def test_render_gaussians_depth_and_alpha_modes(mode_case):
    scene, cam, ref, ref_alpha = mode_case
    has = ref_alpha > 1e-6
    want_depth = torch.where(has, ref[..., 3:] / ref_alpha.clamp_min(1e-12), torch.zeros_like(ref_alpha))
    with torch.no_grad():
        fd = render_gaussians(scene, cam, RenderSettings(mode="depth", depth_range=(1.5, 4.0)), "cpu")
        fa = render_gaussians(scene, cam, RenderSettings(mode="alpha", background=(0.0, 0.5, 1.0)), "cpu")
    check_close("render_depth", fd.depth, want_depth, tol=1e-3)  # depth ~3: 1e-4 relative
    # Where covered, the expected depth lies in the scene's depth span.
    z = fd.depth[ref_alpha > 0.5]
    assert z.numel() > 0 and float(z.min()) > 1.0 and float(z.max()) < 4.5
    from renderer.colormap import depth_to_rgb
    want_rgb = depth_to_rgb(want_depth.float(), ref_alpha.float(), (1.5, 4.0), torch.zeros(3))
    check_close("render_depth_rgb", fd.rgb, want_rgb, tol=1e-3)
    want_a = ref_alpha + (1 - ref_alpha) * torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    check_close("render_alpha_mode", fa.rgb, want_a)
    check_close("render_alpha_alpha", fa.alpha, ref_alpha)


def test_render_gaussians_points_mode_and_unsupported():
    W, H = 40, 30
    scene = random_gaussians(60, seed=2, sh_degree=1, log_scale=-3.0)
    cam = orbit_camera(width=W, height=H)
    settings = RenderSettings(mode="points", point_size=1.5, background=(0, 0, 1))
    fr = render_gaussians(scene, cam, settings, "cpu")
    assert fr.rgb.shape == (H, W, 3)
    covered = fr.alpha[..., 0] > 0
    assert 0 < int(covered.sum()) < W * H
    assert torch.all(fr.alpha[covered] == 1) and torch.all(fr.rgb[~covered] == torch.tensor([0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="not supported by the torch backend"):
        render_gaussians(scene, cam, RenderSettings(mode="albedo"), "cpu")


def test_ellipsoids_and_normals_modes_on_a_sphere():
    """A round Gaussian of sigma 0.1 drawn at 2 sigma is a sphere of radius 0.2."""
    from scenes import GaussianScene
    scene = GaussianScene(torch.zeros(1, 3), torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), 0.1),
                          torch.ones(1), torch.full((1, 1, 3), 0.5))
    cam = Camera.look_at((0, 0, -3.0), (0, 0, 0), (0, -1, 0), 61, 61, 40.0)
    fr = render_gaussians(scene, cam, RenderSettings(mode="ellipsoids", ellipsoid_sigma=2.0), "cpu")
    r_px = cam.fx * 0.2 / math.sqrt(3.0**2 - 0.2**2)  # silhouette radius of the sphere
    assert abs(float(fr.alpha.sum()) - math.pi * r_px**2) < 2 * math.pi * r_px  # within a pixel ring
    assert float(fr.depth[30, 30]) == pytest.approx(2.8, abs=1e-3)
    assert torch.allclose(fr.rgb[30, 30], torch.full((3,), 0.5 + 0.5 * 0.28209479177387814), atol=1e-4)
    assert torch.allclose(fr.normals[30, 30], torch.tensor([0.0, 0.0, -1.0]), atol=1e-3)  # faces the camera
    fn = render_gaussians(scene, cam, RenderSettings(mode="normals", ellipsoid_sigma=2.0), "cpu")
    hit = fn.alpha[..., 0] > 0
    assert torch.allclose(fn.normals[hit].norm(dim=-1), torch.ones(int(hit.sum())), atol=1e-4)
    assert torch.allclose(fn.rgb[hit], fn.normals[hit] * 0.5 + 0.5, atol=1e-6)
    # The nearest of two ellipsoids wins.
    two = GaussianScene(torch.tensor([[0.0, 0, 0], [0.0, 0, -1.0]]), torch.tensor([[1.0, 0, 0, 0]] * 2),
                        torch.tensor([[0.1] * 3, [0.05] * 3]), torch.ones(2),
                        torch.tensor([[[1.0, -1.0, -1.0]], [[-1.0, 1.0, -1.0]]]))
    f2 = render_gaussians(two, cam, RenderSettings(mode="ellipsoids", ellipsoid_sigma=2.0), "cpu")
    assert float(f2.depth[30, 30]) == pytest.approx(1.9, abs=1e-3) and f2.rgb[30, 30, 1] > f2.rgb[30, 30, 0]


def test_render_gaussians_empty_and_behind_camera():
    cam = orbit_camera(width=33, height=21)
    from scenes import GaussianScene
    fr = render_gaussians(GaussianScene.empty(sh_degree=1), cam, RenderSettings(background=(1, 0, 0)), "cpu")
    assert torch.all(fr.rgb == torch.tensor([1.0, 0.0, 0.0])) and float(fr.alpha.max()) == 0
    scene = random_gaussians(20, seed=1, sh_degree=0)
    scene.means = scene.means + torch.as_tensor(-4.0 * cam.T_world_camera[:3, 2], dtype=torch.float32)
    fr = render_gaussians(scene, cam, RenderSettings(), "cpu")  # everything behind the camera
    assert fr.stats.counters["visible"] == 0 and float(fr.alpha.max()) == 0


def test_covars_and_splat_scale_agree():
    W, H = 40, 30
    scene = random_gaussians(80, seed=5, sh_degree=0, log_scale=-2.6)
    cam = orbit_camera(width=W, height=H)
    with torch.no_grad():
        a = render_gaussians(scene, cam, RenderSettings(splat_scale=0.7), "cpu")
        scene.covars = quat_scale_to_covar(scene.quats, scene.scales)
        b = render_gaussians(scene, cam, RenderSettings(splat_scale=0.7), "cpu")
    check_close("covars_vs_quats", b.rgb, a.rgb, tol=1e-5)


def test_whole_image_gaussian_matches_brute_force():
    """One Gaussian wider than the image behind and in front of small ones."""
    W, H = 45, 33
    scene = random_gaussians(40, seed=12, sh_degree=0, log_scale=-2.5)
    big = random_gaussians(1, seed=13, sh_degree=0, log_scale=0.5)  # sigma ~1.6 at distance ~3
    for name in ("means", "quats", "scales", "opacities", "sh"):
        setattr(scene, name, torch.cat([getattr(big, name), getattr(scene, name)]))
    scene.means[0] = torch.tensor([0.1, -0.1, 0.2])
    scene.opacities[0] = 0.7
    cam = orbit_camera(width=W, height=H, distance=3.0)
    p, rgb, opac = project_scene(scene, cam, "classic", 0)
    assert p.valid[0] and int(p.radii[0]) > max(W, H)
    bins = bin_tiles(p.means2d, p.radii, p.depths, p.valid, W, H)
    assert all(0 in lst for lst in bins_as_lists(bins))
    with torch.no_grad():
        img, alpha, _ = rasterize(p.means2d, p.conics, opac, rgb, bins, W, H)
    ref, ref_alpha, _ = brute_render(p.means2d, p.conics, opac, rgb, p.radii, p.depths, p.valid, W, H, 0.0)
    check_close("whole_image", img, ref)
    check_close("whole_image_alpha", alpha, ref_alpha)
    assert float(alpha.min()) > 0.1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    W, H = 70, 50
    scene = random_gaussians(300, seed=3, sh_degree=3, log_scale=-2.5)
    cam = orbit_camera(width=W, height=H)
    with torch.no_grad():
        a = render_gaussians(scene, cam, RenderSettings(background=(0.2, 0.3, 0.4)), "cpu")
        b = render_gaussians(scene.to("cuda"), cam, RenderSettings(background=(0.2, 0.3, 0.4)), "cuda")
    assert b.rgb.device.type == "cuda"
    check_close("cuda_vs_cpu", b.rgb.cpu(), a.rgb, tol=1e-4)
    check_close("cuda_vs_cpu_depth", b.depth.cpu(), a.depth, tol=1e-3)
