"""Print what a scene file holds: kind, format, primitive count, SH degree, bounds.

`radview info PATH` prints aligned lines; `--json` prints one object with exactly the keys
kind, format, count, sh_degree (null when the scene has none) and bounds ([[min x, y, z],
[max x, y, z]], the robust box the viewer frames), plus time_range ([t0, t1], seconds) for 4D
scenes. `--fps` (flipbooks) and `--time-duration T0 T1` (4D checkpoints) are reader options.
"""

from __future__ import annotations

import json
import math


def add_arguments(parser) -> None:
    parser.add_argument("path", help="scene file or folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--fps", metavar="F",
                        help="frame rate of a flipbook (folder of per-frame PLYs; default 30)")
    parser.add_argument("--time-duration", nargs=2, metavar=("T0", "T1"),
                        help="time span a 4D checkpoint was trained on (Yang et al. 4DGS)")


def describe(scene) -> dict:
    """The info of a loaded scene as plain Python values (the --json object)."""
    count = len(scene) if hasattr(scene, "__len__") else None
    sh = getattr(scene, "sh_degree", None)
    try:
        sh = None if sh is None else int(sh)
    except (TypeError, ValueError):
        sh = None
    bounds = None
    if hasattr(scene, "bounds"):
        b = scene.bounds()
        bounds = [[float(x) for x in row] for row in b]
    info = {
        "kind": getattr(scene, "kind", type(scene).__name__),
        "format": getattr(scene, "meta", {}).get("format"),
        "count": count,
        "sh_degree": sh,
        "bounds": bounds,
    }
    if info["kind"] == "gaussians4d" and hasattr(scene, "time_range"):
        info["time_range"] = [float(x) for x in scene.time_range()]
    return info


def _fmt_vec(v) -> str:
    return "(" + ", ".join(f"{x:.4g}" if math.isfinite(x) else str(x) for x in v) + ")"


def format_text(info: dict, path: str) -> str:
    rows = [("path", path), ("kind", info["kind"]), ("format", info["format"] or "?")]
    if info["count"] is not None:
        rows.append(("count", f"{info['count']:,}"))
    if info["sh_degree"] is not None:
        rows.append(("sh_degree", str(info["sh_degree"])))
    if info["bounds"] is not None:
        lo, hi = info["bounds"]
        size = [h - l for l, h in zip(lo, hi, strict=True)]
        rows.append(("bounds", f"min {_fmt_vec(lo)}  max {_fmt_vec(hi)}  size {_fmt_vec(size)}"))
    if info.get("time_range") is not None:
        t0, t1 = info["time_range"]
        rows.append(("time_range", f"{t0:.4g} to {t1:.4g} s"))
    width = max(len(k) for k, _ in rows) + 1
    return "\n".join(f"{k + ':':<{width}} {v}" for k, v in rows)


def run(args) -> int:
    from scenes import load_scene

    from .cmd_render import _float, parse_time_duration

    fps = _float(args.fps, "--fps", 0.0, 1000.0, open_lo=True) if args.fps is not None else None
    opts = {"fps": fps, "time_duration": parse_time_duration(args.time_duration)}
    scene = load_scene(args.path, **opts)  # SceneLoadError -> exit 2 with one line (app/cli.py)
    info = describe(scene)
    if args.json:
        print(json.dumps(info))
    else:
        print(format_text(info, str(args.path)))
    return 0
