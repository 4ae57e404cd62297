"""Render a GaussianScene with the torch reference rasterizer (project -> sort -> bin -> blend).

Modes:
- "rgb": SH colours over the background.
- "alpha": rgb = alpha * white + (1 - alpha) * background.
- "depth": Frame.depth is the blended view z divided by alpha (0 where alpha <= 1e-6); rgb is that
  depth colour-mapped (renderer.colormap.depth_to_rgb) over the background.
- "points": each Gaussian with opacity >= settings.min_opacity an opaque disc of settings.point_size
  px radius in its DC colour; the nearest wins (a z-buffer, not differentiable).
- "ellipsoids": each Gaussian with opacity >= settings.min_opacity an opaque ellipsoid at
  settings.ellipsoid_sigma, ray cast per pixel, DC colour with headlight shading; nearest wins.
- "normals": the same ellipsoids, rgb = world normal * 0.5 + 0.5; Frame.normals is filled.
Every mode fills Frame.alpha and Frame.depth. "points", "ellipsoids" and "normals" are z-buffers
(no gradients). The dtype follows scene.means (float64 works).
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from scenes.gaussians import GaussianScene

from .. import colormap
from ..types import Camera, Frame, FrameStats, RenderSettings
from .project import project_gaussians, quat_scale_to_covar
from .rasterize import rasterize
from .sh import SH_C0, eval_sh
from .tiles import bin_sorted, depth_order, tile_rects

TILE = 16
DEPTH_EPS = 1e-6  # alpha below which a pixel has no depth


class _Clock:
    """Wall-clock stage timer; synchronizes CUDA so that each stage owns its kernels."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.ms: dict[str, float] = {}
        self._t = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self, name: str) -> None:
        t = self._now()
        self.ms[name] = self.ms.get(name, 0.0) + (t - self._t) * 1e3
        self._t = t


def render_gaussians(scene: GaussianScene, camera: Camera, settings: RenderSettings,
                     device: torch.device | str = "cpu") -> Frame:
    """Render `scene` seen by `camera`; gradients flow to the scene tensors."""
    device = torch.device(device)
    if settings.mode not in ("rgb", "alpha", "depth", "points", "ellipsoids", "normals"):
        raise ValueError(f"mode {settings.mode} is not supported by the torch backend")
    clock = _Clock(device)
    dtype = scene.means.dtype if scene.means.dtype in (torch.float32, torch.float64) else torch.float32
    W, H = camera.width, camera.height
    bg = torch.as_tensor(settings.background, dtype=dtype, device=device)

    means = scene.means.to(device, dtype)
    if scene.covars is not None:
        covars = scene.covars.to(device, dtype) * settings.splat_scale**2
    else:
        scales = scene.scales.to(device, dtype) * settings.splat_scale
        covars = quat_scale_to_covar(scene.quats.to(device, dtype), scales)
    viewmat = torch.as_tensor(camera.T_camera_world, dtype=dtype, device=device)
    proj = project_gaussians(means, covars, viewmat, camera.fx, camera.fy, camera.cx, camera.cy, W, H,
                             near=camera.near, far=camera.far, antialias=settings.antialias, tile=TILE)
    vis = torch.nonzero(proj.valid, as_tuple=False).flatten()
    n_vis = int(vis.numel())

    degree = scene.sh_degree
    if settings.sh_degree is not None:
        degree = max(0, min(settings.sh_degree, degree))
    sh = scene.sh.to(device, dtype)[vis]
    depths = proj.depths[vis]
    means2d = proj.means2d[vis]
    normals = None
    if settings.mode == "points":
        keep = scene.opacities.to(device)[vis] >= settings.min_opacity
        rgb = torch.clamp_min(SH_C0 * sh[:, 0] + 0.5, 0.0)  # DC colour only
        clock.lap("project")
        rgb_img, alpha, depth, counters = _render_points(means2d[keep], depths[keep], rgb[keep],
                                                          settings.point_size, W, H, bg, clock)
    elif settings.mode in ("ellipsoids", "normals"):
        keep = scene.opacities.to(device)[vis] >= settings.min_opacity
        vis = vis[keep]
        rgb = torch.clamp_min(SH_C0 * sh[keep, 0] + 0.5, 0.0)
        clock.lap("project")
        rgb_img, alpha, depth, normals, counters = _render_ellipsoids(
            means[vis].detach(), covars[vis].detach(), rgb.detach(), camera, settings.ellipsoid_sigma,
            bg, settings.mode == "normals", clock)
    else:
        campos = torch.as_tensor(camera.position, dtype=dtype, device=device)
        dirs = F.normalize(means[vis] - campos, dim=-1)
        rgb = eval_sh(sh, dirs, degree)
        conics = proj.conics[vis]
        opac = scene.opacities.to(device, dtype)[vis] * proj.opacity_scale[vis]
        clock.lap("project")

        order = depth_order(depths, torch.ones(n_vis, dtype=torch.bool, device=device))
        clock.lap("sort")
        rmin, rmax = tile_rects(means2d, proj.radii[vis], W, H, TILE)
        bins = bin_sorted(order, rmin, rmax, W, H, TILE)
        clock.lap("bin")

        feats = torch.cat([rgb, depths[:, None]], dim=-1)  # depth blends as a 4th channel
        image, alpha, counters = rasterize(means2d, conics, opac, feats, bins, W, H,
                                           background=torch.cat([bg, bg.new_zeros(1)]), tile=TILE)
        rgb_img, zsum = image[..., :3], image[..., 3:]
        has = alpha > DEPTH_EPS
        depth = torch.where(has, zsum / torch.where(has, alpha, torch.ones_like(alpha)), 0.0)
        if settings.mode == "alpha":
            rgb_img = alpha + (1.0 - alpha) * bg
        elif settings.mode == "depth":
            rng = settings.depth_range or colormap.auto_depth_range(scene.bounds(), camera.T_camera_world,
                                                                     camera.near)
            rgb_img = colormap.depth_to_rgb(depth.float(), alpha.float(), rng, bg.float()).to(dtype)
        clock.lap("blend")

    stats = FrameStats(stages_ms=clock.ms, counters={
        "visible": n_vis, "tile_pairs": counters["tile_pairs"], "blended_pairs": counters["blended_pairs"]})
    return Frame(rgb=rgb_img, alpha=alpha, depth=depth, normals=normals, stats=stats)


