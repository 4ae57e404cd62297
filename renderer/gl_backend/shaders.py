"""The one GLSL loader: shaders are files in the `shaders` package, loaded by name, never from the CWD.

`load_source(name, defines)` returns the text with `#include "file.glsl"` expanded and `#line`
directives inserted, so that compiler messages point at the right file and line. GLSL's `#line`
takes a source-string *number*, not a name: every file gets a number (its index in the include
order) and `ShaderCompileError` translates "N:LINE" back into "file.glsl:LINE".
`compute_shader(ctx, name, defines)` compiles once per (context, name, defines).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
_VERSION = re.compile(r"^\s*#\s*version\b")
# Mesa: "0:12(3): error: ...", NVIDIA: "0(12) : error C1008: ...", ANGLE/others: "ERROR: 0:12: ...".
_LOC = re.compile(r"\b(\d+)(?::(\d+)\(\d+\)|\((\d+)\)|:(\d+)(?=:))")


class ShaderCompileError(RuntimeError):
    """A shader failed to compile or link; the message names the shader file(s) and lines."""

    def __init__(self, name: str, log: str):
        self.name = name
        self.log = log
        super().__init__(f"GLSL shader {name!r} failed to compile:\n{log}")


@cache
def read_shader_file(name: str) -> str:
    """Raw text of shaders/NAME from the installed package."""
    path = resources.files("shaders").joinpath(name)
    if not path.is_file():
        raise FileNotFoundError(f"no shader named {name!r} in the shaders package")
    return path.read_text(encoding="utf-8")


def load_source(name: str, defines: dict | None = None) -> tuple[str, list[str]]:
    """Expanded source of shaders/NAME and the file list (index = the `#line` source-string number).

    `defines` become `#define KEY VALUE` lines right after `#version`.
    """
    files: list[str] = []
    out: list[str] = []

    def expand(fname: str, stack: tuple[str, ...]) -> None:
        if fname in stack:
            raise ValueError(f"shader include cycle: {' -> '.join((*stack, fname))}")
        if fname in files and stack:  # an include seen before: include-once semantics
            return
        files.append(fname)
        num = len(files) - 1
        lines = read_shader_file(fname).splitlines()
        start = 0
        if not stack:
            if not lines or not _VERSION.match(lines[0]):
                raise ValueError(f"shader {fname!r} must start with a #version line")
            out.append(lines[0])
            for k, v in (defines or {}).items():
                out.append(f"#define {k} {v}")
            start = 1
        out.append(f"#line {start + 1} {num}")
        for i in range(start, len(lines)):
            m = _INCLUDE.match(lines[i])
            if m:
                expand(m.group(1), (*stack, fname))
                out.append(f"#line {i + 2} {num}")
            else:
                out.append(lines[i])

    expand(name, ())
    return "\n".join(out) + "\n", files


def map_log(log: str, files: list[str]) -> str:
    """Rewrite source-string numbers in a compiler log into file names: '0:12(3)' -> 'blend.comp:12(3)'."""

    def sub(m: re.Match) -> str:
        idx = int(m.group(1))
        if idx >= len(files):
            return m.group(0)
        line = m.group(2) or m.group(3) or m.group(4)
        return f"{files[idx]}:{line}" + (m.group(0)[m.group(0).index("("):] if m.group(2) else "")

    return _LOC.sub(sub, log)


_PROGRAMS: dict[tuple, object] = {}


def compute_shader(ctx, name: str, defines: dict | None = None):
    """A compiled moderngl ComputeShader for shaders/NAME, cached per (context, name, defines)."""
    key = (id(ctx), name, tuple(sorted((defines or {}).items())))
    prog = _PROGRAMS.get(key)
    if prog is not None and getattr(prog, "ctx", None) is ctx:
        return prog
    src, files = load_source(name, defines)
    try:
        prog = ctx.compute_shader(src)
    except Exception as e:  # moderngl.Error carries the driver's log
        raise ShaderCompileError(name, map_log(str(e), files)) from None
    _PROGRAMS[key] = prog
    return prog


def forget_context(ctx) -> None:
    """Drop (and release) the programs compiled for a context that is going away."""
    for key in [k for k in _PROGRAMS if k[0] == id(ctx)]:
        prog = _PROGRAMS.pop(key)
        try:
            prog.release()
        except Exception:  # noqa: BLE001 - the context may already be gone
            pass
