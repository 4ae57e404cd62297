"""Convex splats in torch: hull, indicator and blending against brute-force numpy per pixel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import orbit_camera, psnr, save_diff

from renderer import RenderSettings, get_renderer
from renderer.torch_backend.convex import convex_hull_2d
from scenes.convex import ConvexScene
from scenes.gaussians import SH_C0


def random_convexes(n: int, k: int = 6, seed: int = 0, sh_degree: int = 1, size: float = 0.15) -> ConvexScene:
    g = torch.Generator().manual_seed(seed)
    centres = (torch.rand(n, 1, 3, generator=g) * 2 - 1) * 0.8
    pts = centres + torch.randn(n, k, 3, generator=g) * size
    c = (sh_degree + 1) ** 2
    sh = torch.randn(n, c, 3, generator=g) * 0.1
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / SH_C0
    log_delta = torch.full((n,), math.log(0.2)) + 0.3 * torch.randn(n, generator=g)
    log_sigma = torch.full((n,), math.log(0.08)) + 0.3 * torch.randn(n, generator=g)
    return ConvexScene.from_raw(pts, log_delta, log_sigma, torch.randn(n, generator=g) + 1.0, sh)


def brute_hull_edges(xy: np.ndarray) -> set[tuple[int, int]]:
    """Directed edges (i, j) with every other point strictly to the left (counter-clockwise in x, y)."""
    k = len(xy)
    out = set()
    for i in range(k):
        for j in range(k):
            if i == j:
                continue
            d = xy[j] - xy[i]
            cr = [d[0] * (xy[m, 1] - xy[i, 1]) - d[1] * (xy[m, 0] - xy[i, 0])
                  for m in range(k) if m not in (i, j)]
            if all(c > 0 for c in cr):
                out.add((i, j))
    return out


def test_hull_matches_brute_force():
    rng = np.random.default_rng(0)
    xy = rng.normal(size=(300, 7, 2)) * 50
    hull, size = convex_hull_2d(torch.from_numpy(xy))
    for r in range(len(xy)):
        h = hull[r, : int(size[r])].tolist()
        assert h[0] == h[-1], "the hull is closed"
        edges = set(zip(h[:-1], h[1:], strict=True))
        assert edges == brute_hull_edges(xy[r]), r


def test_hull_of_square_with_interior_points():
    xy = torch.tensor([[[0.0, 0], [10, 0], [10, 10], [0, 10], [5, 5], [3, 6]]])
    hull, size = convex_hull_2d(xy)
    assert int(size[0]) == 5 and sorted(hull[0, :4].tolist()) == [0, 1, 2, 3]


def brute_radius(xy, c, lines, z, delta, sigma):
    """REFERENCE 4 bounds: lines pushed out by 2.1/(z^2 delta sigma); consecutive intersections
    with angles in (0.1, 3.0) averaged; radius = ceil(max(1.1 max vertex distance, that mean))."""
    push = 2.1 / (z * z * delta * sigma)
    pushed = [(n, off - push if n @ c + off < 0 else off + push) for n, off in lines]
    dists = []
    for (n0, o0), (n1, o1) in zip(pushed[:-1], pushed[1:], strict=True):
        den = n1[0] * n0[1] - n1[1] * n0[0]
        ang = math.acos(np.clip(n0 @ n1 / (np.linalg.norm(n0) * np.linalg.norm(n1)), -1, 1))
        if den != 0 and 0.1 < ang < 3.0:
            p = np.linalg.solve(np.array([n0, n1]), -np.array([o0, o1]))
            dists.append(np.linalg.norm(p - c))
    if not dists:
        return None
    return math.ceil(max(1.1 * np.linalg.norm(xy - c, axis=1).max(), np.mean(dists)))


def brute_render(scene: ConvexScene, cam, bg=(0.1, 0.2, 0.3), quirk=True) -> np.ndarray:
    """Per-pixel reference: numpy hull (all-left edges), LSE indicator, depth-sorted blending."""
    pts = scene.points.double().numpy()
    V = cam.T_camera_world
    pc = pts @ V[:3, :3].T + V[:3, 3]
    centre = pts.mean(1)
    cc = centre @ V[:3, :3].T + V[:3, 3]
    xy = np.stack([cam.fx * pc[..., 0] / pc[..., 2] + cam.cx, cam.fy * pc[..., 1] / pc[..., 2] + cam.cy], -1)
    c2d = np.stack([cam.fx * cc[:, 0] / cc[:, 2] + cam.cx, cam.fy * cc[:, 1] / cc[:, 2] + cam.cy], -1)
    from renderer.torch_backend.sh import eval_sh

    campos = cam.position
    tgt = np.repeat(centre[:, 2:3], 3, 1) if quirk else centre
    d = tgt - campos
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rgb = eval_sh(scene.sh.double(), torch.from_numpy(d), scene.sh_degree).numpy()
    prims = []
    for i in np.argsort(cc[:, 2], kind="stable"):
        if cc[i, 2] <= 0.2:
            continue
        edges = brute_hull_edges(xy[i])
        if len(edges) < 3:
            continue
        # Hull edges in the reference's order: from the lowest-y vertex, following the chain.
        nxt = dict(edges)
        start = min(nxt, key=lambda v: (xy[i, v, 1], xy[i, v, 0]))
        chain = [start]
        while len(chain) < len(edges):
            chain.append(nxt[chain[-1]])
        lines = []
        for a in chain:
            p1, p2 = xy[i, a], xy[i, nxt[a]]
            n = np.array([p2[1] - p1[1], -(p2[0] - p1[0])])
            lines.append((n, -n @ p1))
        radius = brute_radius(xy[i], c2d[i], lines, cc[i, 2], float(scene.deltas[i]), float(scene.sigmas[i]))
        if radius is None:
            continue
        prims.append((i, lines, c2d[i], radius))
    img = np.zeros((cam.height, cam.width, 3))
    for y in range(cam.height):
        for x in range(cam.width):
            p = np.array([x + 0.5, y + 0.5])
            T, C = 1.0, np.zeros(3)
            for i, lines, c, r in prims:
                # Pixels outside the tiles the bounding radius touches are never visited (getRect).
                tx, ty = x // 16, y // 16
                if not (int(np.floor((c[0] - r) / 16)) <= tx < int(np.floor((c[0] + r + 15) / 16))
                        and int(np.floor((c[1] - r) / 16)) <= ty < int(np.floor((c[1] + r + 15) / 16))):
                    continue
                z = cc[i, 2]
                v = np.array([z * float(scene.deltas[i]) * (n @ p + c) for n, c in lines])
                phi = v.max() + np.log(np.exp(v - v.max()).sum())
                ind = 1 / (1 + np.exp(z * float(scene.sigmas[i]) * phi))
                a = min(0.99, float(scene.opacities[i]) * ind)
                if a < 1 / 255:
                    continue
                if T * (1 - a) < 1e-4:
                    break
                C += rgb[i] * a * T
                T *= 1 - a
            img[y, x] = C + T * np.asarray(bg)
    return img


@pytest.mark.parametrize("quirk", [True, False])
def test_render_matches_brute_force(quirk):
    scene = random_convexes(25, seed=3, sh_degree=2).map(lambda t: t.double())
    scene.sh_center_quirk = quirk
    cam = orbit_camera(distance=3.0, width=37, height=29, azimuth_deg=40)
    bg = (0.1, 0.2, 0.3)
    frame = get_renderer("torch").render(scene, cam, RenderSettings(background=bg))
    ref = torch.from_numpy(brute_render(scene, cam, bg, quirk))
    err = float((frame.rgb - ref).abs().max())
    if err >= 1e-4:
        save_diff(f"convex_brute_{quirk}", frame.rgb, ref)
    assert err < 1e-4, f"max abs error {err:.2e}, PSNR {psnr(frame.rgb, ref):.1f} dB"
    assert float(frame.alpha.max()) > 0.5, "the scene is actually visible"


def test_quirk_changes_colour_only_with_view_dependence():
    scene = random_convexes(30, seed=4, sh_degree=0)
    cam = orbit_camera(width=32, height=24)
    r = get_renderer("torch")
    a = r.render(scene, cam).rgb
    scene.sh_center_quirk = False
    assert torch.equal(a, r.render(scene, cam).rgb)  # degree 0: no direction dependence
    scene3 = random_convexes(30, seed=4, sh_degree=3)
    b = r.render(scene3, cam).rgb
    scene3.sh_center_quirk = False
    assert not torch.allclose(b, r.render(scene3, cam).rgb)


def test_gradients_flow_to_points_and_parameters():
    scene = random_convexes(8, seed=5)
    raw = {k: v.clone().requires_grad_(True) for k, v in scene.raw().items()}
    s = ConvexScene.from_raw(raw["points"], raw["log_deltas"], raw["log_sigmas"], raw["opacity_logits"],
                             raw["sh"])
    frame = get_renderer("torch").render(s, orbit_camera(width=24, height=20))
    frame.rgb.sum().backward()
    for k, v in raw.items():
        assert v.grad is not None and torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0, k


def test_all_behind_camera_gives_background():
    scene = random_convexes(5)
    cam = orbit_camera(distance=3.0, width=20, height=16)
    behind = scene.map(lambda t: t)
    c = torch.as_tensor(cam.position, dtype=torch.float32)
    fwd = torch.as_tensor(cam.T_world_camera[:3, 2], dtype=torch.float32)
    behind.points = scene.points - scene.points.mean(dim=(0, 1)) + c - 2 * fwd
    frame = get_renderer("torch").render(behind, cam, RenderSettings(background=(0.2, 0.4, 0.6)))
    assert torch.allclose(frame.rgb, torch.tensor([0.2, 0.4, 0.6]).expand_as(frame.rgb))


# --- loaders -----------------------------------------------------------------------------------

def _state_dict(n=6, k=6, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return {
        "convex_points": torch.randn(n, k, 3, generator=g).to(dtype),
        "delta": torch.randn(n, 1, generator=g).to(dtype),
        "sigma": torch.randn(n, 1, generator=g).to(dtype),
        "active_sh_degree": 3,
        "features_dc": torch.randn(n, 1, 3, generator=g).to(dtype),
        "features_rest": torch.randn(n, 15, 3, generator=g).to(dtype),
        "opacity": torch.randn(n, 1, generator=g).to(dtype),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_3dcs_state_dict_loads(tmp_path, dtype):
    from scenes import load_scene

    sd = _state_dict(dtype=dtype)
    p = tmp_path / "point_cloud_state_dict.pt"
    torch.save(sd, p)
    s = load_scene(p)
    assert isinstance(s, ConvexScene) and len(s) == 6 and s.num_points == 6 and s.sh_degree == 3
    assert s.meta["format"] == "convex_pt"
    assert torch.equal(s.points, sd["convex_points"].float())
    assert torch.allclose(s.deltas, sd["delta"].float()[:, 0].exp())


def test_convex_ply_and_pt_round_trip(tmp_path):
    from scenes import load_scene, save_scene

    scene = random_convexes(9, k=5, sh_degree=2)
    for name in ("c.ply", "c.pt"):
        save_scene(scene, tmp_path / name)
        back = load_scene(tmp_path / name)
        assert torch.equal(back.points, scene.points) and torch.equal(back.sh, scene.sh), name
        assert torch.equal(back.raw()["log_sigmas"], scene.raw()["log_sigmas"]), name


@pytest.mark.parametrize("case, message", [
    ("missing", "missing sigma"),
    ("shape", "convex_points has shape"),
    ("k", "points per convex"),
    ("nan", "NaN"),
    ("pickle", "refuses"),
])
def test_3dcs_bad_input(tmp_path, case, message):
    import argparse

    from scenes import SceneLoadError, load_scene

    sd = _state_dict()
    if case == "missing":
        del sd["sigma"]
    elif case == "shape":
        sd["convex_points"] = torch.zeros(6, 6)
    elif case == "k":
        sd["convex_points"] = torch.zeros(6, 12, 3)
    elif case == "nan":
        for key in ("convex_points", "delta"):
            sd[key] = torch.full_like(sd[key], float("nan"))
    elif case == "pickle":
        sd["extra"] = argparse.Namespace(a=1)  # an arbitrary Python object: refused
    p = tmp_path / "point_cloud_state_dict.pt"
    torch.save(sd, p)
    with pytest.raises(SceneLoadError, match=message):
        load_scene(p)
