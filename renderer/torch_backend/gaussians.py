"""Render a GaussianScene with the torch reference rasterizer (project -> sort -> bin -> blend).

Modes:
- "rgb": SH colours over the background.
- "alpha": rgb = alpha * white + (1 - alpha) * background.
- "depth": Frame.depth is the blended view z divided by alpha (0 where alpha <= 1e-6); rgb is that
  depth colour-mapped (renderer.colormap.depth_to_rgb) over the background.
- "points": each Gaussian with opacity >= settings.min_opacity an opaque disc of settings.point_size
  px radius in its DC colour; the nearest wins (a z-buffer, not differentiable).
Every mode fills Frame.alpha and Frame.depth. The dtype follows scene.means (float64 works).
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
    if settings.mode not in ("rgb", "alpha", "depth", "points"):
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
    if settings.mode == "points":
        keep = scene.opacities.to(device)[vis] >= settings.min_opacity
        rgb = torch.clamp_min(SH_C0 * sh[:, 0] + 0.5, 0.0)  # DC colour only
        clock.lap("project")
        rgb_img, alpha, depth, counters = _render_points(means2d[keep], depths[keep], rgb[keep],
                                                          settings.point_size, W, H, bg, clock)
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
    return Frame(rgb=rgb_img, alpha=alpha, depth=depth, stats=stats)


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
