"""Torch voxel ray marcher: interpolation, an analytic sphere, gradients, counters, sparse == dense."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from conftest import orbit_camera, psnr, save_diff

from renderer import RenderSettings, get_renderer
from renderer.torch_backend.voxels import (
    _corners,
    camera_rays,
    interp_density,
    interp_features,
    render_voxels,
)
from scenes import VoxelGridScene
from scenes.voxels import procedural_shell


def test_trilinear_matches_grid_sample_align_corners():
    g = torch.Generator().manual_seed(0)
    dens = torch.randn(5, 6, 7, generator=g)
    feats = torch.randn(4, 5, 6, 7, generator=g)
    lo, hi = torch.tensor([-1.0, -0.5, 0.0]), torch.tensor([1.0, 2.0, 0.7])
    s = VoxelGridScene(dens, feats, lo, hi)
    pts = lo + torch.rand(500, 3, generator=g) * (hi - lo)
    idx, w = _corners(s, pts)
    # DVGO lib/grid.py DenseGrid.forward: normalise, flip to (z, y, x), grid_sample(align_corners=True).
    ind = (((pts - lo) / (hi - lo)).flip(-1) * 2 - 1).reshape(1, 1, 1, -1, 3)
    ref_d = F.grid_sample(dens[None, None], ind, mode="bilinear", align_corners=True).reshape(-1)
    ref_f = F.grid_sample(feats[None], ind, mode="bilinear", align_corners=True).reshape(4, -1).T
    torch.testing.assert_close(interp_density(s, idx, w), ref_d, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(interp_features(s, idx, w), ref_f, atol=2e-6, rtol=1e-5)


def test_uniform_sphere_matches_analytic_chords():
    """Uniform sigma in a sphere: alpha = 1 - exp(-sigma * chord) per pixel.

    Tolerance: the marcher's rectangle rule misplaces each boundary crossing by up to one step, so
    the optical depth is off by at most sigma * step per crossing (two crossings: 2*sigma*step =
    0.06 here) and alpha by less than that; pixels whose ray passes within 2 voxels of the
    silhouette (where the chord changes fastest and the voxelised edge is blurred) are excluded.
    """
    res, r, sigma = 64, 0.7, 1.5
    ax = torch.linspace(-1.0, 1.0, res)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1)
    h = 2.0 / (res - 1)
    # Linear ramp of one voxel across the surface: its integral across the boundary is centred on r.
    dens = sigma * (0.5 + (r - xyz.norm(dim=-1)) / h).clamp(0, 1)
    colour = torch.tensor([0.9, 0.4, 0.1])
    feats = torch.logit(colour)[:, None, None, None].expand(3, res, res, res).contiguous()
    s = VoxelGridScene(
        dens,
        feats,
        torch.full((3,), -1.0),
        torch.full((3,), 1.0),
        color_mode="sigmoid_k0",
        density_activation="relu",
        voxel_size=h,
        voxel_size_ratio=h,
        stepsize=0.5,
        fast_color_thres=0.0,
        stop_thresh=1e-4,
    )
    s.validate()
    cam = orbit_camera(3.0, 20, 15, 64, 48, fov_y_deg=45)
    bg = torch.tensor([0.0, 0.0, 1.0])
    frame = render_voxels(s, cam, RenderSettings(background=tuple(bg.tolist())), "cpu")
    o, d, _ = camera_rays(cam)
    tc = -(o * d).sum(-1)  # closest approach along each ray to the sphere centre (origin)
    b2 = (o * o).sum() - tc**2
    chord = 2 * torch.sqrt((r * r - b2).clamp_min(0))
    alpha = 1 - torch.exp(-sigma * chord)
    ref = (alpha[:, None] * colour + (1 - alpha[:, None]) * bg).reshape(48, 64, 3)
    keep = ((b2.sqrt() - r).abs() > 2 * h).reshape(48, 64)
    err = (frame.rgb - ref).abs().amax(-1)
    step = s.step_world()
    if not float(err[keep].max()) < 2 * sigma * step:
        save_diff("voxels_sphere_analytic", frame.rgb, ref)
    assert float(err[keep].max()) < 2 * sigma * step
    assert float(err[keep].mean()) < 0.25 * sigma * step
    torch.testing.assert_close(
        frame.alpha[..., 0][keep], alpha.reshape(48, 64)[keep], atol=2 * sigma * step, rtol=0
    )


def test_gradients_reach_grids_and_mlp():
    s = procedural_shell(16, fine=True, seed=2)
    s.density.requires_grad_(True)
    s.features.requires_grad_(True)
    for w, b in s.mlp:
        w.requires_grad_(True)
        b.requires_grad_(True)
    frame = render_voxels(s, orbit_camera(3.0, 10, 10, 24, 18), RenderSettings(background=(1, 1, 1)), "cpu")
    frame.rgb.sum().backward()
    assert s.density.grad is not None and float(s.density.grad.abs().sum()) > 0
    assert s.features.grad is not None and float(s.features.grad.abs().sum()) > 0
    assert all(float(w.grad.abs().sum()) > 0 for w, _ in s.mlp)


def test_counters_add_up_and_modes():
    s = procedural_shell(24, fine=True, seed=1)
    cam = orbit_camera(3.0, 40, 10, 40, 30)
    r = get_renderer("torch")
    f = r.render(s, cam, RenderSettings())
    c = f.stats.counters
    assert c["rays"] == 40 * 30 and c["rays_hit"] > 0
    assert c["samples"] == c["samples_visited"] + c["samples_skipped_early"]
    assert c["samples_visited"] == c["samples_skipped_mask"] + c["density_lookups"]
    assert c["density_lookups"] >= c["samples_skipped_alpha"] + c["samples_shaded"]
    assert c["samples_skipped_mask"] > 0 and c["samples_skipped_early"] > 0 and c["samples_skipped_alpha"] > 0
    assert c["mlp_macs"] == c["samples_shaded"] * (39 * 128 + 128 * 128 + 128 * 3)
    assert "march" in f.stats.stages_ms and f.stats.backend == "torch"
    fa = r.render(s, cam, RenderSettings(mode="alpha", background=(0, 0, 0)))
    torch.testing.assert_close(fa.rgb, f.alpha.expand(-1, -1, 3))
    fd = r.render(s, cam, RenderSettings(mode="depth"))
    hit = f.alpha[..., 0] > 0.5
    z = fd.depth[..., 0][hit]
    assert float(z.min()) > 3.0 - 0.8 and float(z.max()) < 3.0 + 0.8  # within the shell (radius 0.6)


def test_sparse_links_equal_dense():
    g = torch.Generator().manual_seed(4)
    X, Y, Z = 9, 8, 7
    dens = torch.relu(torch.randn(X, Y, Z, generator=g) * 3)
    sh = torch.randn(27, X, Y, Z, generator=g) * 0.3
    empty = torch.rand(X, Y, Z, generator=g) < 0.4
    dens[empty] = 0
    sh[:, empty] = 0
    lo, hi = torch.tensor([-1.0, -1.0, -0.8]), torch.tensor([1.0, 0.9, 1.0])
    common = dict(
        color_mode="sh",
        density_activation="relu",
        voxel_size=0.25,
        voxel_size_ratio=0.25,
        fast_color_thres=0.0,
        stop_thresh=1e-7,
    )
    dense = VoxelGridScene(dens, sh, lo, hi, **common)
    links = torch.full((X, Y, Z), -1, dtype=torch.int32)
    occ = (~empty).nonzero()
    perm = torch.randperm(len(occ), generator=g)  # storage order differs from lattice order
    links[occ[perm, 0], occ[perm, 1], occ[perm, 2]] = torch.arange(len(occ), dtype=torch.int32)
    sparse = VoxelGridScene(
        dens[~empty][perm].contiguous(), sh[:, ~empty].T[perm].contiguous(), lo, hi, links=links, **common
    )
    sparse.validate()
    cam = orbit_camera(3.5, 25, 30, 32, 24)
    a = render_voxels(dense, cam, RenderSettings(background=(0.2, 0.2, 0.2)), "cpu")
    b = render_voxels(sparse, cam, RenderSettings(background=(0.2, 0.2, 0.2)), "cpu")
    assert psnr(a.rgb, b.rgb) > 100
    assert a.stats.counters == b.stats.counters
    assert len(sparse) == len(occ) and len(dense) == X * Y * Z
    assert np.allclose(dense.bounds(), np.stack([lo.numpy(), hi.numpy()]))
    assert math.isclose(float(a.alpha.mean()), float(b.alpha.mean()), rel_tol=1e-5)
