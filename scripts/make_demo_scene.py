#!/usr/bin/env python3
"""Regenerate assets/demo.ply: a procedural scene made by Radview itself (no outside data).

A trefoil torus knot coloured along its length, on a checkered ground disc, built from flat
surface-aligned Gaussians with a little view-dependent colour (SH degree 1). World up is -Y
(OpenCV/COLMAP habit), so the ground lies in the XZ plane at y = +1.
Usage: python scripts/make_demo_scene.py [OUT.ply]
"""

from __future__ import annotations

import colorsys
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scenes import GaussianScene, save_scene  # noqa: E402
from scenes.gaussians import SH_C0  # noqa: E402


def frame_to_quat(m: np.ndarray) -> np.ndarray:
    """[N,3,3] rotation matrices (columns = local axes) -> [N,4] (w,x,y,z)."""
    t = np.trace(m, axis1=1, axis2=2)
    w = np.sqrt(np.maximum(0, 1 + t)) / 2
    x = np.sqrt(np.maximum(0, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2])) / 2
    y = np.sqrt(np.maximum(0, 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2])) / 2
    z = np.sqrt(np.maximum(0, 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2])) / 2
    x = np.copysign(x, m[:, 2, 1] - m[:, 1, 2])
    y = np.copysign(y, m[:, 0, 2] - m[:, 2, 0])
    z = np.copysign(z, m[:, 1, 0] - m[:, 0, 1])
    return np.stack([w, x, y, z], axis=1)


def knot(n: int, rng) -> tuple[np.ndarray, ...]:
    """Gaussians on the surface of a tube around a (2,3) torus knot."""
    u = rng.uniform(0, 2 * math.pi, n)
    v = rng.uniform(0, 2 * math.pi, n)

    def curve(s):
        r = 2 + np.cos(3 * s)
        return np.stack([r * np.cos(2 * s), -np.sin(3 * s) - 0.2, r * np.sin(2 * s)], -1) * 0.32

    c, c2 = curve(u), curve(u + 1e-3)
    tangent = c2 - c
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    a = np.cross(tangent, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b = np.cross(tangent, a)
    normal = np.cos(v)[:, None] * a + np.sin(v)[:, None] * b
    means = c + 0.12 * normal
    side = np.cross(normal, tangent)
    rot = np.stack([tangent, side, normal], axis=2)  # columns: local x, y, z
    scales = np.stack([np.full(n, 0.022), np.full(n, 0.016), np.full(n, 0.002)], 1)
    hue = (u / (2 * math.pi)) % 1.0
    rgb = np.array([colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hue])
    shade = 0.55 + 0.45 * np.clip(-normal[:, 1], 0, 1)  # lit from above (-Y)
    return means, rot, scales, rgb * shade[:, None], normal


def ground(n: int, rng) -> tuple[np.ndarray, ...]:
    r = 2.2 * np.sqrt(rng.uniform(0, 1, n))
    th = rng.uniform(0, 2 * math.pi, n)
    means = np.stack([r * np.cos(th), np.full(n, 1.0), r * np.sin(th)], 1)
    rot = np.tile(np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]).T, (n, 1, 1))  # flat in XZ
    scales = np.stack([np.full(n, 0.045), np.full(n, 0.045), np.full(n, 0.003)], 1)
    checker = ((np.floor(means[:, 0] / 0.4) + np.floor(means[:, 2] / 0.4)) % 2)[:, None]
    fade = np.clip(1.2 - r / 2.2, 0.2, 1)[:, None]
    rgb = (0.25 + 0.45 * checker) * fade * np.array([[0.9, 0.92, 1.0]])
    normal = np.tile([0.0, -1.0, 0.0], (n, 1))
    return means, rot, scales, rgb, normal


def make(seed: int = 7, n_knot: int = 14000, n_ground: int = 6000) -> GaussianScene:
    rng = np.random.default_rng(seed)
    parts = [knot(n_knot, rng), ground(n_ground, rng)]
    means, rot, scales, rgb, normal = (np.concatenate(x) for x in zip(*parts, strict=True))
    n = len(means)
    sh = np.zeros((n, 4, 3), dtype=np.float32)
    sh[:, 0] = (rgb - 0.5) / SH_C0
    # A mild highlight facing the surface normal (degree-1 band, INRIA basis -C1*y, C1*z, -C1*x).
    spec = 0.12
    sh[:, 1] = (-normal[:, 1:2] * spec)
    sh[:, 2] = (normal[:, 2:3] * spec)
    sh[:, 3] = (-normal[:, 0:1] * spec)
    opac = np.full(n, 0.92)
    return GaussianScene.from_raw(
        torch.tensor(means, dtype=torch.float32),
        torch.tensor(frame_to_quat(rot), dtype=torch.float32),
        torch.tensor(np.log(scales), dtype=torch.float32),
        torch.tensor(np.log(opac / (1 - opac)), dtype=torch.float32),
        torch.tensor(sh),
        up=(0.0, -1.0, 0.0),
    )


def main() -> None:
    default = Path(__file__).resolve().parents[1] / "assets" / "demo.ply"
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    scene = make()
    save_scene(scene, out)
    print(f"wrote {out} ({len(scene):,} Gaussians, SH degree {scene.sh_degree})")


if __name__ == "__main__":
    main()
