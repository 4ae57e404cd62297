"""Benchmark logic behind `radview bench` (no Qt): time backends stage by stage on the same scenes.

A seeded synthetic scene (N Gaussians in a unit cube, the distribution of tests/conftest.py's
random_gaussians) is seen from distance 3; a scene file, if given, is framed from its bounds.
Each backend renders each scene `warmup` times untimed, then `frames` timed rounds follow in
which every backend renders one frame in turn, after a short pause (SETTLE_S) so that one
backend's idle threads do not take the CPU from the next: a machine whose speed drifts (shared or
throttled CPUs, measured to swing by 1.5x within tens of seconds) then slows all backends alike.
Reported: median and min wall milliseconds per frame (read-back included), the median of each
stage in Frame.stats.stages_ms, the frame's counters, and each backend's speed relative to each
other one: the median over rounds of the ratio of their frame times in that round.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from scenes.gaussians import GaussianScene

from .types import Camera, RenderSettings, look_at_pose

STAGES = ("project", "sort", "bin", "blend", "readback")
# Pause before each timed frame when backends take turns: torch's OpenMP threads keep spinning for
# a while after its frame and took the CPU from the next one (gl's projection, 100k Gaussians on 2
# cores: 10.7 ms right after a torch frame, 7.7 ms after a gl frame, 8.5 and 7.9 ms after 10 and
# 50 ms pauses).
SETTLE_S = 0.02


@dataclass
class BenchConfig:
    """What `radview bench` measures; the CLI fills it from its flags."""

    sizes: list[int] = field(default_factory=lambda: [10_000, 30_000])  # synthetic Gaussian counts
    resolution: tuple[int, int] = (800, 800)  # width, height
    backends: list[str] = field(default_factory=lambda: ["gl", "torch"])
    scene_path: str | None = None  # a scene file benchmarked besides the synthetic ones
    frames: int = 3  # timed frames per measurement
    warmup: int = 1  # untimed frames first (shader compilation, uploads, allocator warm-up)
    seed: int = 0
    settings: RenderSettings = field(default_factory=RenderSettings)


def parse_size(text: str) -> int:
    """'10k' -> 10000, '1M' -> 1000000, '2500' -> 2500. Raises ValueError."""
    t = text.strip().lower().replace("_", "")
    mult = 1
    if t.endswith("k"):
        mult, t = 1_000, t[:-1]
    elif t.endswith("m"):
        mult, t = 1_000_000, t[:-1]
    try:
        value = float(t) * mult
    except ValueError:
        value = -1.0
    if not t or not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"{text!r} is not a count like 10k, 1M or 2500")
    return int(value)


def parse_resolution(text: str) -> tuple[int, int]:
    """'800x600' -> (800, 600). Raises ValueError."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or min(int(p) for p in parts) < 1:
        raise ValueError(f"{text!r} is not a resolution like 800x600")
    return int(parts[0]), int(parts[1])


def synthetic_gaussians(n: int, seed: int = 0, sh_degree: int = 3, extent: float = 1.0,
                        log_scale: float = -4.5, log_scale_std: float = 0.5) -> GaussianScene:
    """N random Gaussians in a cube of half-size `extent` (the bench and test distribution).

    Means uniform in the cube, log-scales N(log_scale, log_scale_std), random rotations, opacity
    logits N(0, 1), DC colour N(0, 0.8), higher SH bands N(0, 0.1). Same draws as
    tests/conftest.py::random_gaussians for the same seed.
    """
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * extent
    quats = torch.randn(n, 4, generator=g)
    log_scales = log_scale + log_scale_std * torch.randn(n, 3, generator=g)
    logits = torch.randn(n, generator=g)
    sh = torch.zeros(n, k, 3)
    sh[:, 0] = torch.randn(n, 3, generator=g) * 0.8
    if k > 1:
        sh[:, 1:] = torch.randn(n, k - 1, 3, generator=g) * 0.1
    return GaussianScene.from_raw(means, quats, log_scales, logits, sh)


def bench_camera(width: int, height: int, distance: float = 3.0, fov_y_deg: float = 50.0) -> Camera:
    """The synthetic scene's camera: `distance` from the origin, 30 deg azimuth, 20 deg elevation, -Y up."""
    az, el = math.radians(30.0), math.radians(20.0)
    eye = distance * np.array([math.cos(el) * math.cos(az), -math.sin(el), math.cos(el) * math.sin(az)])
    return Camera.from_fov(width, height, fov_y_deg, look_at_pose(eye, (0, 0, 0), (0, -1, 0)))


