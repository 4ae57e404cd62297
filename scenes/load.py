"""load_scene / save_scene: pick a format by extension, then by sniffing the header.

Each module in scenes/formats defines `FORMAT = FormatSpec(...)`. Modules listed in
_FORMAT_MODULES that do not exist yet are skipped, so formats can land one at a time.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SceneLoadError

# Order matters for sniffing: the more specific PLY flavours come before the INRIA one.
_FORMAT_MODULES = [
    "compressed_ply",
    "ply_4d",
    "ply_convex",
    "ply_3dgs",
    "splat",
    "ksplat",
    "spz",
    "sog",
    "rotor4d_ckpt",
    "yang4d_ckpt",
    "flipbook",
    "convex_pt",
    "dvgo",
    "plenoxels",
]


@dataclass
class FormatSpec:
    """One on-disk format: how to recognise, read and (optionally) write it."""

    name: str  # short id used by `radview convert --format` and Scene.meta["format"]
    extensions: tuple[str, ...]  # lower case, with the dot; "" for folders
    sniff: Callable[[Path, bytes], bool]  # (path, first 4 KiB or b"" for folders) -> is this format?
    read: Callable[[Path], Any]  # path -> Scene; raises SceneLoadError
    write: Callable[..., dict | None] | None = None  # (scene, path, **opts) -> report of errors
    description: str = ""
    kinds: tuple[str, ...] = field(default=("gaussians",))  # scene kinds the writer accepts


def formats() -> list[FormatSpec]:
    """Every format available in this installation, in sniffing order."""
    out = []
    for name in _FORMAT_MODULES:
        try:
            mod = importlib.import_module(f"scenes.formats.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"scenes.formats.{name}":
                continue
            raise
        out.append(mod.FORMAT)
    return out


def _suffix(path: Path) -> str:
    return "".join(path.suffixes[-2:]).lower() if path.name.lower().endswith(".compressed.ply") \
        else path.suffix.lower()


def _head(path: Path) -> bytes:
    if path.is_dir():
        return b""
    with open(path, "rb") as f:
        return f.read(4096)


def detect_format(path: str | os.PathLike) -> FormatSpec:
    """The format of an existing file or folder; SceneLoadError if none fits."""
    p = Path(path)
    if not p.exists():
        raise SceneLoadError(p, "no such file or folder")
    try:
        head = _head(p)
    except OSError as e:
        raise SceneLoadError(p, f"cannot read the file ({e.strerror or e})") from e
    if not p.is_dir() and len(head) == 0:
        raise SceneLoadError(p, "the file is empty")
    ext = p.suffix.lower()
    fmts = formats()
    by_ext = [f for f in fmts if ext in f.extensions or (p.is_dir() and "" in f.extensions)]
    for f in by_ext + [f for f in fmts if f not in by_ext]:
        try:
            if f.sniff(p, head):
                return f
        except OSError:
            continue
    known = sorted({e for f in fmts for e in f.extensions if e})
    if by_ext:
        raise SceneLoadError(p, f"not a valid {by_ext[0].description or by_ext[0].name} file "
                                "(the header is not one Radview recognises)")
    raise SceneLoadError(p, f"unknown scene format (supported: {', '.join(known)})")


def _read_options(read: Callable, opts: dict) -> dict:
    """The options (not None) that `read` takes by name; a reader without them gets none."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if not opts:
        return {}
    params = inspect.signature(read).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return opts
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return {k: v for k, v in opts.items() if k in names}


def load_scene(path: str | os.PathLike, format: str | None = None, **opts):
    """Read a scene file or folder into a Scene. Raises SceneLoadError naming the problem.

    opts: reader options, e.g. fps= (flipbooks) or time_duration=(t0, t1) (4D checkpoints); each
    goes to the format's read() only when that reader takes it (and is not None), so the same
    options can be given for any file.
    """
    p = Path(path)
    if format is not None:
        spec = get_format(format)
        if not p.exists():
            raise SceneLoadError(p, "no such file or folder")
    else:
        spec = detect_format(p)
    try:
        scene = spec.read(p, **_read_options(spec.read, opts))
    except SceneLoadError:
        raise
    except MemoryError as e:
        raise SceneLoadError(p, "not enough memory to load this scene") from e
    except (OSError, EOFError) as e:
        raise SceneLoadError(p, f"cannot read the file ({e})") from e
    scene.meta.setdefault("format", spec.name)
    scene.meta.setdefault("path", str(p))
    return scene


def get_format(name: str) -> FormatSpec:
    for f in formats():
        if f.name == name:
            return f
    raise ValueError(f"unknown format {name!r} (known: {', '.join(f.name for f in formats())})")


def format_for_output(path: str | os.PathLike, format: str | None = None) -> FormatSpec:
    """The writer for an output path: by explicit name, else by extension."""
    if format:
        return get_format(format)
    p = Path(path)
    suffix = _suffix(p)
    cands = [f for f in formats() if f.write and (suffix in f.extensions or p.suffix.lower() in f.extensions)]
    if not cands:
        raise ValueError(f"{p}: no writer for extension {p.suffix or '(none)'}")
    return cands[0]


def _default_writer(scene, path: Path) -> str | None:
    """`.ply` is shared by several flavours: pick the one for the scene's kind."""
    if path.suffix.lower() != ".ply" or path.name.lower().endswith(".compressed.ply"):
        return None
    return {"gaussians": "ply_3dgs", "gaussians4d": "ply_4d", "convex": "ply_convex"}.get(
        getattr(scene, "kind", ""))


def save_scene(scene, path: str | os.PathLike, format: str | None = None, **opts) -> dict:
    """Write a scene. `format` picks the writer (default: by extension; `.ply` is INRIA 3DGS).

    Returns a report dict; lossy writers put the error they introduced there
    (e.g. {"max_position_error": 1e-4}).
    """
    spec = format_for_output(path, format or _default_writer(scene, Path(path)))
    if getattr(scene, "kind", None) not in spec.kinds:
        raise ValueError(f"the {spec.name} writer cannot store a {getattr(scene, 'kind', '?')} scene")
    report = spec.write(scene, Path(path), **opts)
    return report or {}