def _render_points(means2d: Tensor, depths: Tensor, rgb: Tensor, radius_px: float, W: int, H: int,
                   bg: Tensor, clock: _Clock) -> tuple[Tensor, Tensor, Tensor, dict]:
    """Opaque discs of `radius_px` (pixel centres within the radius), the nearest point wins.

    Not differentiable (a z-buffer). Returns rgb [H,W,3], alpha [H,W,1], depth [H,W,1], counters.
    """
    device, dtype = means2d.device, means2d.dtype
    order = torch.sort(depths.detach(), stable=True).indices  # rank 0 = nearest
    clock.lap("sort")
    r = max(float(radius_px), 0.5)
    k = int(math.ceil(r))
    off = torch.arange(-k, k + 1, device=device)
    oy, ox = torch.meshgrid(off, off, indexing="ij")
    ox, oy = ox.flatten(), oy.flatten()  # [S] pixel offsets of the square around the centre pixel
    m = means2d.detach()[order]
    cx, cy = torch.floor(m[:, 0]).long(), torch.floor(m[:, 1]).long()  # pixel holding the centre
    pxl, pyl = cx[:, None] + ox, cy[:, None] + oy  # [M, S]
    dxy2 = (pxl.to(dtype) + 0.5 - m[:, :1]) ** 2 + (pyl.to(dtype) + 0.5 - m[:, 1:]) ** 2
    hit = (dxy2 <= r * r) & (pxl >= 0) & (pxl < W) & (pyl >= 0) & (pyl < H)
    rank = torch.arange(order.numel(), device=device)[:, None].expand_as(pxl)
    pix, rank = (pyl * W + pxl)[hit], rank[hit]
    clock.lap("bin")
    best = torch.full((H * W,), order.numel(), dtype=torch.long, device=device)
    best = best.scatter_reduce(0, pix, rank, reduce="amin")
    cov = best < order.numel()
    src = order[best[cov]]
    rgb_img = bg.expand(H * W, 3).clone()
    rgb_img[cov] = rgb.detach()[src]
    depth = torch.zeros(H * W, 1, dtype=dtype, device=device)
    depth[cov] = depths.detach()[src][:, None]
    alpha = cov.to(dtype)[:, None]
    clock.lap("blend")
    counters = {"tile_pairs": int(pix.numel()), "blended_pairs": int(cov.sum())}
    return rgb_img.reshape(H, W, 3), alpha.reshape(H, W, 1), depth.reshape(H, W, 1), counters


