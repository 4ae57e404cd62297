"""OpenGL context helpers: a standalone EGL context, availability, and stage-named error checks."""

from __future__ import annotations

import os

GL_REQUIRE = 430  # compute shaders and shader storage buffers


class GLStageError(RuntimeError):
    """A GL error was raised; the message names the pipeline stage that raised it."""


def create_context():
    """A standalone OpenGL 4.3+ context through EGL (Mesa llvmpipe where there is no GPU).

    Raises RuntimeError with the reason when none can be made.
    """
    try:
        import moderngl
    except ImportError as e:
        raise RuntimeError(f"the GL backend needs moderngl: {e}") from None
    try:
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


def debug_enabled() -> bool:
    """RADVIEW_GL_DEBUG=1 checks ctx.error after every stage instead of once per frame."""
    return os.environ.get("RADVIEW_GL_DEBUG", "") not in ("", "0")


def check_error(ctx, stage: str) -> None:
    """Raise GLStageError naming `stage` if the context holds an error."""
    err = ctx.error
    if err != "GL_NO_ERROR":
        raise GLStageError(f"OpenGL error {err} in stage {stage!r}")
