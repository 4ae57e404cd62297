"""Convert a scene between formats: `radview convert IN -o OUT [--format NAME]`.

The writer is picked by the output's extension (`.ply` is INRIA 3DGS, `.compressed.ply` the
SuperSplat compressed PLY, `.sog` a SOG ZIP bundle, a path without extension a SOG folder) or by
--format. Prints the count, the formats and the error report of lossy writers.
"""

from __future__ import annotations

import json
import math


def add_arguments(parser) -> None:
    parser.add_argument("input", help="scene file or folder to read")
    parser.add_argument("-o", "--output", required=True, help="file or folder to write")
    parser.add_argument("--format", default=None,
                        help="writer name (ply_3dgs, compressed_ply, sog, splat, spz, ...); "
                             "default: by the output's extension")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else str(v)
    return str(v)


def run(args) -> int:
    from pathlib import Path

    from app.cli import UsageError
    from scenes import load as scene_load
    from scenes import load_scene, save_scene

    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        raise UsageError("the output would overwrite the input; choose another output path")
    scene = load_scene(src)  # SceneLoadError -> exit 2 with one line (app/cli.py)
    try:
        # The same choice save_scene makes (.ply -> the flavour of the scene's kind), to name it.
        default = getattr(scene_load, "_default_writer", lambda *_: None)(scene, dst)
        spec = scene_load.format_for_output(dst, args.format or default)
        report = save_scene(scene, dst, format=spec.name)
    except ValueError as e:  # unknown --format, no writer for the extension, wrong scene kind
        raise UsageError(str(e)) from e
    except OSError as e:
        raise UsageError(f"cannot write {dst}: {e.strerror or e}") from e
    report = dict(report or {})
    summary = {"input": str(src), "input_format": scene.meta.get("format"), "output": str(dst),
               "output_format": spec.name, "count": len(scene) if hasattr(scene, "__len__") else None}
    dropped = scene.meta.get("dropped_nonfinite")
    if dropped:
        summary["input_dropped_nonfinite"] = dropped
    if args.json:
        print(json.dumps({**summary, "report": report}, default=str))
        return 0
    print(f"read  {src} ({summary['input_format']}): {summary['count']:,} primitives"
          + (f", {dropped:,} non-finite dropped" if dropped else ""))
    print(f"wrote {dst} ({spec.name})")
    warnings = report.pop("warnings", None) or []
    for k, v in report.items():
        if k in ("format",):
            continue
        print(f"  {k}: {_fmt(v)}")
    for w in warnings:
        print(f"  warning: {w}")
    return 0