def _render_ellipsoids(means: Tensor, covars: Tensor, rgb: Tensor, camera: Camera, sigma: float, bg: Tensor,
                       show_normals: bool, clock: _Clock, chunk_pairs: int = 4096):
    """Opaque k-sigma ellipsoids {x : (x - mu)^T Sigma^-1 (x - mu) <= k^2}, ray cast per pixel.

    The nearest hit wins (a z-buffer over the tile pairs, not differentiable). Shading is the DC
    colour times (0.25 + 0.75 max(0, n . -view)), a headlight; "normals" shows n * 0.5 + 0.5.
    Returns rgb, alpha, depth [H, W, 1] (view z of the hit), normals [H, W, 3] (world), counters.
    """
    device, dtype = means.device, means.dtype
    W, H = camera.width, camera.height
    n_px = W * H
    vm = torch.as_tensor(camera.T_camera_world, dtype=dtype, device=device)
    rot, trans = vm[:3, :3], vm[:3, 3]
    t = means @ rot.T + trans  # [M, 3] centres in camera space
    cov_c = rot @ covars @ rot.T
    # Screen bound for binning: the EWA footprint at k sigma, widened for the linearisation error.
    proj = project_gaussians(means, covars, vm, camera.fx, camera.fy, camera.cx, camera.cy, W, H,
                             near=camera.near, far=camera.far, eps2d=0.0)
    a, b, c = proj.cov2d.unbind(-1)
    lam = 0.5 * (a + c) + torch.sqrt(torch.clamp_min(0.25 * (a - c) ** 2 + b * b, 0.0))
    radii = torch.ceil(1.25 * sigma * torch.sqrt(lam) + 2.0)
    radii = torch.where(proj.valid, torch.nan_to_num(radii, nan=0.0), 0.0)
    order = depth_order(proj.depths, proj.valid & (radii > 0))
    rmin, rmax = tile_rects(proj.means2d, radii, W, H, TILE)
    bins = bin_sorted(order, rmin, rmax, W, H, TILE)
    clock.lap("bin")

    inv = torch.linalg.inv_ex(cov_c).inverse  # [M, 3, 3] = A; a flat ellipsoid gives inf/nan: no hit
    g = (inv @ t[:, :, None])[..., 0]  # A t
    gam = (t * g).sum(-1) - sigma * sigma  # t^T A t - k^2
    pair_tile = torch.repeat_interleave(torch.arange(bins.num_tiles, device=device), bins.counts)
    offs = torch.arange(TILE, device=device)
    best = torch.full((n_px,), torch.iinfo(torch.int64).max, dtype=torch.long, device=device)
    for p0 in range(0, bins.num_pairs, chunk_pairs):
        gid = bins.ids[p0:p0 + chunk_pairs]
        tl = pair_tile[p0:p0 + chunk_pairs]
        u = ((tl % bins.tiles_x)[:, None] * TILE + offs)  # [n, tile] pixel columns
        v = ((tl // bins.tiles_x)[:, None] * TILE + offs)  # [n, tile] pixel rows
        dx = ((u.to(dtype) + 0.5 - camera.cx) / camera.fx)[:, None, :]  # ray (dx, dy, 1)
        dy = ((v.to(dtype) + 0.5 - camera.cy) / camera.fy)[:, :, None]
        A = inv[gid]
        aa = (A[:, 0, 0, None, None] * dx * dx + 2 * A[:, 0, 1, None, None] * dx * dy
              + A[:, 1, 1, None, None] * dy * dy + 2 * A[:, 0, 2, None, None] * dx
              + 2 * A[:, 1, 2, None, None] * dy + A[:, 2, 2, None, None])  # d^T A d
        bb = g[gid, 0, None, None] * dx + g[gid, 1, None, None] * dy + g[gid, 2, None, None]  # d^T A t
        disc = bb * bb - aa * gam[gid, None, None]
        z = (bb - torch.sqrt(torch.clamp_min(disc, 0.0))) / aa  # nearer root; the ray's z is 1
        hit = (disc >= 0) & (z > camera.near) & (u < W)[:, None, :] & (v < H)[:, :, None]
        pix = (v[:, :, None] * W + u[:, None, :]).clamp(max=n_px - 1)  # [n, tile, tile]
        # Key: float32 depth bits (positive floats order as integers) above the Gaussian id.
        key = (z.float().view(torch.int32).long() << 32) | gid[:, None, None]
        best = best.scatter_reduce(0, pix[hit], key[hit], reduce="amin")
    clock.lap("blend")

    cov = best != torch.iinfo(torch.int64).max
    win = (best[cov] & 0xFFFFFFFF).long()
    z = (best[cov] >> 32).to(torch.int32).view(torch.float32).to(dtype)
    pix = torch.nonzero(cov, as_tuple=False).flatten()
    d = torch.stack([((pix % W).to(dtype) + 0.5 - camera.cx) / camera.fx,
                     ((pix // W).to(dtype) + 0.5 - camera.cy) / camera.fy, torch.ones_like(z)], dim=-1)
    n_cam = F.normalize((inv[win] @ (z[:, None] * d - t[win])[..., None])[..., 0], dim=-1)
    shade = 0.25 + 0.75 * torch.clamp_min((n_cam * -F.normalize(d, dim=-1)).sum(-1), 0.0)
    n_world = n_cam @ rot  # R^T n
    out = bg.expand(n_px, 3).clone()
    out[cov] = n_world * 0.5 + 0.5 if show_normals else rgb[win] * shade[:, None]
    normals = torch.zeros(n_px, 3, dtype=dtype, device=device)
    normals[cov] = n_world
    depth = torch.zeros(n_px, 1, dtype=dtype, device=device)
    depth[cov] = z[:, None]
    alpha = cov.to(dtype)[:, None]
    counters = {"tile_pairs": bins.num_pairs, "blended_pairs": int(cov.sum())}
    return (out.reshape(H, W, 3), alpha.reshape(H, W, 1), depth.reshape(H, W, 1), normals.reshape(H, W, 3),
            counters)