def frame_camera(bounds: np.ndarray, width: int, height: int, fov_y_deg: float = 50.0,
                 up=(0.0, -1.0, 0.0)) -> Camera:
    """A camera that sees the whole box `bounds` [2,3] from a 3/4 view."""
    lo, hi = np.asarray(bounds, dtype=np.float64)
    centre, radius = (lo + hi) / 2, max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
    dist = radius / math.sin(math.radians(fov_y_deg) / 2)
    up = np.asarray(up, dtype=np.float64)
    side = np.cross(up, [1.0, 0, 0] if abs(up[0]) < 0.9 else [0, 0, 1.0])
    d = side / np.linalg.norm(side) + 0.5 * up / np.linalg.norm(up)
    eye = centre + dist * d / np.linalg.norm(d)
    return Camera.from_fov(width, height, fov_y_deg, look_at_pose(eye, centre, up), near=dist * 1e-3)


def measure(renderers: dict, scenes: dict, camera: Camera, settings: RenderSettings, frames: int,
            warmup: int, say=lambda msg: None) -> dict:
    """Time each named renderer on its scene, interleaved: `warmup` untimed frames each, then
    `frames` rounds of one timed frame per renderer. Returns {name: wall times, per-stage medians,
    counters}, each with "speedup_vs" {other: median over rounds of other's time / this one's}."""
    for name, r in renderers.items():
        for _ in range(warmup):
            r.render(scenes[name], camera, settings)
    walls = {name: [] for name in renderers}
    draws = {name: [] for name in renderers}
    stages = {name: {} for name in renderers}
    counters = {}
    for i in range(max(1, frames)):
        say(f"  round {i + 1}/{max(1, frames)}")
        for name, r in renderers.items():
            if len(renderers) > 1:
                time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            frame = r.render(scenes[name], camera, settings)
            walls[name].append((time.perf_counter() - t0) * 1e3)
            for k, v in frame.stats.stages_ms.items():
                stages[name].setdefault(k, []).append(v)
            draws[name].append(draw_ms(frame.stats.stages_ms))
            counters[name] = dict(frame.stats.counters)
    for name, r in renderers.items():
        if getattr(r, "count_blends", True) is False:
            # Timed without counting the blends (what a video or a viewer without statistics
            # pays): the counters come from one more, untimed, frame that counts them.
            r.count_blends = True
            counters[name] = dict(r.render(scenes[name], camera, settings).stats.counters)
            r.count_blends = False
    out = {}
    for name, w in walls.items():
        out[name] = {
            "median_ms": statistics.median(w),
            "min_ms": min(w),
            "frames_ms": w,
            "stages_ms": {k: statistics.median(v) for k, v in stages[name].items()},
            "draw_ms": statistics.median(draws[name]),
            "counters": counters[name],
            # > 1: this backend is that many times faster than the other, round by round
            "speedup_vs": {o: statistics.median(b / max(a, 1e-9) for a, b in zip(w, walls[o], strict=True))
                           for o in walls if o != name},
        }
    return out


def draw_ms(stages_ms: dict) -> float:
    """A frame's drawing time: its stages without the read-back and the upload (what an
    interactive frame costs; on GPUs the GL timer queries of the stages, see _make_renderer)."""
    return sum(v for k, v in stages_ms.items() if k not in ("readback", "upload"))


def _make_renderer(name: str):
    from . import get_renderer

    if name == "gl":
        # "auto": GL timer queries per stage on a GPU, synchronised wall clock on llvmpipe.
        return get_renderer("gl", timing="auto", count_blends=False)
    import torch

    return get_renderer(name, device="cuda" if torch.cuda.is_available() else "cpu")


