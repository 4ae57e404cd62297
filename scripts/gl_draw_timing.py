#!/usr/bin/env python3
"""Time GaussianPipeline.draw (no read-back) per stage with GL timer queries, then wall clock.

For GPUs, where `radview bench` (GLRenderer.render, with read-back) and this draw-only path have
been seen to disagree on the bin stage (H200, 1M at 1920x1080: 36.5 vs 4.7 ms).
Usage: N=1e6 RES=1920x1080 FRAMES=30 python scripts/gl_draw_timing.py
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import moderngl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from renderer.bench import bench_camera, synthetic_gaussians  # noqa: E402
from renderer.gl_backend.gaussians import GaussianPipeline  # noqa: E402
from renderer.types import RenderSettings  # noqa: E402


def main() -> None:
    ctx = moderngl.create_standalone_context(backend="egl", require=430)
    print(ctx.info["GL_RENDERER"], ctx.info["GL_VERSION"], flush=True)
    n = int(float(os.environ.get("N", "1e6")))
    w, h = (int(x) for x in os.environ.get("RES", "1920x1080").split("x"))
    frames = int(os.environ.get("FRAMES", "30"))
    scene, cam, rs = synthetic_gaussians(n, 0), bench_camera(w, h), RenderSettings()
    p = GaussianPipeline(ctx, timing="gl", blend_tile=None)
    p.render(scene, cam, rs)
    stages = [p.draw(scene, cam, rs)[2].stages_ms for _ in range(frames)]
    med = {k: round(statistics.median(s[k] for s in stages), 3) for k in stages[0]}
    p.timing = "off"
    ctx.finish()
    walls = []
    for _ in range(frames):
        t = time.perf_counter()
        p.draw(scene, cam, rs)
        ctx.finish()
        walls.append((time.perf_counter() - t) * 1e3)
    wall = statistics.median(walls)
    print(f"N={n} {w}x{h}: draw wall median {wall:.2f} ms ({1e3 / wall:.0f} fps); GL stages {med}")
    p.release()


if __name__ == "__main__":
    main()
