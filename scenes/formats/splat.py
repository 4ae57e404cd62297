"""antimatter15 `.splat` (antimatter15/splat @ba182b5 convert.py process_ply_to_splat; main.js).

No header: 32 bytes per splat, count = file size / 32, little endian:
  f32 x, y, z | f32 sx, sy, sz (linear, exp applied) | u8 r, g, b, a | u8 q0..q3
with rgb = 255 * (0.5 + C0 * f_dc), a = 255 * sigmoid(opacity), q = (w, x, y, z) / |q| * 128 + 128,
decoded as (b - 128) / 128 as in main.js. No higher SH bands. The frame is whatever the producer
used (usually the INRIA RDF frame), so no `up` hint is set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SceneLoadError
from ..load import FormatSpec
from ._quant import dc_to_rgb, normalize_quats, quat_angle_deg, rgb_to_dc, scene_from_arrays, u8_round

RECORD = np.dtype([("pos", "<f4", (3,)), ("scale", "<f4", (3,)), ("rgba", "u1", (4,)), ("rot", "u1", (4,))])

# Magics of other formats: a .splat-named file that starts with one and has a size that is not a
# multiple of 32 is something else (a real .splat starts with a float, so only the size rule is sure).
_FOREIGN = (b"ply\n", b"ply\r\n", b"NGSP", b"\x1f\x8b", b"PK\x03\x04")


def sniff(path: Path, head: bytes) -> bool:
    if path.suffix.lower() != ".splat":
        return False
    size = path.stat().st_size
    return size % RECORD.itemsize == 0 or not head.startswith(_FOREIGN)


def decode(rec: np.ndarray) -> dict[str, np.ndarray]:
    """Structured records [N] (RECORD) -> activated arrays (quats not yet normalized)."""
    rgba = rec["rgba"].astype(np.float32) / 255.0
    return {
        "means": rec["pos"].astype(np.float32),
        # A negative standard deviation gives the same covariance; keep scales positive.
        "scales": np.abs(rec["scale"].astype(np.float32)),
        "opacities": rgba[:, 3].copy(),
        "dc": rgb_to_dc(rgba[:, :3]),
        "quats": (rec["rot"].astype(np.float32) - 128.0) / 128.0,
    }


def read(path: Path):
    size = path.stat().st_size
    if size == 0:
        raise SceneLoadError(path, "the .splat file is empty (zero splats)")
    if size % RECORD.itemsize:
        raise SceneLoadError(path, f"the file size ({size:,} bytes) is not a multiple of 32, so it is not "
                                   "an antimatter15 .splat file (or it is truncated)")
    rec = np.fromfile(path, dtype=RECORD)
    if len(rec) * RECORD.itemsize != size:
        raise SceneLoadError(path, "the file could not be read completely")
    d = decode(rec)
    sh = d["dc"][:, None, :]
    return scene_from_arrays(path, d["means"], d["quats"], d["scales"], d["opacities"], sh,
                             check=("means", "scales"))  # colour, opacity, rotation are bytes


def encode(means: np.ndarray, quats: np.ndarray, scales: np.ndarray, opacities: np.ndarray,
           dc: np.ndarray) -> np.ndarray:
    """Activated arrays [N, ...] -> structured records [N] (rounded to nearest, clamped)."""
    rec = np.empty(len(means), dtype=RECORD)
    rec["pos"] = means
    rec["scale"] = scales
    rgba = np.concatenate([dc_to_rgb(dc), opacities[:, None]], axis=1)
    rec["rgba"] = u8_round(rgba * 255.0)
    rec["rot"] = u8_round(normalize_quats(quats) * 128.0 + 128.0)
    return rec


def write(scene, path: Path, **_opts) -> dict:
    """Write a .splat sorted like antimatter15's convert.py (largest, most opaque splats first).

    Returns the errors introduced: positions and scales are float32 (exact); colour, opacity and
    rotation are 8-bit; SH bands above 0 are dropped.
    """
    means = scene.means.detach().cpu().float().numpy()
    quats = scene.quats.detach().cpu().float().numpy()
    scales = scene.scales.detach().cpu().float().numpy()
    opac = scene.opacities.detach().cpu().float().numpy()
    dc = scene.sh[:, 0].detach().cpu().float().numpy()
    # antimatter15 convert.py: argsort(-exp(sum log scale) / (1 + exp(-opacity)))
    order = np.argsort(-(np.prod(scales.astype(np.float64), axis=1) * opac), kind="stable")
    means, quats, scales, opac, dc = (a[order] for a in (means, quats, scales, opac, dc))
    rec = encode(means, quats, scales, opac, dc)
    path.write_bytes(rec.tobytes())

    back = decode(rec)
    rgb = dc_to_rgb(dc)
    n = len(rec)

    def worst(a: np.ndarray) -> float:
        return float(np.max(a)) if n else 0.0

    return {
        "count": n,
        "order": "sorted by -volume*opacity (antimatter15)",
        "max_position_error": worst(np.abs(back["means"] - means)),
        "max_scale_error": worst(np.abs(back["scales"] - scales)),
        # rgb units: 8-bit rounding of in-range colours, and separately what clipping to [0, 1] lost
        "max_color_error": worst(np.abs(dc_to_rgb(back["dc"]) - np.clip(rgb, 0, 1))),
        "max_color_clip_error": worst(np.abs(np.clip(rgb, 0, 1) - rgb)),
        "colors_clipped": int(np.sum((rgb < 0) | (rgb > 1))),
        "max_opacity_error": worst(np.abs(back["opacities"] - opac)),
        "max_rotation_error_deg": worst(quat_angle_deg(normalize_quats(back["quats"]),
                                                       normalize_quats(quats))),
        "sh_bands_dropped": scene.sh_degree,
    }


FORMAT = FormatSpec(
    name="splat",
    extensions=(".splat",),
    sniff=sniff,
    read=read,
    write=write,
    description="antimatter15 .splat",
)
