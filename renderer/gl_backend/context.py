"""OpenGL context helpers: a standalone EGL context, availability, and stage-named error checks."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import struct
import sys

GL_REQUIRE = 430  # compute shaders and shader storage buffers


class GLStageError(RuntimeError):
    """A GL error was raised; the message names the pipeline stage that raised it."""


# x86-64 MXCSR bits: denormal results flushed to zero (FTZ), denormal inputs read as zero (DAZ).
_FTZ_DAZ = 0x8040
_FENV_BYTES, _MXCSR_OFFSET = 32, 28  # glibc's x86-64 fenv_t: the x87 environment, then MXCSR


@functools.cache
def _libm():
    """glibc's libm where fenv_t has the x86-64 layout above, else None."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    import ctypes.util

    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
        return libm if hasattr(libm, "fegetenv") and hasattr(libm, "fesetenv") else None
    except OSError:
        return None


def _flushing_env():
    """(libm, this thread's floating-point environment, the same with FTZ and DAZ set), or None
    where that cannot be done safely."""
    libm = _libm()
    if libm is None:
        return None
    saved = (ctypes.c_ubyte * _FENV_BYTES)()
    if libm.fegetenv(saved) != 0:
        return None
    mxcsr = struct.unpack_from("<I", bytes(saved), _MXCSR_OFFSET)[0]
    if mxcsr & 0x1F80 != 0x1F80:  # not the usual all-masked exceptions: not a layout we know
        return None
    flushed = (ctypes.c_ubyte * _FENV_BYTES).from_buffer_copy(saved)
    struct.pack_into("<I", flushed, _MXCSR_OFFSET, mxcsr | _FTZ_DAZ)
    return libm, saved, flushed


@contextlib.contextmanager
def denormals_flushed():
    """Flush denormal floats to zero in this thread for the block, then restore its floating-point
    environment (x86-64 Linux; elsewhere nothing changes).

    Threads inherit the floating-point state of the thread that starts them, and llvmpipe starts
    its compute threads when a GL display is first initialised: made inside this block, they
    flush denormals, which their own setup leaves on. Without it a blend whose alpha ratios
    underflow (the tails of large Gaussians in trained scenes) runs at a denormal's ~10x cost per
    vector operation: a test loop took 10.6x as long on denormal values.
    """
    env = _flushing_env()
    if env is None:
        yield
        return
    libm, saved, flushed = env
    libm.fesetenv(flushed)
    try:
        yield
    finally:
        libm.fesetenv(saved)


def create_context():
    """A standalone OpenGL 4.3+ context through EGL (Mesa llvmpipe where there is no GPU).

    Made with denormals flushed (denormals_flushed: llvmpipe's compute threads inherit it).
    Raises RuntimeError with the reason when none can be made.
    """
    try:
        import moderngl
    except ImportError as e:
        raise RuntimeError(f"the GL backend needs moderngl: {e}") from None
    try:
        with denormals_flushed():
            return moderngl.create_standalone_context(backend="egl", require=GL_REQUIRE)
    except Exception as e:  # noqa: BLE001 - every failure means "no usable GL here"
        raise RuntimeError(f"no OpenGL {GL_REQUIRE // 100}.{GL_REQUIRE // 10 % 10} context could be created "
                           f"(EGL standalone): {e}") from None


def gl_available() -> tuple[bool, str]:
    """(True, renderer name) if a GL 4.3 context can be made here, else (False, the reason)."""
    try:
        ctx = create_context()
    except RuntimeError as e:
        return False, str(e)
    try:
        return True, f"{ctx.info.get('GL_RENDERER', '?')} / {ctx.info.get('GL_VERSION', '?')}"
    finally:
        ctx.release()


def is_software(ctx) -> bool:
    """True on CPU rasterizers (llvmpipe, softpipe, SwiftShader), where different fast paths win."""
    name = str(ctx.info.get("GL_RENDERER", "")).lower()
    return any(s in name for s in ("llvmpipe", "softpipe", "swiftshader", "software"))


# Probe for loop_cap: one invocation counts the iterations of a loop meant to run PROBE_ITERATIONS
# times (the increment comes from the buffer so the compiler cannot fold the loop away).
_LOOP_PROBE = """#version 430
layout(local_size_x = 1) in;
layout(std430, binding = 0) buffer B { uint b[]; };
void main() {
    uint n = 0u, step = b[1];
    for (uint i = 0u; i < b[2]; i += step) n += step;
    b[0] = n;
}
"""
PROBE_ITERATIONS = 100_000
_loop_caps: dict[str, int | None] = {}


def loop_cap(ctx) -> int | None:
    """The number of loop iterations after which this GL implementation silently ends an
    invocation's loops (llvmpipe up to Mesa 22: 65535), or None where loops run to their end
    (later Mesa, GPUs). Measured once per implementation (renderer and version string)."""
    key = f"{ctx.info.get('GL_RENDERER', '?')} / {ctx.info.get('GL_VERSION', '?')}"
    if key not in _loop_caps:
        import numpy as np

        buf = ctx.buffer(np.array([0, 1, PROBE_ITERATIONS], np.uint32).tobytes())
        prog = ctx.compute_shader(_LOOP_PROBE)
        try:
            buf.bind_to_storage_buffer(0)
            prog.run(1)
            done = int(np.frombuffer(buf.read(4), np.uint32)[0])
        finally:
            prog.release()
            buf.release()
        _loop_caps[key] = None if done >= PROBE_ITERATIONS else done
    return _loop_caps[key]


def debug_enabled() -> bool:
    """RADVIEW_GL_DEBUG=1 checks ctx.error after every stage instead of once per frame."""
    return os.environ.get("RADVIEW_GL_DEBUG", "") not in ("", "0")


def check_error(ctx, stage: str) -> None:
    """Raise GLStageError naming `stage` if the context holds an error."""
    err = ctx.error
    if err != "GL_NO_ERROR":
        raise GLStageError(f"OpenGL error {err} in stage {stage!r}")
