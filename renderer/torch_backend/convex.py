"""3D Convex Splatting forward model in torch (REFERENCE 4), differentiable through the
projected points; the hull selection itself is discrete.

Per convex: project its K points, take the 2D hull (the reference's angle sort + Graham scan),
turn each hull edge into a line L_k(p) = n_k . p + c_k (negative inside), and evaluate per pixel
I(p) = sigmoid(-z sigma phi(p)), phi = LSE_k(z delta L_k(p)), alpha = min(0.99, o I(p)).
Binning and blending are the Gaussian ones (tiles.py, rasterize.py).
Source: convexsplatting/diff-convex-rasterization > cuda_rasterizer/forward.cu > preprocessCUDA,
renderCUDA; auxiliary.h (near 0.2, crossProduct).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from scenes.convex import ConvexScene

from ..colormap import auto_depth_range, depth_to_rgb
from ..types import Camera, Frame, FrameStats, RenderSettings
from .rasterize import ALPHA_THRESHOLD, MAX_ALPHA, blend_tiles
from .sh import eval_sh
from .tiles import bin_tiles

NEAR = 0.2  # auxiliary.h > in_frustum_convex
MAX_PROJECTED_DISTANCE = 1e4  # px; forward.cu drops convexes with a point this far from the centre
BOUND_PUSH = 2.1  # forward.cu: edge lines pushed out by 2.1 / (z^2 delta sigma) for the bounds
ANGLE_RANGE = (0.1, 3.0)  # radians; corners outside this range do not count for the bounds


@dataclass
class ConvexProjection:
    centers2d: Tensor  # [N, 2] projected 3D centre, pixels
    depths: Tensor  # [N] view-space z of the centre
    normals: Tensor  # [N, K, 2] hull edge normals (unnormalized, pixel units), in hull order
    offsets: Tensor  # [N, K] line offsets c_k
    edge_mask: Tensor  # [N, K] bool, which of the K edge slots are real hull edges
    radii: Tensor  # [N] int, bounding radius in pixels (0 = culled)
    valid: Tensor  # [N] bool


def _cross(o: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """[..., 2] x3 -> [...]: (a - o) x (b - o); positive for a counter-clockwise turn in (x, y)."""
    ax, ay = a[..., 0] - o[..., 0], a[..., 1] - o[..., 1]
    return ax * (b[..., 1] - o[..., 1]) - ay * (b[..., 0] - o[..., 0])


def convex_hull_2d(xy: Tensor) -> tuple[Tensor, Tensor]:
    """Hull of K 2D points per row, in the reference's order (vectorized Graham scan).

    The points are sorted by polar angle about the lowest-y point, then a lower and an upper
    monotone pass with "pop while cross <= 0" run over the sorted list, as forward.cu does.
    Args:
        xy: Tensor  # [N, K, 2]
    Returns:
        hull: Tensor  # [N, 2K] long, indices into the K points, closed (first vertex repeated)
        size: Tensor  # [N] long, entries used in hull; the hull has size - 1 edges
    """
    n, k = xy.shape[:2]
    dev = xy.device
    p = xy.detach()
    # Reference point: smallest y, then smallest x.
    key = p[..., 1] * 1.0 + 0.0
    ymin = key.min(dim=1, keepdim=True).values
    xs = torch.where(key == ymin, p[..., 0], torch.full_like(key, float("inf")))
    ref = xs.argmin(dim=1)
    rp = p[torch.arange(n, device=dev), ref]  # [N, 2]
    ang = torch.atan2(p[..., 1] - rp[:, None, 1], p[..., 0] - rp[:, None, 0])
    ang[torch.arange(n, device=dev), ref] = -1.0  # the reference comes first (others are >= 0)
    order = torch.sort(ang, dim=1, stable=True).indices  # [N, K]
    sp = torch.gather(p, 1, order[..., None].expand(-1, -1, 2))  # sorted points

    rows = torch.arange(n, device=dev)
    hull = torch.zeros(n, 2 * k, dtype=torch.long, device=dev)  # indices into the sorted list
    size = torch.zeros(n, dtype=torch.long, device=dev)

    def push_with_pops(i: int, floor: Tensor) -> None:
        nonlocal size
        pi = sp[:, i]
        for _ in range(k):
            can = size >= floor
            a = sp[rows, hull[rows, (size - 2).clamp_min(0)]]
            b = sp[rows, hull[rows, (size - 1).clamp_min(0)]]
            pop = can & (_cross(a, b, pi) <= 0)
            if not bool(pop.any()):
                break
            size = size - pop.long()
        hull[rows, size] = i
        size = size + 1

    two = torch.full((n,), 2, dtype=torch.long, device=dev)
    for i in range(k):
        push_with_pops(i, two)
    t = size + 1
    for i in range(k - 2, -1, -1):
        push_with_pops(i, t)
    return torch.gather(order, 1, hull.clamp(max=k - 1)), size


def project_convex(points: Tensor, deltas: Tensor, sigmas: Tensor, viewmat: Tensor, fx: float, fy: float,
                   cx: float, cy: float, width: int, height: int, tile: int = 16) -> ConvexProjection:
    """Screen-space lines and bounds of each convex.

    Args:
        points: Tensor  # [N, K, 3] world
        deltas, sigmas: Tensor  # [N] activated
        viewmat: Tensor  # [4, 4] world -> camera (OpenCV)
    """
    n, k = points.shape[:2]
    dev, dt = points.device, points.dtype
    R, t = viewmat[:3, :3].to(dt), viewmat[:3, 3].to(dt)
    pc = points @ R.T + t  # [N, K, 3] camera space
    cc = points.mean(dim=1) @ R.T + t  # [N, 3]
    z = cc[:, 2]
    zc = torch.where(z > NEAR, z, torch.ones_like(z))
    center2d = torch.stack([fx * cc[:, 0] / zc + cx, fy * cc[:, 1] / zc + cy], dim=-1)
    pz = pc[..., 2]
    pz = torch.where(pz.abs() > 1e-7, pz, torch.full_like(pz, 1e-7))
    xy = torch.stack([fx * pc[..., 0] / pz + cx, fy * pc[..., 1] / pz + cy], dim=-1)  # [N, K, 2]

    hull, size = convex_hull_2d(xy)
    n_edges = size - 1
    e = torch.arange(k, device=dev)
    edge_mask = e[None, :] < n_edges[:, None]  # [N, K]
    i0 = hull[:, :k]
    i1 = hull[:, 1:k + 1]
    p1 = torch.gather(xy, 1, i0[..., None].expand(-1, -1, 2))
    p2 = torch.gather(xy, 1, i1[..., None].expand(-1, -1, 2))
    normals = torch.stack([p2[..., 1] - p1[..., 1], -(p2[..., 0] - p1[..., 0])], dim=-1)  # [N, K, 2]
    offsets = -(normals * p1).sum(-1)  # [N, K]

    with torch.no_grad():
        dist = (xy - center2d[:, None]).norm(dim=-1).amax(dim=1)  # [N]
        # Bounds: push each edge line outward, intersect consecutive ones (no wrap-around, as
        # forward.cu), average the distances of corners with a usable angle.
        push = BOUND_PUSH / (zc * zc * deltas * sigmas)
        side = (normals * center2d[:, None]).sum(-1) + offsets
        off_p = torch.where(side < 0, offsets - push[:, None], offsets + push[:, None])
        na, nb = normals[:, 1:], normals[:, :-1]  # edge i and i-1
        oa, ob = off_p[:, 1:], off_p[:, :-1]
        den = na[..., 0] * nb[..., 1] - na[..., 1] * nb[..., 0]
        den_s = torch.where(den.abs() > 0, den, torch.ones_like(den))
        ix = (-oa * nb[..., 1] + ob * na[..., 1]) / den_s
        iy = (-ob * na[..., 0] + oa * nb[..., 0]) / den_s
        cosang = (na * nb).sum(-1) / (na.norm(dim=-1) * nb.norm(dim=-1)).clamp_min(1e-30)
        ang = torch.acos(cosang.clamp(-1, 1))
        use = edge_mask[:, 1:] & (ang > ANGLE_RANGE[0]) & (ang < ANGLE_RANGE[1]) & (den.abs() > 0)
        d_int = ((ix - center2d[:, None, 0]) ** 2 + (iy - center2d[:, None, 1]) ** 2).sqrt()
        counter = use.sum(dim=1)
        mean_d = torch.where(use, d_int, torch.zeros_like(d_int)).sum(1) / counter.clamp_min(1)
        radius = torch.ceil(torch.maximum(dist * 1.1, mean_d))
        finite = torch.isfinite(xy).all(dim=(1, 2)) & torch.isfinite(radius)
        valid = (z > NEAR) & (dist <= MAX_PROJECTED_DISTANCE) & (n_edges >= 3) & (counter > 0) & finite
        radius = torch.where(valid, radius, torch.zeros_like(radius))
        radii = torch.nan_to_num(radius, nan=0.0, posinf=0.0).to(torch.int32)
        # Tile culling is done by the binning (a box touching no tile yields no pairs).
    return ConvexProjection(center2d, z, normals, offsets, edge_mask, radii, valid & (radii > 0))


def convex_alpha_fn(proj: ConvexProjection, deltas: Tensor, sigmas: Tensor, opacities: Tensor):
    """Per-pixel alpha of convexes for rasterize.blend_tiles.

    Returns fn(gid [Ta, B], px [Ta, tile], py [Ta, tile]) -> alpha [Ta, B, tile*tile] (0 where skipped).
    """
    neg_inf = float("-inf")

    def fn(gid: Tensor, px: Tensor, py: Tensor) -> Tensor:
        ta, b = gid.shape
        tile = px.shape[1]
        nrm = proj.normals[gid]  # [Ta, B, K, 2]
        off = proj.offsets[gid]  # [Ta, B, K]
        m = proj.edge_mask[gid]  # [Ta, B, K]
        # L_k at every pixel of the tile: [Ta, B, K, tile(y), tile(x)]
        lx = nrm[..., 0, None] * px[:, None, None, :]  # [Ta, B, K, tile]
        ly = nrm[..., 1, None] * py[:, None, None, :] + off[..., None]
        lines = ly[..., :, None] + lx[..., None, :]
        lines = lines.reshape(ta, b, -1, tile * tile)  # [Ta, B, K, P]
        zd = (proj.depths[gid] * deltas[gid])[..., None, None]
        scaled = torch.where(m[..., None], zd * lines, torch.full_like(lines, neg_inf))
        phi = torch.logsumexp(scaled, dim=2)  # [Ta, B, P]
        zs = (proj.depths[gid] * sigmas[gid])[..., None]
        ind = torch.sigmoid(-zs * phi)
        alpha = torch.clamp_max(opacities[gid][..., None] * ind, MAX_ALPHA)
        with torch.no_grad():
            ok = alpha >= ALPHA_THRESHOLD
        return torch.where(ok, alpha, torch.zeros((), dtype=alpha.dtype, device=alpha.device))

    return fn


def render_convex(scene: ConvexScene, camera: Camera, settings: RenderSettings, device) -> Frame:
    """Render a ConvexScene (modes rgb, alpha, depth)."""
    if settings.mode not in ("rgb", "alpha", "depth"):
        raise ValueError(f"mode {settings.mode!r} is not supported for convex splats by the torch backend")
    t0 = time.perf_counter()
    scene = scene.to(device)
    dt = scene.points.dtype
    W, H = camera.width, camera.height
    viewmat = torch.as_tensor(camera.T_camera_world, dtype=dt, device=device)
    proj = project_convex(scene.points, scene.deltas, scene.sigmas, viewmat, camera.fx, camera.fy,
                          camera.cx, camera.cy, W, H)
    campos = torch.as_tensor(camera.position, dtype=dt, device=device)
    centers = scene.centers
    target = centers[:, 2:3].expand(-1, 3) if scene.sh_center_quirk else centers
    dirs = torch.nn.functional.normalize(target - campos, dim=-1)
    degree = scene.sh_degree if settings.sh_degree is None else min(settings.sh_degree, scene.sh_degree)
    rgb = eval_sh(scene.sh, dirs, degree)
    t1 = time.perf_counter()
    bins = bin_tiles(proj.centers2d, proj.radii, proj.depths, proj.valid, W, H)
    t2 = time.perf_counter()
    feats = torch.cat([rgb, proj.depths[:, None]], dim=1)
    bg = torch.as_tensor(settings.background, dtype=dt, device=device)
    alpha_fn = convex_alpha_fn(proj, scene.deltas, scene.sigmas, scene.opacities)
    img, alpha, counters = blend_tiles(alpha_fn, feats, bins, W, H)
    t3 = time.perf_counter()
    color = img[..., :3] + (1 - alpha) * bg
    depth = torch.where(alpha > 1e-6, img[..., 3:4] / alpha.clamp_min(1e-6), torch.zeros_like(alpha))
    if settings.mode == "alpha":
        color = alpha.expand(-1, -1, 3) + (1 - alpha) * bg
    elif settings.mode == "depth":
        rng = settings.depth_range or auto_depth_range(scene.bounds(), camera.T_camera_world, camera.near)
        color = depth_to_rgb(depth, alpha, rng, bg)
    stats = FrameStats(
        stages_ms={"project": (t1 - t0) * 1e3, "bin": (t2 - t1) * 1e3, "blend": (t3 - t2) * 1e3},
        counters={"visible": int(proj.valid.sum()), **counters},
    )
    return Frame(rgb=color, alpha=alpha, depth=depth, stats=stats)
