"""Front-to-back alpha blending of 2D Gaussians over tiles (REFERENCE 1.4), differentiable.

Work layout. Tiles are taken in chunks, longest lists first, and each chunk advances in
rounds: round r blends the Gaussians at positions [r*B, (r+1)*B) of every tile of the chunk
still active, as dense [tiles, B, tile*tile] tensors. The transmittance T is carried from round
to round; inside a round the sequential product T <- T (1 - alpha) is one cumprod along the
Gaussian axis, which keeps the exact per-pixel order and the stop rule. A tile retires when its
list is exhausted or every pixel in it has hit the T < 1e-4 stop, so no work is spent where the
contribution is exactly zero by that rule. Before blending, (Gaussian, tile) pairs whose alpha is
below 1/255 on every pixel of the tile are dropped (an exact cull, see _cull_pairs).

The blend is generic in the feature width C: colours, depth, normals or G-buffer channels are
all blended with the same weights alpha_i T_i.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .tiles import TileBins

# graphdeco-inria/diff-gaussian-rasterization > forward.cu > renderCUDA; gsplat Common.h
MAX_ALPHA = 0.99
ALPHA_THRESHOLD = 1.0 / 255.0
T_THRESHOLD = 1e-4

BLOCK = 32  # Gaussians per tile per round
MAX_ELEMS = 1 << 20  # cap on tiles * B * pixels per dense chunk (keeps temporaries cache-sized)

# alpha_fn(gid [Ta, B], px [Ta, tile], py [Ta, tile]) -> alpha [Ta, B, tile*tile], 0 where skipped
AlphaFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def rasterize(
    means2d: Tensor,  # [N, 2] pixel coordinates
    conics: Tensor,  # [N, 3] (a, b, c) inverse 2D covariance
    opacities: Tensor,  # [N] (already scaled by any mip compensation)
    features: Tensor,  # [N, C] anything to blend (rgb, depth, ...)
    bins: TileBins,
    width: int,
    height: int,
    background: Tensor | None = None,  # [C]
    tile: int = 16,
    block: int = BLOCK,
) -> tuple[Tensor, Tensor, dict]:
    """Blend Gaussians front to back per pixel, as INRIA's renderCUDA.

    Per pixel p (centre (i+0.5, j+0.5)) and Gaussian in depth order: power = -1/2 (a dx^2 + c dy^2)
    - b dx dy with d = mu - p; skip if power > 0; alpha = min(0.99, o e^power); skip if
    alpha < 1/255; stop (without blending) once T (1 - alpha) < 1e-4; else C += f alpha T.
    Output C + T bg.

    Returns:
        image: Tensor  # [H, W, C]
        alpha: Tensor  # [H, W, 1], 1 - final T
        counters: dict with "tile_pairs" (pairs binned), "blended_pairs" (pairs that contributed
            to at least one pixel) and "evaluated_pairs" (pairs left after the exact cull)
    """
    if tile != bins.tile:
        raise ValueError(f"tile size {tile} differs from the bins' {bins.tile}")
    ids, counts = _cull_pairs(bins, means2d, conics, opacities, width, height)
    fn = _gaussian_alpha_fn(means2d, conics, opacities)
    return _blend(fn, features, bins, ids, counts, width, height, background, block)


def blend_tiles(alpha_fn: AlphaFn, features: Tensor, bins: TileBins, width: int, height: int,
                background: Tensor | None = None, block: int = BLOCK) -> tuple[Tensor, Tensor, dict]:
    """The tile blender for any splat primitive: the same stop rule, weights and outputs as rasterize.

    Args:
        alpha_fn: fn(gid [Ta, B] long, px [Ta, tile], py [Ta, tile] pixel-centre coordinates of the
            tiles' columns and rows) -> alpha [Ta, B, tile*tile] (pixels row-major inside a tile),
            already min(0.99, ...) and 0 where the primitive is skipped. Entries past the end of a
            tile's list are masked here (their gid repeats a valid id).
        features: Tensor  # [N, C]
        bins: TileBins of the N primitives
    Returns:
        (image [H, W, C], alpha [H, W, 1], counters) as rasterize.
    """
    def fn(gid: Tensor, in_list: Tensor, px: Tensor, py: Tensor) -> Tensor:
        return alpha_fn(gid, px, py) * in_list[..., None]

    return _blend(fn, features, bins, bins.ids, bins.counts, width, height, background, block)


def _below(x: float, dtype: torch.dtype) -> float:
    """The largest value of `dtype` below x, so that threshold(t, _below(x)) keeps t >= x."""
    if dtype == torch.float64:
        return float(np.nextafter(np.float64(x), -np.inf))
    return float(np.nextafter(np.float32(x), np.float32(-np.inf)))


def _gaussian_alpha_fn(means2d: Tensor, conics: Tensor, opacities: Tensor):
    """fn(gid, in_list, px, py) -> alpha [Ta, B, P] of 2D Gaussians, 0 where skipped or padded.

    The quadratic form is evaluated completed to squares,
        -power = (h dx + k dy)^2 + e dy^2,  h = sqrt(a/2), k = b / (2h), e = (ac - b^2) / (2a),
    which equals 1/2 (a dx^2 + c dy^2) + b dx dy but is a sum of non-negative terms in floating
    point too: power <= 0 always, so REFERENCE 1.4's "skip if power > 0" can never fire (it
    guards against rounding in the expanded form). Opacity enters as exp(power + ln o), which
    folds the multiply and the padding mask (o = 0) into per-row terms.
    """
    dtype = means2d.dtype
    a, b, c = conics.unbind(-1)
    a = torch.clamp_min(a, 1e-30)  # a > 0 for a valid Gaussian; the clamp keeps others finite
    h = torch.sqrt(0.5 * a)
    k = b / (2.0 * h)
    e = 0.5 * torch.clamp_min(a * c - b * b, 0.0) / a
    log_o = torch.log(torch.clamp_min(opacities, 1e-30))
    table = torch.stack([means2d[:, 0], means2d[:, 1], h, k, e, log_o], dim=-1)  # [N, 6]
    grad = torch.is_grad_enabled() and table.requires_grad
    # Keep alpha >= 1/255 (threshold keeps x > t, and alpha is compared in its own dtype).
    thr = _below(ALPHA_THRESHOLD, dtype)

    def fn(gid: Tensor, in_list: Tensor, px: Tensor, py: Tensor) -> Tensor:
        ta, nb = gid.shape
        g = table.index_select(0, gid.flatten()).reshape(ta, nb, 6)
        mx, my, hh, kk, ee, lo = (g[..., i, None] for i in range(6))  # [Ta, B, 1] each
        lo = torch.where(in_list[..., None], lo, -torch.inf)  # padding: o = 0
        dx = px[:, None, :] - mx  # [Ta, B, tile(x)]; the sign of d does not change power
        dy = py[:, None, :] - my  # [Ta, B, tile(y)]
        ux = hh * dx
        uy = kk * dy
        ny = lo - ee * dy * dy  # ln o - e dy^2, per row
        s = ux[..., None, :] + uy[..., :, None]  # [Ta, B, tile(y), tile(x)]
        if grad:
            power = torch.addcmul(ny[..., :, None], s, s, value=-1.0)  # ln o + power
            alpha = torch.clamp_max(torch.exp(power), MAX_ALPHA)
            return F.threshold(alpha, thr, 0.0).reshape(ta, nb, -1)
        # Same values, in place (no autograd to feed).
        torch.addcmul(ny[..., :, None], s, s, value=-1.0, out=s)
        return F.threshold_(s.exp_().clamp_max_(MAX_ALPHA), thr, 0.0).reshape(ta, nb, -1)

    return fn


def _blend(alpha_fn, features: Tensor, bins: TileBins, ids: Tensor, counts: Tensor, width: int, height: int,
           background: Tensor | None, block: int) -> tuple[Tensor, Tensor, dict]:
    """Rounds of front-to-back blending over the per-tile lists (ids, counts); see the module doc."""
    device, dtype = features.device, features.dtype
    n_ch = features.shape[-1]
    tile = bins.tile
    tx_n, ty_n = bins.tiles_x, bins.tiles_y
    n_tiles, npx = tx_n * ty_n, tile * tile
    zero = torch.zeros((), dtype=dtype, device=device)
    t_thr = _below(T_THRESHOLD, dtype)

    # Pixel centres of each tile along x and y (pixels inside a tile are row-major: y * tile + x).
    offs = torch.arange(tile, device=device)
    tiles = torch.arange(n_tiles, device=device)
    px_int = (tiles % tx_n)[:, None] * tile + offs  # [T, tile]
    py_int = (tiles // tx_n)[:, None] * tile + offs
    px = px_int.to(dtype) + 0.5
    py = py_int.to(dtype) + 0.5
    # Pixels past the image edge start "done", so that edge tiles can still retire early.
    outside = ((py_int >= height)[:, :, None] | (px_int >= width)[:, None, :]).reshape(n_tiles, npx)

    start = torch.zeros(n_tiles + 1, dtype=torch.long, device=device)
    start[1:] = torch.cumsum(counts, 0)
    n_pairs = ids.numel()

    # Tiles with the longest lists first: a chunk then holds tiles of similar length, and its block
    # shrinks to the longest remaining list in it, so little work goes to padding.
    order = torch.nonzero(counts > 0, as_tuple=False).flatten()
    order = order[torch.sort(counts[order], descending=True, stable=True).indices]
    arange_b = torch.arange(block, device=device)
    per_chunk = max(1, MAX_ELEMS // (block * npx))

    out_tiles, out_feat = [], []  # contributions per round
    fin_tiles, fin_trans = [], []  # T of tiles as they retire
    blended = torch.zeros((), dtype=torch.long, device=device)
    for c0 in range(0, order.numel(), per_chunk):
        # A chunk of tiles goes through all its rounds while its state is hot in cache.
        act = order[c0:c0 + per_chunk]
        d_in = outside[act]
        # Carried T; done pixels carry 0 so that nothing more blends into them, and keep their
        # final T in `s_in`.
        t_in = torch.where(d_in, zero, torch.ones(act.numel(), npx, device=device, dtype=dtype))
        s_in = torch.ones_like(t_in)
        r = 0
        while act.numel() > 0:
            b = min(block, int(counts[act[0]]) - r * block)  # act[0] has the longest list in the chunk
            pos = start[act][:, None] + r * block + arange_b[:b]  # [Ta, b]
            in_list = pos < start[act + 1][:, None]
            gid = ids[pos.clamp(max=n_pairs - 1)]
            alpha = alpha_fn(gid, in_list, px[act], py[act])  # [Ta, b, P]
            feats = features.index_select(0, gid.flatten()).reshape(*gid.shape, n_ch)  # [Ta, b, C]
            # The autograd-friendly path only where a gradient can flow (viewers call render
            # with grad mode on but nothing requiring grad).
            grad = torch.is_grad_enabled() and any(t.requires_grad for t in (alpha, feats, t_in))

            # ts[:, k] = T_in prod_{i<k} (1 - alpha_i), the exact sequential product.
            if grad:
                ts = torch.cumprod(torch.cat([t_in[:, None, :], 1.0 - alpha], dim=1), dim=1)  # [Ta, b+1, P]
                with torch.no_grad():
                    keep = ts[:, 1:] >= T_THRESHOLD  # a prefix along b: T only decreases
                    newly = ~keep[:, -1] & ~d_in  # pixels that hit the stop in this round
                weights = alpha * ts[:, :-1] * keep  # [Ta, b, P]
                if bool(newly.any()):
                    n_keep = keep.sum(dim=1, keepdim=True)
                    t_last = ts.gather(1, n_keep).squeeze(1)  # T after the last blended Gaussian
                else:
                    t_last = ts[:, -1]
            else:
                # Same values without a keep mask: with u = threshold(ts) (0 once T < 1e-4), the
                # weight alpha_b T_b = u_{b+1} alpha_b / (1 - alpha_b) is 0 at and after the stop.
                ts = torch.empty(act.numel(), b + 1, npx, dtype=dtype, device=device)
                ts[:, 0] = t_in
                torch.sub(1.0, alpha, out=ts[:, 1:])
                weights = alpha.div_(ts[:, 1:])  # alpha is ours to overwrite; 1 - alpha >= 0.01
                ts.cumprod_(1)
                newly = (ts[:, -1] < T_THRESHOLD) & ~d_in
                F.threshold_(ts, t_thr, 0.0)
                weights.mul_(ts[:, 1:])
                t_last = ts[:, -1]
                if bool(newly.any()):  # T at the stop, T_in - sum of the weights (telescoping)
                    t_last = torch.where(newly, t_in - weights.sum(dim=1), t_last)
            t_out = torch.where(newly, zero, t_last)
            s_out = torch.where(newly, t_last, s_in)
            d_out = d_in | newly
            with torch.no_grad():
                blended += (weights.amax(dim=2) > 0).sum()
            out_tiles.append(act)
            out_feat.append(torch.bmm(feats.transpose(1, 2), weights))  # [Ta, C, P]

            with torch.no_grad():
                retire = (counts[act] <= (r + 1) * block) | d_out.all(dim=1)
            if bool(retire.any()):
                fin_tiles.append(act[retire])
                fin_trans.append(torch.where(d_out[retire], s_out[retire], t_out[retire]))
                stay = ~retire
                act, t_in, d_in, s_in = act[stay], t_out[stay], d_out[stay], s_out[stay]
            else:
                t_in, d_in, s_in = t_out, d_out, s_out
            r += 1

    color = torch.zeros(n_tiles, n_ch, npx, device=device, dtype=dtype)
    if out_tiles:
        color = color.index_add(0, torch.cat(out_tiles), torch.cat(out_feat))
    t_final = torch.ones(n_tiles, npx, device=device, dtype=dtype)
    if fin_tiles:
        t_final = t_final.index_copy(0, torch.cat(fin_tiles), torch.cat(fin_trans))

    def to_image(x: Tensor) -> Tensor:  # [T, K, P] -> [H, W, K]
        k = x.shape[1]
        x = x.reshape(ty_n, tx_n, k, tile, tile).permute(0, 3, 1, 4, 2)
        return x.reshape(ty_n * tile, tx_n * tile, k)[:height, :width]

    image = to_image(color)
    t_img = to_image(t_final[:, None, :])
    if background is not None:
        image = image + t_img * torch.as_tensor(background, device=device, dtype=dtype)
    counters = {"tile_pairs": bins.num_pairs, "blended_pairs": int(blended), "evaluated_pairs": int(n_pairs)}
    return image, 1.0 - t_img, counters


@torch.no_grad()
def _cull_pairs(bins: TileBins, means2d: Tensor, conics: Tensor, opacities: Tensor,
                width: int, height: int) -> tuple[Tensor, Tensor]:
    """Drop (Gaussian, tile) pairs whose alpha is below 1/255 at every pixel centre of the tile.

    Such pairs contribute exactly nothing by the alpha < 1/255 rule, so dropping them changes no
    pixel. The test is conservative: the minimum of the quadratic form q = -2 power over the box
    spanned by the tile's pixel centres (clipped to the image) must exceed 2 ln(255 o) by a margin
    far above float32 rounding. Order within each tile is kept.

    Returns:
        ids: Tensor  # [P'] long, per-tile lists concatenated, front to back
        counts: Tensor  # [T] long
    """
    ids, counts = bins.ids, bins.counts
    if ids.numel() == 0:
        return ids, counts
    device = ids.device
    n_tiles, tile = bins.num_tiles, bins.tile
    pair_tile = torch.repeat_interleave(torch.arange(n_tiles, device=device), counts)  # [P]
    x0 = (pair_tile % bins.tiles_x) * tile
    y0 = (pair_tile // bins.tiles_x) * tile
    xl, xh = x0 + 0.5, torch.clamp_max(x0 + tile - 1, width - 1) + 0.5
    yl, yh = y0 + 0.5, torch.clamp_max(y0 + tile - 1, height - 1) + 0.5
    m = means2d.detach().double()[ids]
    q3 = conics.detach().double()[ids]
    o = opacities.detach().double()[ids]
    a, b, c = q3[:, 0], q3[:, 1], q3[:, 2]
    dxl, dxh, dyl, dyh = xl - m[:, 0], xh - m[:, 0], yl - m[:, 1], yh - m[:, 1]

    def q(dx, dy):
        return a * dx * dx + 2.0 * b * dx * dy + c * dy * dy

    # Convex q: its minimum over the box is 0 if the mean lies inside, else on an edge, where it
    # is the clamped 1D minimum along that edge.
    edges = [
        q(dxl, torch.clamp(-b * dxl / c, dyl, dyh)),  # x = left column, best y
        q(dxh, torch.clamp(-b * dxh / c, dyl, dyh)),
        q(torch.clamp(-b * dyl / a, dxl, dxh), dyl),  # y = top row, best x
        q(torch.clamp(-b * dyh / a, dxl, dxh), dyh),
    ]
    qmin = torch.stack(edges).amin(0)
    inside = (dxl <= 0) & (dxh >= 0) & (dyl <= 0) & (dyh >= 0)
    qmin = torch.where(inside, torch.zeros_like(qmin), qmin)
    limit = 2.0 * torch.log(torch.clamp_min(o * 255.0, 1e-30))  # alpha >= 1/255 needs q <= limit
    live = qmin <= limit + 1e-3 + 1e-4 * limit.abs()
    live &= torch.isfinite(qmin) | inside
    return ids[live], torch.bincount(pair_tile[live], minlength=n_tiles)
