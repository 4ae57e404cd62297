"""Open the viewer on a scene file (`radview`, `radview PATH`, `radview view PATH`).

Qt is imported inside run(), so the other subcommands never load it.
"""

from __future__ import annotations

import sys
from pathlib import Path


def demo_path() -> Path | None:
    """The bundled demo scene, if this installation has one."""
    import assets

    p = Path(assets.__file__).resolve().parent / "demo.ply"
    return p if p.exists() else None


def add_arguments(parser) -> None:
    parser.add_argument("path", nargs="?", help="scene file or folder (default: the bundled demo scene)")
    parser.add_argument("--backend", choices=("gl", "torch"), default="gl",
                        help="renderer to start with (gl falls back to torch without OpenGL 4.3)")
    parser.add_argument("--size", default=None, metavar="WxH", help="initial window size, e.g. 1280x800")


def _parse_size(text: str | None):
    if not text:
        return None
    from .cli import UsageError

    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size must look like 1280x800, got {text!r}") from None
    if w < 64 or h < 64:
        raise UsageError(f"--size {text} is too small (64x64 at least)")
    return w, h


def run(args) -> int:
    from .cli import UsageError

    size = _parse_size(args.size)
    path = args.path
    if path is not None and not Path(path).exists():
        raise UsageError(f"{path}: no such file or folder")

    from renderer.gl_backend.context import denormals_flushed

    # The whole session with denormals flushed: llvmpipe starts its compute threads, which inherit
    # this thread's floating-point state, when Qt first initialises GL (denormals cost a blend ~10x
    # per vector operation; renderer/gl_backend/context.py).
    with denormals_flushed():
        return _run_app(args, size, path)


def _run_app(args, size, path) -> int:
    from PySide6.QtGui import QSurfaceFormat
    from PySide6.QtWidgets import QApplication

    from .viewport import surface_format

    QSurfaceFormat.setDefaultFormat(surface_format())  # before the QApplication, for every GL widget
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Radview")
    app.setOrganizationName("Radview")

    from .main_window import MainWindow

    win = MainWindow(backend=args.backend)
    if size:
        win.resize(*size)
    win.show()
    if path is None:
        demo = demo_path()
        if demo is not None:
            win.session.open_path(demo)
        else:
            win.statusBar().showMessage("No demo scene bundled: drop a scene file on the window "
                                        "or use File > Open")
    else:
        win.session.open_path(path)
    return int(app.exec())
