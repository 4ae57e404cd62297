#!/usr/bin/env python
"""Screenshots of the running viewer window, and its interactive frame rate.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_viewer.py [SCENE] -o DIR
    xvfb-run -a .venv/bin/python scripts/screenshot_viewer.py SCENE --fps --backend gl
    xvfb-run -a .venv/bin/python scripts/screenshot_viewer.py --synthetic 100000 --fps --backend torch

SCENE defaults to the bundled demo. --synthetic N shows N random Gaussians instead.
--fps drags the camera continuously and reports presented frames per second while moving
(reduced resolution) and at rest (full resolution), with the resolution the viewer chose.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_scene(n: int, seed: int = 0):
    """N random Gaussians in a unit cube, SH degree 3 (the bench distribution)."""
    import torch

    from scenes import GaussianScene

    g = torch.Generator().manual_seed(seed)
    sh = torch.zeros(n, 16, 3)
    sh[:, 0] = torch.randn(n, 3, generator=g) * 0.8
    sh[:, 1:] = torch.randn(n, 15, 3, generator=g) * 0.1
    means = torch.rand(n, 3, generator=g) * 2 - 1
    quats = torch.randn(n, 4, generator=g)
    log_scales = -4.5 + 0.5 * torch.randn(n, 3, generator=g)
    return GaussianScene.from_raw(means, quats, log_scales, torch.randn(n, generator=g), sh)


def pump(app, until, timeout_s: float = 120.0) -> bool:
    """Run the Qt event loop until `until()` is true (checked every 5 ms) or the timeout.

    A QEventLoop, not a Python loop around processEvents: Python spinning here would hold the
    GIL and slow the render thread, which a real session (app.exec()) does not.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    if until():
        return True
    loop = QEventLoop()
    t0 = time.perf_counter()
    poll = QTimer(interval=5)
    poll.timeout.connect(lambda: (until() or time.perf_counter() - t0 > timeout_s) and loop.quit())
    poll.start()
    loop.exec()
    poll.stop()
    return until()


def settle(app, win) -> None:
    vp = win.viewport
    vp.update()
    pump(app, lambda: not win.session.loading and not vp.interactive and vp.frame_current())
    pump(app, lambda: False, 0.2)  # let the last frame reach the screen


def measure(app, win, seconds: float, adaptive: bool) -> dict:
    """Orbit continuously for `seconds`, as a mouse drag does (a 2 px move every 16 ms whether or not
    a frame is ready); presented frames per second and the render size the viewer chose."""
    from PySide6.QtCore import QTimer

    vp = win.viewport
    vp.adaptive = adaptive
    settle(app, win)
    sizes = []
    vp.frame_presented.connect(lambda m: sizes.append((m.width, m.height, m.frame_ms, m.interactive)))
    mouse = QTimer(interval=16)
    mouse.timeout.connect(lambda: vp.drag(2.0, 0.0))
    n0, t0 = vp.frames_presented, time.perf_counter()
    mouse.start()
    pump(app, lambda: time.perf_counter() - t0 > seconds, seconds + 5)
    mouse.stop()
    dt = time.perf_counter() - t0
    frames = vp.frames_presented - n0
    vp.frame_presented.disconnect()
    vp.adaptive = True
    moving = [s for s in sizes if s[3]] or sizes
    tail = moving[len(moving) // 2:] or moving  # after the resolution has adapted
    return {"fps": frames / dt, "frames": frames,
            "size": f"{tail[-1][0]}x{tail[-1][1]}" if tail else "?",
            "frame_ms_median": sorted(s[2] for s in tail)[len(tail) // 2] if tail else math.nan}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("scene", nargs="?", help="scene file (default: the bundled demo)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N", help="show N random Gaussians")
    ap.add_argument("-o", "--out", default="/tmp/radview_shots", help="folder for the PNGs")
    ap.add_argument("--backend", choices=("gl", "torch"), default="gl")
    ap.add_argument("--size", default="800x600", help="viewport size WxH (about, for screenshots)")
    ap.add_argument("--fps", action="store_true", help="measure frame rates instead of saving screenshots")
    ap.add_argument("--seconds", type=float, default=8.0, help="--fps: seconds of motion per measurement")
    args = ap.parse_args(argv)

    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QSurfaceFormat
    from PySide6.QtWidgets import QApplication

    from app.viewport import surface_format

    QSurfaceFormat.setDefaultFormat(surface_format())
    app = QApplication.instance() or QApplication(sys.argv[:1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Keep the user's window layout and recent files out of this.
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(out / "qsettings"))

    from app.cmd_view import demo_path
    from app.main_window import MainWindow

    w, h = (int(v) for v in args.size.lower().split("x"))
    win = MainWindow(backend=args.backend)
    if args.fps:
        win.viewport.setFixedSize(w, h)  # measure at a known size
    else:
        win.resize(w + 560, h + 60)  # room for the docks around a viewport of about w x h
    win.show()
    if args.synthetic:
        win.session.set_scene(synthetic_scene(args.synthetic), f"synthetic-{args.synthetic}")
        name = f"synthetic{args.synthetic}"
    else:
        path = Path(args.scene) if args.scene else demo_path()
        if path is None:
            print("no scene given and no bundled demo", file=sys.stderr)
            return 2
        win.session.open_path(path)
        pump(app, lambda: not win.session.loading)
        if win.session.scene is None:
            print(f"could not open {path}: {win.last_error}", file=sys.stderr)
            win.close()
            return 2
        name = path.stem
    settle(app, win)
    if win.viewport.gl_error and args.backend == "gl":
        print(f"note: {win.viewport.gl_error}", file=sys.stderr)

    if args.fps:
        n = len(win.session.scene)
        for adaptive in (True, False):
            r = measure(app, win, args.seconds, adaptive)
            label = "moving (adaptive resolution)" if adaptive else "full resolution every frame"
            print(f"{name} n={n} backend={win.session.backend} viewport={w}x{h} {label}: "
                  f"{r['fps']:.1f} FPS over {r['frames']} frames, render size {r['size']}, "
                  f"median frame {r['frame_ms_median']:.0f} ms")
        settle(app, win)
        last = win.viewport.last_frame
        print(f"{name} resting frame: {last.width}x{last.height} {last.frame_ms:.0f} ms "
              f"stages {({k: round(v, 1) for k, v in last.stages_ms.items()})}")
        win.close()
        return 0

    shots = []

    def shot(tag: str):
        settle(app, win)
        p = out / f"viewer_{name}_{win.session.backend}_{tag}.png"
        win.grab().save(str(p))
        shots.append(p)

    shot("colour")
    win.viewport.drag(120, 40)
    shot("orbited")
    for mode in ("depth", "points"):
        # A backend that refuses a mode falls back to colour and says so in the status bar.
        win.scene_panel.mode.setCurrentIndex(win.scene_panel.mode.findData(mode))
        pump(app, lambda: False, 0.1)
        shot(mode if win.session.settings.mode == mode else f"{mode}_refused")
    win.scene_panel.mode.setCurrentIndex(win.scene_panel.mode.findData("rgb"))

    # A file that fails to load: the dialog over the window (grab the whole X screen to see both).
    bad = out / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\nend_header\n")
    win.session.open_path(bad)
    pump(app, lambda: win.error_box is not None and win.error_box.isVisible())
    pump(app, lambda: False, 0.3)
    p = out / f"viewer_{name}_load_error_screen.png"
    app.primaryScreen().grabWindow(0).save(str(p))
    shots.append(p)
    win.error_box.close()
    win.close()
    for p in shots:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
