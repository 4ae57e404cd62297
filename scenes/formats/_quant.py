"""Small numpy helpers shared by the quantized splat formats (.splat, .ksplat, .spz, compressed PLY, SOG).

Everything here is vectorized over splats; nothing reads or writes files except `read_exact`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SceneLoadError
from ..gaussians import SH_C0

__all__ = [
    "SH_C0", "sigmoid", "logit", "dc_to_rgb", "rgb_to_dc", "normalize_quats", "quat_angle_deg",
    "pack_smallest_three", "unpack_smallest_three", "u8_round", "check_count", "read_exact",
]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function in float32, safe for large |x| (no overflow warnings)."""
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def logit(p: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Inverse sigmoid; p is clamped to [eps, 1-eps] so 0 and 1 map to finite logits."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return np.log(p / (1.0 - p)).astype(np.float32)


def dc_to_rgb(dc: np.ndarray) -> np.ndarray:
    """SH DC coefficient -> base colour in [0, 1] before clipping (INRIA: rgb = 0.5 + C0 * dc)."""
    return 0.5 + SH_C0 * np.asarray(dc, dtype=np.float32)


def rgb_to_dc(rgb: np.ndarray) -> np.ndarray:
    """Base colour -> SH DC coefficient (INRIA RGB2SH)."""
    return ((np.asarray(rgb, dtype=np.float32) - 0.5) / SH_C0).astype(np.float32)


def normalize_quats(q: np.ndarray) -> np.ndarray:
    """Unit quaternions [N, 4]; rows of zero length stay zero (callers drop them as invalid)."""
    q = np.asarray(q, dtype=np.float32)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n > 0, q / np.where(n > 0, n, 1), 0)
    return out.astype(np.float32)


def quat_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees between unit quaternions a, b [N, 4] (q and -q are the same rotation)."""
    dot = np.abs(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=1))
    return np.degrees(2.0 * np.arccos(np.clip(dot, 0.0, 1.0)))


def pack_smallest_three(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split unit quaternions [N, 4] (any component order) into the index of the largest |component|
    and the other three components [N, 3] in their original order, sign-flipped so the largest is
    positive (q and -q are the same rotation). The three lie in [-1/sqrt(2), 1/sqrt(2)].

    Each format then quantizes the three values its own way (SPZ: sign + 9-bit magnitude;
    compressed PLY: 10-bit unorm; SOG: 8-bit).
    """
    q = np.asarray(q, dtype=np.float32)
    idx = np.argmax(np.abs(q), axis=1)
    largest = np.take_along_axis(q, idx[:, None], axis=1)
    q = np.where(largest < 0, -q, q)
    keep = np.ones_like(q, dtype=bool)
    keep[np.arange(len(q)), idx] = False
    return idx.astype(np.uint8), q[keep].reshape(-1, 3)


def unpack_smallest_three(idx: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Inverse of `pack_smallest_three`: idx [N] (0..3), rest [N, 3] -> quaternions [N, 4].

    The omitted component is sqrt(1 - |rest|^2) (clamped at 0 for noisy input), so the result is
    unit length up to quantization error in `rest`.
    """
    idx = np.asarray(idx).astype(np.intp)
    rest = np.asarray(rest, dtype=np.float32)
    n = len(idx)
    largest = np.sqrt(np.maximum(0.0, 1.0 - np.sum(rest * rest, axis=1)))
    out = np.empty((n, 4), dtype=np.float32)
    # Slot j of the output takes rest column j - (j > idx): the components keep their order.
    for j in range(4):  # loop over the 4 components, not over splats
        col = np.clip(j - (j > idx), 0, 2)
        out[:, j] = np.where(idx == j, largest, np.take_along_axis(rest, col[:, None], axis=1)[:, 0])
    return out


def u8_round(x: np.ndarray) -> np.ndarray:
    """Round to nearest and clamp into uint8 (NaN becomes 0)."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def check_count(path: Path, count: int, bytes_each: int, available: int, what: str) -> None:
    """Raise SceneLoadError unless `count` records of `bytes_each` bytes fit in `available` bytes.

    Call this before allocating anything sized by a count read from a file header.
    """
    need = int(count) * int(bytes_each)
    if need > available:
        raise SceneLoadError(path, f"the header promises {int(count):,} {what} ({need:,} bytes) but the "
                                   f"file holds only {max(int(available), 0):,} bytes for them (truncated?)")


def read_exact(path: Path) -> bytes:
    """The whole file as bytes (OSError becomes SceneLoadError)."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SceneLoadError(path, f"cannot read the file ({e.strerror or e})") from e


def scene_from_arrays(path: Path, means: np.ndarray, quats: np.ndarray, scales: np.ndarray,
                      opacities: np.ndarray, sh: np.ndarray,
                      check: tuple[str, ...] = ("means", "scales", "opacities", "sh"), **kw):
    """A GaussianScene from activated numpy arrays, dropping rows with NaN/inf or a zero quaternion.

    means [N,3], quats [N,4] (w,x,y,z; normalized here), scales [N,3] linear, opacities [N]
    (clipped to [0,1]), sh [N,K,3]. `check` names the arrays that may hold NaN/inf (decoded from
    floats on disk; "sh_dc" checks only coefficient 0); arrays decoded from integers are finite by
    construction and skipping them saves time on big scenes. The number of dropped rows goes to
    meta["dropped_nonfinite"] (0 included).
    """
    import torch

    from ..gaussians import GaussianScene

    quats = normalize_quats(quats)
    n = len(means)
    sh = sh.reshape(n, -1, 3)
    arrays = {"means": means, "scales": scales, "opacities": opacities.reshape(n, 1),
              "sh": sh.reshape(n, -1), "sh_dc": sh[:, 0]}
    ok = np.abs(quats).sum(1) > 0  # NaN or zero-length quaternions were zeroed by normalize_quats
    for name in check:
        a = arrays[name]
        for j in range(a.shape[1]):  # column by column: .all(axis=1) over a few columns is slow in numpy
            ok &= np.isfinite(a[:, j])
    bad = int(n - ok.sum())
    meta = dict(kw.pop("meta", None) or {})
    meta["dropped_nonfinite"] = bad
    if bad:
        if bad == n:
            raise SceneLoadError(path, f"all {n:,} splats hold NaN or infinite values")
        means, quats, scales, opacities, sh = (a[ok] for a in (means, quats, scales, opacities, sh))
        meta.setdefault("warnings", []).append(f"dropped {bad:,} splats with NaN or infinite values")

    def t(a: np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

    return GaussianScene(t(means), t(quats), t(scales), t(np.clip(opacities, 0.0, 1.0)), t(sh),
                         meta=meta, **kw)
