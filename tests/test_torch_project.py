"""Projection and SH colours against gsplat 1.5.3's pure-torch reference (REFERENCE 1.1, 1.2)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import orbit_camera, random_gaussians

from renderer.torch_backend.project import MIP_MIN_RATIO, project_gaussians, quat_scale_to_covar
from renderer.torch_backend.sh import SH_C0, eval_sh, sh_basis
from renderer.types import Camera

gs = pytest.importorskip("gsplat.cuda._torch_impl")

W, H = 70, 50


def scene_and_camera(dtype=torch.float64):
    """Random Gaussians plus hand-placed ones: behind the camera, at the near plane, and far
    outside the image (so that the guard-band clamp of the Jacobian is active)."""
    scene = random_gaussians(300, seed=7, sh_degree=3, log_scale=-2.5).map(lambda t: t.to(dtype))
    cam0 = orbit_camera(width=W, height=H, distance=3.0)
    # Off-centre principal point and non-square pixels exercise both sides of the guard band.
    cam = Camera(W, H, cam0.fx, cam0.fy * 1.1, cam0.cx + 6.0, cam0.cy - 4.0, cam0.T_world_camera)
    c2w = torch.as_tensor(cam.T_world_camera, dtype=dtype)
    rot, eye = c2w[:3, :3], c2w[:3, 3]
    extra_cam = torch.tensor([
        [0.0, 0.0, -1.0],  # behind
        [0.3, -0.2, -0.005],  # just behind
        [0.0, 0.0, 0.005],  # in front but closer than near = 0.01
        [0.0, 0.0, 0.02],  # just past near
        [2.5, 0.3, 2.0],  # x/z = 1.25, far past the right edge (lim ~ 0.6)
        [-2.8, 0.1, 2.0],  # far past the left edge
        [0.2, 1.9, 2.0],  # below the image
        [0.1, -2.2, 2.0],  # above
        [1.5, 1.1, 3.0],  # outside a corner, but big enough to reach into the image
    ], dtype=dtype)
    extra = extra_cam @ rot.T + eye
    n = extra.shape[0]
    g = torch.Generator().manual_seed(1)
    scene.means = torch.cat([scene.means, extra])
    scene.quats = torch.cat([scene.quats, torch.randn(n, 4, generator=g, dtype=torch.float64).to(dtype)])
    scene.scales = torch.cat([scene.scales, torch.full((n, 3), 0.3, dtype=dtype)])
    scene.opacities = torch.cat([scene.opacities, torch.full((n,), 0.8, dtype=dtype)])
    scene.sh = torch.cat([scene.sh, torch.randn(n, 16, 3, generator=g, dtype=torch.float64).to(dtype) * 0.3])
    return scene, cam


def intrinsics(cam: Camera, dtype):
    return torch.tensor([[cam.fx, 0, cam.cx], [0, cam.fy, cam.cy], [0, 0, 1]], dtype=dtype)


def test_quat_scale_to_covar_matches_gsplat():
    g = torch.Generator().manual_seed(0)
    quats = torch.randn(50, 4, generator=g, dtype=torch.float64) * 3  # unnormalized on purpose
    scales = torch.rand(50, 3, generator=g, dtype=torch.float64) + 0.01
    ref, _ = gs._quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    torch.testing.assert_close(quat_scale_to_covar(quats, scales), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
def test_projection_matches_gsplat(dtype, rtol):
    scene, cam = scene_and_camera(dtype)
    covars = quat_scale_to_covar(scene.quats, scene.scales)
    vm = torch.as_tensor(cam.T_camera_world, dtype=dtype)
    K = intrinsics(cam, dtype)
    p = project_gaussians(scene.means, covars, vm, cam.fx, cam.fy, cam.cx, cam.cy, W, H, antialias="mip")
    radii_g, means2d_g, depths_g, conics_g, comp_g = gs._fully_fused_projection(
        scene.means, covars, vm[None], K[None], W, H, eps2d=0.3, near_plane=0.01, far_plane=1e10,
        calc_compensations=True)
    means_c, covars_c = gs._world_to_cam(scene.means, covars, vm[None])
    _, cov2d_g = gs._persp_proj(means_c, covars_c, K[None], W, H)  # undilated
    means2d_g, depths_g, conics_g, comp_g, cov2d_g = (
        t[0] for t in (means2d_g, depths_g, conics_g, comp_g, cov2d_g))

    torch.testing.assert_close(p.depths, depths_g, rtol=rtol, atol=0)
    front = depths_g > 0.01
    n = scene.means.shape[0]
    # The hand-placed rows: 0..3 in the list above are behind or before the near plane.
    assert not p.valid[n - 9:n - 6].any() and p.valid[n - 6]
    assert (p.radii[~front] == 0).all() and not p.valid[~front].any()
    assert front.sum() >= n - 4

    rel = dict(rtol=rtol, atol=rtol * 1e-3)
    torch.testing.assert_close(p.means2d[front], means2d_g[front], **rel)
    cov_ref = torch.stack([cov2d_g[:, 0, 0] + 0.3, cov2d_g[:, 0, 1], cov2d_g[:, 1, 1] + 0.3], dim=-1)
    scale = cov_ref.abs().amax(-1, keepdim=True)  # compare relative to each matrix's size
    torch.testing.assert_close((p.cov2d / scale)[front], (cov_ref / scale)[front], rtol=rtol, atol=rtol)
    ok = p.valid
    cscale = conics_g.abs().amax(-1, keepdim=True)
    torch.testing.assert_close((p.conics / cscale)[ok], (conics_g / cscale)[ok], rtol=rtol, atol=rtol)
    # Mip compensation: gsplat 1.5.3 floors the ratio at 0, REFERENCE at 0.005^2.
    want = torch.sqrt(torch.clamp_min(comp_g**2, MIP_MIN_RATIO))
    torch.testing.assert_close(p.opacity_scale[ok], want[ok], rtol=rtol * 10, atol=rtol * 1e-2)

    # The guard band matters for the far-off rows: without the clamp their cov2d would differ.
    x, y, z = means_c[0].unbind(-1)
    lim_x = (W - cam.cx) / cam.fx + 0.3 * W / (2 * cam.fx)
    assert bool((x / z > lim_x)[n - 5]), "the right-edge row should be clamped"
    # The corner Gaussian reaches into the image and is kept; the ones far off are culled.
    assert p.valid[n - 1] and p.radii[n - 1] > 0


def test_radii_follow_inria_formula():
    scene, cam = scene_and_camera(torch.float64)
    covars = quat_scale_to_covar(scene.quats, scene.scales)
    vm = torch.as_tensor(cam.T_camera_world, dtype=torch.float64)
    p = project_gaussians(scene.means, covars, vm, cam.fx, cam.fy, cam.cx, cam.cy, W, H)
    gx, gy = math.ceil(W / 16), math.ceil(H / 16)
    for i in range(len(scene)):
        if not p.valid[i]:
            continue
        a, b, c = p.cov2d[i].tolist()
        h = (a + c) / 2
        lam = h + math.sqrt(max(0.1, h * h - (a * c - b * b)))
        assert int(p.radii[i]) == math.ceil(3 * math.sqrt(lam))
        mx, my = p.means2d[i].tolist()
        r = int(p.radii[i])
        # Valid means the getRect box touches a tile.
        x0, x1 = min(gx, max(0, math.floor((mx - r) / 16))), min(gx, max(0, math.floor((mx + r + 15) / 16)))
        y0, y1 = min(gy, max(0, math.floor((my - r) / 16))), min(gy, max(0, math.floor((my + r + 15) / 16)))
        assert x1 > x0 and y1 > y0
    assert p.radii.dtype == torch.int32 and (p.radii[~p.valid] == 0).all()
    # Classic mode leaves opacity alone.
    assert torch.all(p.opacity_scale == 1)


def test_projection_far_plane_and_degenerate():
    means = torch.tensor([[0.0, 0.0, 5.0], [0.0, 0.0, 50.0], [0.0, 0.0, 2.0]])
    covars = torch.eye(3).expand(3, 3, 3).clone() * 0.01
    covars[2] = 0.0  # a zero covariance still gets the 0.3 px dilation: valid
    p = project_gaussians(means, covars, torch.eye(4), 100.0, 100.0, 32.0, 24.0, 64, 48, far=10.0)
    assert p.valid.tolist() == [True, False, True]
    assert int(p.radii[2]) == math.ceil(3 * math.sqrt(0.3 + math.sqrt(0.1)))
    torch.testing.assert_close(p.means2d[0], torch.tensor([32.0, 24.0]))
    with pytest.raises(ValueError):
        project_gaussians(means, covars, torch.eye(4), 100.0, 100.0, 32.0, 24.0, 64, 48, antialias="bogus")


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_sh_matches_gsplat(degree):
    g = torch.Generator().manual_seed(degree)
    sh = torch.randn(200, 16, 3, generator=g, dtype=torch.float64) * 0.5
    dirs = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=-1)
    ref = torch.clamp_min(gs._spherical_harmonics(degree, dirs, sh) + 0.5, 0.0)
    torch.testing.assert_close(eval_sh(sh, dirs, degree), ref, rtol=1e-10, atol=1e-12)
    # Basis functions one by one (INRIA order), against Sloan's recurrences in gsplat.
    nb = (degree + 1) ** 2
    ref_basis = gs._eval_sh_bases_fast(nb, dirs)
    torch.testing.assert_close(sh_basis(dirs, degree), ref_basis, rtol=1e-10, atol=1e-12)
    # float32 within ~1e-5 relative
    ref32 = torch.clamp_min(gs._spherical_harmonics(degree, dirs.float(), sh.float()) + 0.5, 0.0)
    torch.testing.assert_close(eval_sh(sh.float(), dirs.float(), degree), ref32, rtol=1e-5, atol=1e-6)


def test_sh_constants_and_dc():
    assert SH_C0 == pytest.approx(1 / (2 * math.sqrt(math.pi)), rel=1e-15)
    sh = torch.zeros(3, 4, 3)
    sh[:, 0] = torch.tensor([[-10.0, 0.0, 1.0]]).expand(3, 3)
    out = eval_sh(sh, torch.nn.functional.normalize(torch.randn(3, 3), dim=-1), 1)
    np.testing.assert_allclose(out.numpy(), np.array([[0.0, 0.5, 0.5 + SH_C0]] * 3), rtol=1e-6)
    with pytest.raises(ValueError):
        eval_sh(torch.zeros(2, 4, 3), torch.zeros(2, 3), 2)  # degree 2 needs 9 coefficients
