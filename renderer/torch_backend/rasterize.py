"""Front-to-back alpha blending of 2D Gaussians over tiles (REFERENCE 1.4), differentiable.

Work layout. All tiles advance together in rounds: round r blends the Gaussians at positions
[r*B, (r+1)*B) of every tile still active, as dense [tiles, B, tile*tile] tensors. The
transmittance T is carried from round to round; inside a round the sequential product
T <- T (1 - alpha) is one cumprod along the Gaussian axis, which keeps the exact per-pixel
order and the stop rule. A tile retires when its list is exhausted or every pixel in it has
hit the T < 1e-4 stop, so no work is spent where the contribution is exactly zero by that rule.

The blend is generic in the feature width C: colours, depth, normals or G-buffer channels are
all blended with the same weights alpha_i T_i.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .tiles import TileBins

# graphdeco-inria/diff-gaussian-rasterization > forward.cu > renderCUDA; gsplat Common.h
MAX_ALPHA = 0.99
ALPHA_THRESHOLD = 1.0 / 255.0
T_THRESHOLD = 1e-4

BLOCK = 32  # Gaussians per tile per round
MAX_ELEMS = 1 << 21  # cap on tiles * B * pixels per dense chunk (keeps temporaries in cache-sized pieces)


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
        counters: dict with "tile_pairs" (pairs binned) and "blended_pairs" (pairs that
            contributed to at least one pixel)
    """
    if tile != bins.tile:
        raise ValueError(f"tile size {tile} differs from the bins' {bins.tile}")
    device, dtype = means2d.device, means2d.dtype
    n_ch = features.shape[-1]
    features = features.to(dtype)
    tx_n, ty_n = bins.tiles_x, bins.tiles_y
    n_tiles, npx = tx_n * ty_n, tile * tile

    # Pixel centres of each tile along x and y (row-major pixels inside a tile: index = y*tile+x).
    offs = torch.arange(tile, device=device)
    tiles = torch.arange(n_tiles, device=device)
    px_int = (tiles % tx_n)[:, None] * tile + offs  # [T, tile]
    py_int = (tiles // tx_n)[:, None] * tile + offs
    px = px_int.to(dtype) + 0.5
    py = py_int.to(dtype) + 0.5
    # Pixels past the image edge start "done", so that edge tiles can still retire early.
    outside = ((py_int >= height)[:, :, None] | (px_int >= width)[:, None, :]).reshape(n_tiles, npx)

    counts, start, ids = bins.counts, bins.tile_start, bins.ids
    n_pairs = ids.numel()

    active = torch.nonzero(counts > 0, as_tuple=False).flatten()
    trans = torch.ones(active.numel(), npx, device=device, dtype=dtype)  # carried T
    done = outside[active]
    arange_b = torch.arange(block, device=device)

    out_tiles, out_rgb = [], []  # contributions per round
    fin_tiles, fin_trans = [], []  # T of tiles as they retire
    blended = torch.zeros((), dtype=torch.long, device=device)
    r = 0
    while active.numel() > 0:
        per_chunk = max(1, MAX_ELEMS // (block * npx))
        next_parts = []
        for c0 in range(0, active.numel(), per_chunk):
            act = active[c0:c0 + per_chunk]
            t_in = trans[c0:c0 + per_chunk]
            d_in = done[c0:c0 + per_chunk]
            pos = start[act][:, None] + r * block + arange_b  # [Ta, B]
            in_list = pos < start[act + 1][:, None]
            gid = ids[pos.clamp(max=n_pairs - 1)]

            mx, my = means2d[gid, 0], means2d[gid, 1]  # [Ta, B]
            ca, cb, cc = conics[gid, 0], conics[gid, 1], conics[gid, 2]
            dx = px[act][:, None, :] - mx[..., None]  # [Ta, B, tile] (sign irrelevant to power)
            dy = py[act][:, None, :] - my[..., None]
            # power = -1/2 (a dx^2 + c dy^2) - b dx dy, separable in x and y per tile row/column.
            qx = (-0.5 * ca[..., None]) * dx * dx  # [Ta, B, tile]
            qy = (-0.5 * cc[..., None]) * dy * dy
            power = (qy[..., :, None] + qx[..., None, :]) - (cb[..., None] * dy)[..., :, None] * dx[..., None, :]
            power = power.reshape(act.numel(), block, npx)  # [Ta, B, P]
            alpha = torch.clamp_max(opacities[gid][..., None] * torch.exp(power), MAX_ALPHA)
            with torch.no_grad():
                ok = (power <= 0) & (alpha >= ALPHA_THRESHOLD) & in_list[..., None] & ~d_in[:, None, :]
            alpha = torch.where(ok, alpha, torch.zeros((), dtype=dtype, device=device))
            # Sequential transmittance: Ts[:, k] = T_in prod_{i<k} (1 - alpha_i).
            ts = torch.cumprod(torch.cat([t_in[:, None, :], 1.0 - alpha], dim=1), dim=1)  # [Ta, B+1, P]
            with torch.no_grad():
                keep = ts[:, 1:] >= T_THRESHOLD  # a prefix along B: T only decreases
                n_keep = keep.sum(dim=1)  # [Ta, P]
            a_eff = torch.where(keep, alpha, torch.zeros((), dtype=dtype, device=device))
            weights = a_eff * ts[:, :-1]  # [Ta, B, P]
            t_out = ts.gather(1, n_keep[:, None, :]).squeeze(1)  # T after the last kept Gaussian
            with torch.no_grad():
                blended += (a_eff > 0).any(dim=2).sum()
                d_out = d_in | ~keep[:, -1]
            out_tiles.append(act)
            out_rgb.append(torch.bmm(weights.transpose(1, 2), features[gid]))  # [Ta, P, C]

            with torch.no_grad():
                retire = (counts[act] <= (r + 1) * block) | d_out.all(dim=1)
            if bool(retire.any()):
                fin_tiles.append(act[retire])
                fin_trans.append(t_out[retire])
            stay = ~retire
            next_parts.append((act[stay], t_out[stay], d_out[stay]))
        active = torch.cat([p[0] for p in next_parts])
        trans = torch.cat([p[1] for p in next_parts])
        done = torch.cat([p[2] for p in next_parts])
        r += 1

    color = torch.zeros(n_tiles, npx, n_ch, device=device, dtype=dtype)
    if out_tiles:
        color = color.index_add(0, torch.cat(out_tiles), torch.cat(out_rgb))
    t_final = torch.ones(n_tiles, npx, device=device, dtype=dtype)
    if fin_tiles:
        t_final = t_final.index_copy(0, torch.cat(fin_tiles), torch.cat(fin_trans))

    def to_image(x: Tensor) -> Tensor:  # [T, P, K] -> [H, W, K]
        k = x.shape[-1]
        x = x.reshape(ty_n, tx_n, tile, tile, k).permute(0, 2, 1, 3, 4)
        return x.reshape(ty_n * tile, tx_n * tile, k)[:height, :width]

    image = to_image(color)
    t_img = to_image(t_final[..., None])
    if background is not None:
        image = image + t_img * torch.as_tensor(background, device=device, dtype=dtype)
    counters = {"tile_pairs": int(n_pairs), "blended_pairs": int(blended)}
    return image, 1.0 - t_img, counters
