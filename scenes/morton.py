"""3D Morton (Z-order) codes: the compressed formats' chunk order, the GL rasterizer's scene order."""

from __future__ import annotations

import numpy as np

MORTON_BITS = 10  # per axis: a 1024^3 grid, 30-bit codes


def _spread(v: np.ndarray) -> np.ndarray:
    """The low 10 bits of v [n] uint32 spread to every third bit (bit i -> bit 3i)."""
    v = v & np.uint32(0x3FF)
    v = (v | (v << np.uint32(16))) & np.uint32(0x030000FF)
    v = (v | (v << np.uint32(8))) & np.uint32(0x0300F00F)
    v = (v | (v << np.uint32(4))) & np.uint32(0x030C30C3)
    v = (v | (v << np.uint32(2))) & np.uint32(0x09249249)
    return v


def morton_codes(cells: np.ndarray) -> np.ndarray:
    """Codes [n] uint32 of grid cells [n, 3] (integers in 0 .. 2^MORTON_BITS - 1): x in bit 0."""
    c = np.asarray(cells).astype(np.uint32)
    return _spread(c[:, 0]) | (_spread(c[:, 1]) << np.uint32(1)) | (_spread(c[:, 2]) << np.uint32(2))


__all__ = ["MORTON_BITS", "morton_codes"]
