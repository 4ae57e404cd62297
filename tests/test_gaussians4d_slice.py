"""Slicing 4D Gaussians (scenes/gaussians4d.py) against independent numpy versions of the papers' formulas.

The numpy code here is written from REFERENCE.md section 3: the rotor matrix entries of 4D-Rotor GS
(3.2) and Yang et al.'s flip(M_l M_r) (3.1), the partitioned covariance Sigma3 = Sigma11 -
sigma sigma^T / Sigma_tt, the moving mean, the temporal opacity and each model's cut-off.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import orbit_camera, psnr, save_diff

from scenes import Gaussian4DScene, GaussianScene
from scenes.gaussians4d import (
    rotor_matrix,
    rotor_time_row,
    yang_matrix,
    yang_time_row,
)

# ------------------------------------------------------------------ numpy reference (REFERENCE 3)

Y = [0.28209479177387814, 0.4886025119029199, 1.0925484305920792, 0.31539156525252005,
     0.5462742152960396, 0.5900435899266435, 2.890611442640554, 0.4570457994644658,
     0.3731763325901154, 1.445305721320277]


def np_sh_basis(d: np.ndarray) -> np.ndarray:
    """[N,3] unit directions -> [N,16] Y_0..Y_15 in INRIA order (REFERENCE 1.2 table)."""
    x, y, z = d[:, 0], d[:, 1], d[:, 2]
    c0, c1, c2, c2b, c2c, c3a, c3b, c3c, c3d, c3e = Y
    return np.stack([
        np.full_like(x, c0), -c1 * y, c1 * z, -c1 * x,
        c2 * x * y, -c2 * y * z, c2b * (2 * z * z - x * x - y * y), -c2 * x * z, c2c * (x * x - y * y),
        -c3a * y * (3 * x * x - y * y), c3b * x * y * z, -c3c * y * (4 * z * z - x * x - y * y),
        c3d * z * (2 * z * z - 3 * x * x - 3 * y * y), -c3c * x * (4 * z * z - x * x - y * y),
        c3e * z * (x * x - y * y), -c3a * x * (x * x - 3 * y * y),
    ], axis=1)


def np_rotor_M(r: np.ndarray) -> np.ndarray:
    """REFERENCE 3.2, 'after the final transpose', written entry by entry."""
    s, bxy, bxz, byz, bxw, byw, bzw, p = r.T
    M = np.empty((len(r), 4, 4))
    M[:, 0, 0] = s**2 - bxy**2 - bxz**2 - bxw**2 + byz**2 + byw**2 + bzw**2 - p**2
    M[:, 0, 1] = 2 * (bxy * s - bxz * byz - bxw * byw + bzw * p)
    M[:, 0, 2] = 2 * (bxy * byz + bxz * s - bxw * bzw - byw * p)
    M[:, 0, 3] = 2 * (bxy * byw + bxz * bzw + bxw * s + byz * p)
    M[:, 1, 0] = -2 * (bxy * s + bxz * byz + bxw * byw + bzw * p)
    M[:, 1, 1] = s**2 - bxy**2 + bxz**2 + bxw**2 - byz**2 - byw**2 + bzw**2 - p**2
    M[:, 1, 2] = 2 * (-bxy * bxz + bxw * p + byz * s - byw * bzw)
    M[:, 1, 3] = 2 * (-bxy * bxw - bxz * p + byz * bzw + byw * s)
    M[:, 2, 0] = 2 * (bxy * byz - bxz * s - bxw * bzw + byw * p)
    M[:, 2, 1] = -2 * (bxy * bxz + bxw * p + byw * bzw + byz * s)
    M[:, 2, 2] = s**2 + bxy**2 - bxz**2 + bxw**2 - byz**2 + byw**2 - bzw**2 - p**2
    M[:, 2, 3] = 2 * (bxy * p - bxz * bxw - byw * byz + bzw * s)
    M[:, 3, 0] = 2 * (bxy * byw + bxz * bzw - bxw * s - byz * p)
    M[:, 3, 1] = 2 * (-bxy * bxw + bxz * p + byz * bzw - byw * s)
    M[:, 3, 2] = -2 * (bxy * p + bxz * bxw + byz * byw + bzw * s)
    M[:, 3, 3] = s**2 + bxy**2 + bxz**2 - bxw**2 + byz**2 - byw**2 - bzw**2 - p**2
    return M


def np_rotornorm(r: np.ndarray) -> np.ndarray:
    """REFERENCE 3.2 rotornorm: remove the pseudo-scalar part, then divide by the norm."""
    r = r.copy()
    a, bxy, bxz, byz, bxw, byw, bzw, p = r.T.copy()
    eps = p * a - bxy * bzw + bxz * byw - bxw * byz
    l2 = (r**2).sum(1)
    m = np.abs(eps) > 1e-12
    d = np.zeros_like(eps)
    d[m] = (np.sqrt(l2[m] ** 2 - 4 * eps[m] ** 2) - l2[m]) / (2 * eps[m])
    r[:, 0] += d * p
    r[:, 7] += d * a
    r[:, 1] -= d * bzw
    r[:, 6] -= d * bxy
    r[:, 2] += d * byw
    r[:, 5] += d * bxz
    r[:, 3] -= d * bxw
    r[:, 4] -= d * byz
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def np_yang_R(rot: np.ndarray) -> np.ndarray:
    """REFERENCE 3.1: A = M_l M_r of the normalized quaternions, rows and columns reversed."""
    l = rot[:, :4] / np.linalg.norm(rot[:, :4], axis=1, keepdims=True)
    r = rot[:, 4:] / np.linalg.norm(rot[:, 4:], axis=1, keepdims=True)
    out = np.empty((len(rot), 4, 4))
    for i in range(len(rot)):
        a, b, c, d = l[i]
        p, q, rr, s = r[i]
        Ml = np.array([[a, -b, -c, -d], [b, a, -d, c], [c, d, a, -b], [d, -c, b, a]])
        Mr = np.array([[p, q, rr, s], [-q, p, -s, rr], [-rr, s, p, -q], [-s, -rr, q, p]])
        out[i] = (Ml @ Mr)[::-1, ::-1]
    return out


def np_quat_R(q: np.ndarray) -> np.ndarray:
    """Standard rotation matrix of a unit (w, x, y, z) quaternion (REFERENCE 1.1)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def np_slice(model: str, p: dict, t: float, time_duration=None, prefilter_var=0.0) -> dict:
    """Paper slicing on float64 numpy parameters; returns the kept rows' values and the keep mask."""
    R = np_rotor_M(p["rot"]) if model == "rotor" else np_yang_R(p["rot"])
    L = R @ (np.eye(4)[None] * p["scales"][:, None, :])  # R S
    sig = L @ L.transpose(0, 2, 1)
    s_tt = sig[:, 3, 3]
    s_xt = sig[:, :3, 3]
    cov3 = sig[:, :3, :3] - s_xt[:, :, None] * s_xt[:, None, :] / s_tt[:, None, None]
    dt = t - p["times"]
    mean = p["means"] + s_xt / s_tt[:, None] * dt[:, None]
    if model == "rotor":
        w = 1.0 / s_tt
        shift = 0.5 * w * dt**2
        keep = shift < 16
        opac = p["opac"] * np.exp(-shift)
        sh = p["sh"][:, 0]
    else:
        var = s_tt + (prefilter_var if prefilter_var > 0 else 0.0)
        marginal = np.exp(-0.5 * dt**2 / var)
        keep = marginal > 0.05
        opac = p["opac"] * marginal
        L_dur = time_duration[1] - time_duration[0]
        dt_c = p["times"] - t  # colour uses dt = t_i - t (FORMATS 3)
        sh = sum(np.cos(2 * np.pi * n * dt_c / L_dur)[:, None, None] * p["sh"][:, n]
                 for n in range(p["sh"].shape[1]))
    return {"keep": keep, "cov3": cov3[keep], "means": mean[keep], "opac": opac[keep], "sh": sh[keep]}