def run_bench(config: BenchConfig, progress=None) -> dict:
    """Run every (scene, backend) measurement; returns the JSON-ready report.

    progress: optional callable(str) told about each measurement as it starts.
    """
    say = progress or (lambda msg: None)
    renderers, skipped = {}, {}
    for name in config.backends:
        try:
            renderers[name] = _make_renderer(name)
        except (RuntimeError, ValueError) as e:
            skipped[name] = str(e)
            say(f"skipping backend {name}: {e}")
    W, H = config.resolution
    cases = [(f"synthetic-{n}", lambda n=n: synthetic_gaussians(n, config.seed), "synthetic")
             for n in config.sizes]
    if config.scene_path:
        cases.append((os.path.basename(config.scene_path), None, "file"))

    results = []
    for label, make, kind in cases:
        if kind == "file":
            from scenes import load_scene

            scene = load_scene(config.scene_path)
            camera = frame_camera(scene.bounds(), W, H, up=getattr(scene, "up", None) or (0.0, -1.0, 0.0))
        else:
            scene = make()
            camera = bench_camera(W, H)
        usable = {}
        for name, r in renderers.items():
            if r.supports(scene):
                usable[name] = r
            else:
                say(f"{label}: backend {name} cannot render a {scene.kind!r} scene, skipped")
        say(f"{label} ({len(scene)} Gaussians) {W}x{H} on {', '.join(usable)}: {config.warmup} warm-up + "
            f"{config.frames} timed frames each, interleaved")
        # The torch backend on CUDA gets the scene on its device once, as a viewer would hold it.
        scenes = {name: scene.to(r.device) if getattr(r, "device", None) is not None else scene
                  for name, r in usable.items()}
        timed = measure(usable, scenes, camera, config.settings, config.frames, config.warmup, say)
        rows = [{"scene": label, "n": len(scene), "backend": name, "resolution": [W, H], **m}
                for name, m in timed.items()]
        del scenes
        results.extend(rows)
        del scene
    for r in renderers.values():
        if hasattr(r, "release"):
            r.release()
    cfg = asdict(config)
    cfg["settings"] = asdict(config.settings)
    return {"config": cfg, "machine": machine_info(), "skipped_backends": skipped, "results": results}


def machine_info() -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform()}
    try:
        from .gl_backend import gl_available

        ok, what = gl_available()
        info["gl"] = what if ok else f"unavailable: {what}"
    except Exception as e:  # noqa: BLE001 - informational only
        info["gl"] = f"unavailable: {e}"
    return info


def format_table(report: dict) -> str:
    """A readable table: one row per (scene, backend), stage medians in ms, counters, speed-ups."""
    head = ["scene", "backend", "median", "min", "draw", "draw fps", *STAGES, "visible", "tile pairs",
            "blended", "speed-up"]
    lines = []
    for r in report["results"]:
        c = r["counters"]
        blended = c.get("blended_samples", c.get("blended_pairs"))
        sp = ", ".join(f"{v:.2f}x vs {k}" for k, v in r["speedup_vs"].items())
        d = r.get("draw_ms", 0.0)
        fps = 1e3 / d if d > 0 else 0.0
        lines.append([r["scene"], r["backend"], f"{r['median_ms']:.1f}", f"{r['min_ms']:.1f}", f"{d:.2f}",
                      f"{fps:.0f}" if fps >= 10 else (f"{fps:.2g}" if fps > 0 else "-")]
                     + [f"{r['stages_ms'][s]:.1f}" if s in r["stages_ms"] else "-" for s in STAGES]
                     + [_count(c.get("visible")), _count(c.get("tile_pairs")), _count(blended), sp or "-"])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*row) for row in lines]
    res = report["config"]["resolution"]
    out.append(f"milliseconds per frame at {res[0]}x{res[1]} (median of {report['config']['frames']}; "
               "stages: medians); backends take turns frame by frame, and a speed-up is the median "
               "of the per-round ratios. draw: the stages but the read-back, per frame (median), "
               "what a viewer's frame costs; gl times its stages by GL timer queries on GPUs, by "
               "the wall clock with a finish on CPU rasterizers. tile pairs: gl counts the tiles "
               "(of its tile size) that "
               "each Gaussian's alpha >= 1/255 ellipse reaches, torch the twin's whole 16 px "
               "rectangles. blended: gl counts pixel-Gaussian blends (in one more, untimed frame: "
               "its timed frames do not count them), torch counts (tile, "
               "Gaussian) pairs that blended into at least one pixel.")
    return "\n".join(out)


def _count(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v / 1e6:.2f}M" if v >= 1e6 else (f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}")
