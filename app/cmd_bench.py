"""Time the renderers stage by stage on synthetic Gaussian scenes (and optionally a scene file).

    radview bench [--sizes 10k,30k] [--resolution 800x800] [--backends gl,torch] [--scene PATH]
                  [--json OUT] [--frames N] [--warmup N]
"""

from __future__ import annotations

import json
import sys

from app.cli import UsageError

KNOWN_BACKENDS = ("gl", "torch")


def add_arguments(parser) -> None:
    parser.add_argument("--sizes", default="10k,30k",
                        help="comma-separated synthetic scene sizes, e.g. 10k,100k,300k,1M "
                             "(default 10k,30k: about 2 min with torch on 2 cores)")
    parser.add_argument("--resolution", default="800x800", help="WIDTHxHEIGHT (default 800x800)")
    parser.add_argument("--backends", default="gl,torch",
                        help="comma-separated: gl, torch (default gl,torch)")
    parser.add_argument("--scene", default=None, metavar="PATH", help="also benchmark this scene file")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the numbers to this JSON file")
    parser.add_argument("--frames", type=int, default=3, help="timed frames per measurement (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames first (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic scene seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args) -> int:
    from renderer.bench import BenchConfig, format_table, parse_resolution, parse_size, run_bench

    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
        resolution = parse_resolution(args.resolution)
    except ValueError as e:
        raise UsageError(str(e)) from None
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in KNOWN_BACKENDS]
    if unknown:
        raise UsageError(f"unknown backend {unknown[0]!r} (use {', '.join(KNOWN_BACKENDS)})")
    if not backends:
        raise UsageError("--backends names no backend")
    if args.frames < 1 or args.warmup < 0:
        raise UsageError("--frames must be >= 1 and --warmup >= 0")
    if not sizes and not args.scene:
        raise UsageError("nothing to measure: give --sizes or --scene")
    config = BenchConfig(sizes=sizes, resolution=resolution, backends=backends, scene_path=args.scene,
                         frames=args.frames, warmup=args.warmup, seed=args.seed)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"bench: {msg}", file=sys.stderr, flush=True)

    report = run_bench(config, progress)
    print(format_table(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return 0 if report["results"] else 1