# ------------------------------------------------------------------ random scenes

def random_params(model: str, n: int, seed: int, time_blocks: int = 3) -> dict:
    rng = np.random.default_rng(seed)
    p = {
        "means": rng.uniform(-1, 1, (n, 3)),
        "times": rng.uniform(0, 1, n),
        "scales": np.exp(np.concatenate([rng.normal(-3, 0.5, (n, 3)),
                                         rng.normal(math.log(0.15), 0.6, (n, 1))], 1)),
        "opac": 1 / (1 + np.exp(-rng.normal(0, 1.5, n))),
    }
    if model == "rotor":
        # raw rotors near a 3D rotation with a few percent of space-time mixing, unnormalized
        r = np.concatenate([rng.normal(0, 0.5, (n, 4)) + [0.8, 0, 0, 0], rng.normal(0, 0.15, (n, 4))], 1)
        p["rot"] = r
        p["sh"] = rng.normal(0, 0.3, (n, 1, 16, 3))
    else:
        p["rot"] = rng.normal(0, 1, (n, 8))
        p["rot"][:, :4] /= np.linalg.norm(p["rot"][:, :4], axis=1, keepdims=True)
        p["rot"][:, 4:] /= np.linalg.norm(p["rot"][:, 4:], axis=1, keepdims=True)
        p["sh"] = rng.normal(0, 0.3, (n, time_blocks, 16, 3))
    return p


