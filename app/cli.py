"""`radview` command line: view, render, info, convert, bench (no Qt imported here).

Each subcommand lives in its own module app/cmd_<name>.py exposing
`add_arguments(parser)` and `run(args) -> int`. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "view": "open the viewer (default when the first argument is a path or absent)",
    "render": "render a still (.png) or a video (.mp4) headless",
    "info": "print what a scene file holds",
    "convert": "convert a scene between formats",
    "bench": "time the renderers stage by stage",
    "train": "fit a scene to a set of posed images",
}


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radview", description="Radiance-field viewer and tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        try:
            mod = importlib.import_module(f"app.cmd_{name}")
        except ModuleNotFoundError as e:
            if e.name == f"app.cmd_{name}":
                continue
            raise
        p = sub.add_parser(name, help=help_, description=(mod.__doc__ or help_).strip().split("\n")[0])
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `radview`, `radview PATH`: the viewer.
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        argv = ["view", *argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    from scenes import SceneLoadError

    try:
        return int(args._run(args) or 0)
    except (UsageError, SceneLoadError) as e:
        print(f"radview {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"radview {args.command}: cancelled", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