def yang_kw(model: str) -> dict:
    return {"time_duration": (0.0, 1.0)} if model == "yang" else {}


def scene_from(model: str, p: dict, dtype=torch.float64, **kw) -> Gaussian4DScene:
    def T(a):
        return torch.tensor(a, dtype=dtype)
    return Gaussian4DScene(model, T(p["means"]), T(p["times"]), T(p["scales"]), T(p["rot"]),
                           T(p["opac"]), T(p["sh"]), **kw)


# ------------------------------------------------------------------ rotation matrices

def test_rotor_from_3d_quaternion_is_that_rotation():
    # quaterion2rotor (REFERENCE 3.2): (a, b_xy, b_xz, b_yz) = (w, -z, y, -x), the rest 0.
    rng = np.random.default_rng(0)
    q = rng.normal(size=(20, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r = np.zeros((20, 8))
    r[:, 0], r[:, 1], r[:, 2], r[:, 3] = q[:, 0], -q[:, 3], q[:, 2], -q[:, 1]
    M = rotor_matrix(torch.tensor(r)).numpy()
    for i in range(20):
        np.testing.assert_allclose(M[i, :3, :3], np_quat_R(q[i]), atol=1e-12)
        np.testing.assert_allclose(M[i, 3], [0, 0, 0, 1], atol=1e-12)
    # unnormalized rotors scale the matrix by |r|^2 (the reference feeds them raw)
    M2 = rotor_matrix(torch.tensor(2 * r)).numpy()
    np.testing.assert_allclose(M2, 4 * M, atol=1e-12)


def test_rotor_matrix_matches_reference_and_is_a_rotation_once_normalized():
    rng = np.random.default_rng(1)
    r = rng.normal(size=(64, 8))
    np.testing.assert_allclose(rotor_matrix(torch.tensor(r)).numpy(), np_rotor_M(r), atol=1e-12)
    M = rotor_matrix(torch.tensor(np_rotornorm(r))).numpy()
    np.testing.assert_allclose(M @ M.transpose(0, 2, 1), np.broadcast_to(np.eye(4), M.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(M), 1.0, atol=1e-9)


def test_yang_matrix_matches_reference_and_is_a_rotation():
    rng = np.random.default_rng(2)
    rot = rng.normal(size=(64, 8))  # unnormalized on purpose: the reference normalizes
    R = yang_matrix(torch.tensor(rot)).numpy()
    np.testing.assert_allclose(R, np_yang_R(rot), atol=1e-12)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(4), R.shape), atol=1e-12)


def test_time_rows_equal_row_3():
    rot = torch.randn(50, 8, dtype=torch.float64)
    torch.testing.assert_close(rotor_time_row(rot), rotor_matrix(rot)[:, 3])
    torch.testing.assert_close(yang_time_row(rot), yang_matrix(rot)[:, 3])


# ------------------------------------------------------------------ slicing vs numpy

@pytest.mark.parametrize("model", ["rotor", "yang"])
@pytest.mark.parametrize("t", [0.0, 0.37, 0.9])
def test_slice_matches_numpy_float64(model, t):
    p = random_params(model, 400, seed=int(t * 100) + (0 if model == "rotor" else 50))
    kw = {"time_duration": (0.0, 1.5), "prefilter_var": 0.001} if model == "yang" else {}
    ref = np_slice(model, p, t, **kw)
    out = scene_from(model, p, **kw).slice(t, drop_invisible=False)
    assert 0 < len(out) < 400 and len(out) == int(ref["keep"].sum())
    for name, got in (("cov3", out.covars), ("means", out.means), ("opac", out.opacities), ("sh", out.sh)):
        np.testing.assert_allclose(got.numpy(), ref[name], rtol=1e-5, atol=1e-10, err_msg=name)
    # colour evaluated in the conditioned mean's direction, as the rasterizer will
    cam = np.array([0.3, -2.0, 1.0])
    d = ref["means"] - cam
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    rgb_ref = np.einsum("nk,nkc->nc", np_sh_basis(d), ref["sh"]) + 0.5
    rgb = np.einsum("nk,nkc->nc", np_sh_basis(d), out.sh.numpy()) + 0.5
    np.testing.assert_allclose(rgb, rgb_ref, atol=1e-10)
    # the placeholders: identity quats, scales = sqrt(diag Sigma3)
    assert torch.all(out.quats[:, 0] == 1) and torch.all(out.quats[:, 1:] == 0)
    np.testing.assert_allclose(out.scales.numpy() ** 2, np.diagonal(ref["cov3"], axis1=1, axis2=2), rtol=1e-9)


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_slice_float32_close_to_numpy(model):
    p = random_params(model, 400, seed=7)
    kw = {"time_duration": (0.0, 1.0)} if model == "yang" else {}
    ref = np_slice(model, p, 0.5, **kw)
    out = scene_from(model, p, dtype=torch.float32, **kw).slice(0.5, drop_invisible=False)
    assert len(out) == int(ref["keep"].sum())
    out.validate()
    cov_scale = np.abs(ref["cov3"]).max(axis=(1, 2), keepdims=True)
    assert np.abs(out.covars.numpy() - ref["cov3"]).max() <= 1e-5 * max(1.0, float(cov_scale.max()))
    assert np.all(np.abs(out.covars.numpy() - ref["cov3"]) <= 1e-4 * cov_scale + 1e-12)
    np.testing.assert_allclose(out.means.numpy(), ref["means"], atol=1e-5)
    np.testing.assert_allclose(out.opacities.numpy(), ref["opac"], atol=1e-5)
    np.testing.assert_allclose(out.sh.numpy(), ref["sh"], atol=1e-5)
    # the conditioned covariances stay positive semi-definite in float32
    assert torch.linalg.eigvalsh(out.covars.double()).min() > -1e-9


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_drop_invisible_removes_only_invisible(model):
    p = random_params(model, 600, seed=3)
    kw = {"time_duration": (0.0, 1.0)} if model == "yang" else {}
    sc = scene_from(model, p, **kw)
    full = sc.slice(0.4, drop_invisible=False)
    fast = sc.slice(0.4)
    keep_full = sc.visible_at(0.4, drop_invisible=False)
    keep_fast = sc.visible_at(0.4)
    assert torch.all(keep_full | ~keep_fast)  # fast keeps a subset
    dropped = keep_full & ~keep_fast
    assert dropped.any()
    # everything dropped on top of the model's cut would be drawn with alpha < 1/255
    assert full.opacities[dropped[keep_full]].max() < 1 / 255
    assert fast.opacities.min() >= 1 / 255 * (1 - 1e-9)


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_temporal_extent_matches_precull(model):
    p = random_params(model, 500, seed=4)
    sc = scene_from(model, p, **({"time_duration": (0.0, 1.0)} if model == "yang" else {}))
    lo, hi = sc.temporal_extent()
    for t in np.linspace(-0.5, 1.5, 21):
        inside = (lo <= t) & (t <= hi)
        vis = sc.visible_at(float(t))
        # equal except within rounding of the interval's ends
        near_edge = torch.minimum((lo - t).abs(), (hi - t).abs()) < 1e-9
        assert torch.all((inside == vis) | near_edge)
    t0, t1 = sc.time_range()
    assert t0 == 0.0 and t1 == 1.0 if model == "yang" else (-0.1 < t0 < 0.1 and 0.9 < t1 < 1.1)


def test_sigma_tt_cache_follows_in_place_changes():
    p = random_params("rotor", 50, seed=5)
    sc = scene_from("rotor", p)
    a = sc.sigma_tt().clone()
    with torch.no_grad():
        sc.scales[:, 3] *= 2
    b = sc.sigma_tt()
    assert not torch.allclose(a, b)
    sc.scales = sc.scales.clone()
    torch.testing.assert_close(sc.sigma_tt(), b)


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_slice_is_differentiable(model):
    p = random_params(model, 200, seed=6)
    sc = scene_from(model, p, dtype=torch.float32, **yang_kw(model))
    for name in ("means", "times", "scales", "rotations", "opacities", "sh"):
        getattr(sc, name).requires_grad_(True)
    out = sc.slice(0.5)
    loss = out.means.sum() + out.covars.sum() * 100 + out.opacities.sum() + out.sh.sum()
    loss.backward()
    for name in ("means", "times", "scales", "rotations", "opacities", "sh"):
        g = getattr(sc, name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


# ------------------------------------------------------------------ degenerate inputs

@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_time_far_outside_range_gives_empty_scene(model):
    p = random_params(model, 100, seed=8)
    sc = scene_from(model, p, dtype=torch.float32, **yang_kw(model))
    for t in (1e4, -1e4, math.inf):
        out = sc.slice(t)
        assert isinstance(out, GaussianScene) and len(out) == 0
        out.validate()
        assert out.covars.shape == (0, 3, 3) and out.sh.shape == (0, 16, 3)


def test_zero_and_tiny_temporal_scale():
    p = random_params("rotor", 6, seed=9)
    p["rot"][:, 4:] = 0  # no space-time mixing: Sigma_tt = (|r|^2 s_t)^2
    p["scales"][:3, 3] = 0.0  # zero temporal scale: visible at no time
    p["scales"][3:, 3] = 1e-12  # tiny: visible only at t_i
    p["opac"][:] = 0.9
    sc = scene_from("rotor", p, dtype=torch.float32)
    out = sc.slice(float(p["times"][4]))
    assert len(out) == 1  # only Gaussian 4, exactly at its time
    assert torch.isfinite(out.covars).all() and torch.isfinite(out.means).all()
    np.testing.assert_allclose(out.means[0].numpy(), p["means"][4], atol=1e-6)
    assert len(sc.slice(float(p["times"][4]) + 1e-3)) == 0
    lo, hi = sc.temporal_extent()
    assert torch.all(torch.isinf(lo[:3])) and torch.all(lo[:3] > hi[:3])
    # the same with Yang's parameterization
    q = random_params("yang", 4, seed=10, time_blocks=1)
    q["scales"][:, 3] = 0.0
    q["rot"][:, :4] = [1, 0, 0, 0]
    q["rot"][:, 4:] = [1, 0, 0, 0]
    assert len(scene_from("yang", q).slice(float(q["times"][0]))) == 0


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_all_culled_renders_background(model):
    from renderer import RenderSettings, get_renderer

    p = random_params(model, 50, seed=11)
    sc = scene_from(model, p, dtype=torch.float32, **yang_kw(model))
    r = get_renderer("torch")
    if not r.supports(sc):
        pytest.skip("the torch Gaussian rasterizer (renderer/torch_backend/gaussians.py) is not there yet")
    bg = (0.2, 0.4, 0.6)
    frame = r.render(sc, orbit_camera(width=32, height=24), RenderSettings(background=bg, time=500.0))
    torch.testing.assert_close(frame.rgb, torch.tensor(bg).expand(24, 32, 3), atol=1e-6, rtol=0)


@pytest.mark.parametrize("model", ["rotor", "yang"])
def test_render_through_torch_backend(model):
    """The torch backend slices at settings.time; the image equals rendering the numpy slice."""
    from renderer import RenderSettings, get_renderer

    p = random_params(model, 300, seed=12)
    p["scales"][:, :3] *= 3  # bigger splats: a visible image at 64x48
    kw = {"time_duration": (0.0, 1.0)} if model == "yang" else {}
    sc = scene_from(model, p, dtype=torch.float32, **kw)
    r = get_renderer("torch")
    if not r.supports(sc):
        pytest.skip("the torch Gaussian rasterizer (renderer/torch_backend/gaussians.py) is not there yet")
    cam = orbit_camera(distance=3.0, width=64, height=48)
    settings = RenderSettings(background=(0, 0, 0), time=0.45)
    got = r.render(sc, cam, settings)
    ref = np_slice(model, p, 0.45, **kw)
    n = len(ref["means"])
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    ref_scene = GaussianScene(f32(ref["means"]), quats, torch.ones(n, 3), f32(ref["opac"]), f32(ref["sh"]),
                              covars=f32(ref["cov3"]))
    want = r.render(ref_scene, cam, settings)
    assert float(want.alpha.mean()) > 0.02  # the test image is not empty
    value = psnr(got.rgb, want.rgb)
    if value < 50:
        save_diff(f"gaussians4d_render_{model}", got.rgb, want.rgb)
    assert value >= 50


def test_gemm_rotation_paths_equal_the_explicit_formulas():
    from scenes.gaussians4d import rotation_matrix, time_row

    rot = torch.randn(300, 8, dtype=torch.float64) * 1.3
    torch.testing.assert_close(rotation_matrix("rotor", rot), rotor_matrix(rot))
    torch.testing.assert_close(rotation_matrix("yang", rot), yang_matrix(rot))
    torch.testing.assert_close(time_row("rotor", rot), rotor_time_row(rot))
    torch.testing.assert_close(time_row("yang", rot), yang_time_row(rot))
    r32 = rot.float()
    torch.testing.assert_close(rotation_matrix("rotor", r32), rotor_matrix(r32), rtol=1e-5, atol=1e-5)
