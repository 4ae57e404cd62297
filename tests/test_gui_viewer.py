"""The viewer window under a virtual X display: drops, navigation, errors, modes and backends.

Run with `xvfb-run -a .venv/bin/pytest tests/test_gui_viewer.py -q` (GL needs the xcb platform,
not offscreen). The viewport is fixed at 320x240 so each frame stays cheap on llvmpipe.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")
if os.environ.get("QT_QPA_PLATFORM") == "offscreen" or not (os.environ.get("DISPLAY") or
                                                            os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("GUI tests need an X display (run under xvfb-run -a)", allow_module_level=True)

import torch  # noqa: E402
from conftest import psnr, random_gaussians, save_diff, shared_file  # noqa: E402
from guikit import (  # noqa: E402,F401 - fixtures are activated by importing them
    WAIT_MS,
    grab,
    isolated_settings,
    no_escaped_exceptions,
    no_thread_left,
    not_background,
    rgb_tensor,
    settle,
)
from PySide6.QtCore import QEvent, QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage, QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from app.main_window import MainWindow  # noqa: E402
from app.messages import StatusMessage  # noqa: E402
from app.workers import running_threads  # noqa: E402

pytestmark = pytest.mark.gui

SCENE = "3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"
SIZE = (320, 240)


def make_window(qtbot) -> MainWindow:
    w = MainWindow(backend="gl")
    qtbot.addWidget(w)
    w.viewport.setFixedSize(*SIZE)
    w.show()
    qtbot.waitExposed(w)
    return w


@pytest.fixture
def win(qtbot):
    w = make_window(qtbot)
    yield w
    w.close()


def drop_files(target, paths):
    """Simulate a drag-and-drop of local files onto `target` (QDragEnterEvent then QDropEvent)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    pos = QPointF(target.width() / 2, target.height() / 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(target, drop)
    return drop


@pytest.fixture
def loaded(qtbot, win):
    path = shared_file(SCENE)
    drop_files(win, [path])
    qtbot.waitUntil(lambda: win.session.scene is not None, timeout=WAIT_MS)
    return win


def test_drop_opens_file_and_renders(qtbot, win):
    assert win.viewport.hint.isVisible()  # empty viewport explains what to do
    path = shared_file(SCENE)
    drop_files(win, [path])
    assert win.session.loading or win.session.scene is not None
    qtbot.waitUntil(lambda: win.session.scene is not None, timeout=WAIT_MS)
    assert path.name in win.windowTitle()
    assert len(win.session.scene) == 9080
    assert not win.viewport.hint.isVisible()
    img = grab(qtbot, win)
    assert img.shape == (SIZE[1], SIZE[0], 3)
    assert not_background(img) > 0.02, save_diff("gui_drop_blank", img, torch.zeros_like(img))
    assert win.recent_files()[0].endswith(path.name)
    assert win.scene_panel.info_labels["Primitives"].text() == "9,080"


def test_mouse_drag_and_w_key_change_image(qtbot, loaded):
    vp = loaded.viewport
    before = grab(qtbot, loaded)
    start, end = QPointF(100, 120), QPointF(160, 100)
    for typ, pos, btn, btns in [
        (QEvent.Type.MouseButtonPress, start, Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton),
        (QEvent.Type.MouseMove, end, Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton),
        (QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton),
    ]:
        QApplication.sendEvent(vp, QMouseEvent(typ, pos, vp.mapToGlobal(pos), btn, btns,
                                               Qt.KeyboardModifier.NoModifier))
    assert vp.interactive  # a move lowers the resolution until the camera rests
    after_drag = grab(qtbot, loaded)
    assert psnr(before, after_drag) < 30, save_diff("gui_drag_same", before, after_drag)

    pose = loaded.session.rig.pose.copy()
    qtbot.keyClick(vp, Qt.Key.Key_W)
    assert np.dot(loaded.session.rig.eye - pose[:3, 3], pose[:3, 2]) > 0  # moved forward
    after_w = grab(qtbot, loaded)
    assert psnr(after_drag, after_w) < 45, save_diff("gui_w_same", after_drag, after_w)


def test_broken_drop_shows_error_and_keeps_scene(qtbot, loaded, tmp_path):
    before = grab(qtbot, loaded)
    good_path = loaded.session.path
    bad = tmp_path / "broken.ply"
    bad.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\n"
                    b"end_header\n\x00\x01")
    drop_files(loaded, [bad])
    qtbot.waitUntil(lambda: loaded.error_box is not None, timeout=WAIT_MS)
    box = loaded.error_box
    assert box.isVisible() and "broken.ply" in box.windowTitle()
    assert loaded.last_error and loaded.last_error in box.text()
    assert loaded.last_error in loaded.statusBar().currentMessage()
    box.close()  # the user dismisses the dialog
    qtbot.waitUntil(lambda: loaded.error_box is None, timeout=5000)
    assert loaded.session.path == good_path
    assert "broken" not in loaded.windowTitle()
    after = grab(qtbot, loaded)
    assert psnr(before, after) > 40, save_diff("gui_broken_changed", before, after)


def test_modes_sh_and_backends(qtbot, loaded):
    if loaded.viewport.gl_error:
        pytest.skip(f"GL backend unavailable here: {loaded.viewport.gl_error}")
    panel = loaded.scene_panel
    colour = grab(qtbot, loaded)

    panel.mode.setCurrentIndex(panel.mode.findData("depth"))
    assert loaded.session.settings.mode == "depth"
    depth = grab(qtbot, loaded)
    assert psnr(colour, depth) < 25, save_diff("gui_depth_like_colour", colour, depth)
    panel.mode.setCurrentIndex(panel.mode.findData("rgb"))

    panel.sh_degree.setValue(0)
    assert loaded.session.settings.sh_degree == 0
    sh0 = grab(qtbot, loaded)
    assert float((sh0 - colour).abs().max()) > 2 / 255, save_diff("gui_sh0_same", colour, sh0)
    panel.sh_degree.setValue(3)

    panel.backend.setCurrentIndex(panel.backend.findData("torch"))
    assert loaded.session.backend == "torch"
    torch_img = grab(qtbot, loaded)
    assert loaded.viewport.last_frame.backend == "torch"
    p = psnr(colour, torch_img)
    assert p > 40, save_diff("gui_torch_vs_gl", colour, torch_img)

    # Another mode through the panel: a new picture, or (if the backend refuses it) colour again.
    panel.mode.setCurrentIndex(panel.mode.findData("ellipsoids"))
    ellipsoids = grab(qtbot, loaded)
    qtbot.wait(20)  # a refusal is handled from the event loop
    if loaded.session.settings.mode == "ellipsoids":
        assert psnr(torch_img, ellipsoids) < 30, save_diff("gui_ellipsoids", torch_img, ellipsoids)
    else:
        assert panel.mode.currentData() == "rgb"

    # A mode no backend knows: a status-bar notice, then colour again, on either backend.
    msgs = []
    loaded.session.message.connect(lambda m: msgs.append(m) if isinstance(m, StatusMessage) else None)
    for backend in ("gl", "torch"):
        panel.backend.setCurrentIndex(panel.backend.findData(backend))
        loaded.session.set_settings(mode="no-such-mode")
        qtbot.waitUntil(lambda: loaded.session.settings.mode == "rgb", timeout=WAIT_MS)
        assert any("no-such-mode" in m.text and backend in m.text for m in msgs)
        assert panel.mode.currentData() == "rgb"


def test_screenshot_camera_json_and_layout(qtbot, loaded, tmp_path):
    shot = tmp_path / "shot.png"
    frame = loaded.save_screenshot(shot)
    img = QImage(str(shot))
    assert (img.width(), img.height()) == SIZE and (frame.width, frame.height) == SIZE

    loaded.copy_camera()
    cam = json.loads(QGuiApplication.clipboard().text())
    assert (cam["width"], cam["height"]) == SIZE
    assert {"fx", "fy", "cx", "cy"} <= cam.keys()
    np.testing.assert_allclose(cam["T_world_camera"], loaded.session.rig.pose)

    assert "W / S" in loaded.key_bindings_text()
    gl = loaded.viewport.renderer("gl") if loaded.viewport.ctx is not None else None
    assert loaded.viewport.count_blends and (gl is None or gl.count_blends)
    loaded.stats_dock.hide()  # nobody sees the blend counts: the GL blend stops counting them
    assert not loaded.viewport.count_blends and (gl is None or not gl.count_blends)
    loaded.close()
    again = make_window(qtbot)
    try:
        assert not again.stats_dock.isVisible() and again.scene_dock.isVisible()
        assert not again.viewport.count_blends
        assert again.recent_files()[0].endswith(SCENE.split("/")[-1])
    finally:
        again.close()


def test_cancel_load_keeps_window_usable(qtbot, win):
    path = shared_file(SCENE)
    win.session.open_path(path)
    assert win.busy.isVisible() or not win.session.loading
    win.session.cancel_load()
    assert not win.busy.isVisible()
    qtbot.waitUntil(lambda: not running_threads(), timeout=WAIT_MS)
    qtbot.wait(50)  # let the dropped result arrive and be ignored
    assert win.session.scene is None
    assert "Cancelled" in win.statusBar().currentMessage()


def test_mouse_and_keys_without_scene_do_nothing(qtbot, win):
    vp = win.viewport
    pos = QPointF(50, 50)
    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseButtonPress, pos, vp.mapToGlobal(pos),
                                           Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton,
                                           Qt.KeyboardModifier.NoModifier))
    QApplication.sendEvent(vp, QMouseEvent(QEvent.Type.MouseMove, pos + QPointF(10, 0),
                                           vp.mapToGlobal(pos), Qt.MouseButton.NoButton,
                                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    qtbot.keyClick(vp, Qt.Key.Key_W)
    qtbot.keyClick(vp, Qt.Key.Key_F)
    assert win.session.rig is None


def test_gl_unavailable_falls_back_to_torch(qtbot, monkeypatch):
    import renderer

    real = renderer.get_renderer

    def no_gl(name="torch", **kw):
        if name == "gl":
            raise RuntimeError("compute shaders unavailable (simulated)")
        return real(name, **kw)

    monkeypatch.setattr(renderer, "get_renderer", no_gl)
    w = make_window(qtbot)
    try:
        notices = []
        w.session.message.connect(lambda m: notices.append(m.text) if isinstance(m, StatusMessage) else None)
        w.session.set_scene(random_gaussians(500, seed=2, sh_degree=1, log_scale=-3.0), "synthetic")
        # The first paint finds no GL backend and falls back.
        qtbot.waitUntil(lambda: w.viewport.last_frame is not None, timeout=WAIT_MS)
        img = grab(qtbot, w)
        assert w.session.backend == "torch" and w.scene_panel.backend.currentData() == "torch"
        assert w.viewport.last_frame.backend == "torch"
        assert any("GL backend unavailable" in t for t in notices)
        assert not_background(img) > 0.01, save_diff("gui_fallback_blank", img, torch.zeros_like(img))
    finally:
        w.close()


def test_reduced_resolution_frame_shows_the_same_picture(qtbot, loaded):
    """While moving, a smaller frame is scaled up to the widget (the GL backend hands the viewer
    display-ready RGBA8 frames in GL's row order): the same picture, the same way up."""
    full = grab(qtbot, loaded)
    vp = loaded.viewport
    vp.interactive, vp.scale = True, 0.5
    n = vp.frames_presented
    half = rgb_tensor(vp.grabFramebuffer())  # (grabbing paints a frame)
    vp.interactive = False
    assert vp.frames_presented > n and vp.last_frame.width == round(SIZE[0] * 0.5)
    same, flipped = psnr(half, full), psnr(half, full.flip(0))
    assert same > 20 and same > flipped + 5, save_diff("gui_reduced_frame", full, half)


def test_resolution_adapts_to_frame_time_and_stats_panel(win):
    from app.messages import FrameRendered
    from app.viewport import INTERACTIVE_FPS, MIN_SCALE, NO_GAIN_FRAMES

    vp, budget = win.viewport, 1000 / INTERACTIVE_FPS
    W, H = vp.physical_size()

    def frame(scale, ms, interactive=True):
        vp._after_frame(FrameRendered("gl", round(W * scale), round(H * scale), interactive, ms))

    frame(1.0, budget / 4, interactive=False)  # fast at full size: no need to lower it
    assert vp.scale == 1.0
    frame(1.0, budget * 1.44, interactive=False)  # a little slow: a little smaller...
    assert vp.scale == pytest.approx(1 / 1.2)
    for _ in range(2):
        frame(vp.scale, budget * 1.5)  # ...and no faster, as noise goes: smaller still, no floor
    assert vp.scale < 0.8 and vp._floor == MIN_SCALE
    frame(1.0, budget * 16, interactive=False)  # 4x too slow per side: a quarter of the size
    assert vp.scale == pytest.approx(0.25)
    vp.interactive = True
    assert vp.render_size() == (round(W * 0.25), round(H * 0.25))
    for _ in range(20):
        frame(vp.scale, budget * 4)  # still too slow: stops at the floor
    assert vp.scale == MIN_SCALE
    for _ in range(NO_GAIN_FRAMES - 1):
        frame(vp.scale, budget * 20)  # slower than at full size: maybe just a costly view...
        assert vp.scale == MIN_SCALE
    frame(vp.scale, budget * 20)  # ...again and again: the resolution goes back up...
    assert vp.scale == 1.0
    for _ in range(20):
        frame(vp.scale, budget * 4)
    assert vp.scale == pytest.approx(MIN_SCALE * 1.5)  # ...and never down to that size again
    vp.interactive = False

    stats = win.stats_panel
    t0 = time.perf_counter() + 100.0  # after a pause: a new run of frames
    for i in range(5):
        stats.show_frame(FrameRendered("gl", 64, 48, True, 40.0, {"project": 1.0, "blend": 30.0},
                                       {"visible": 1234, "tile_pairs": 99}), now=t0 + 0.05 * i)
    assert stats.fps == pytest.approx(20.0)
    assert "1,234" in stats.counters.text() and "blend" in stats.stages.text()


def test_file_open_and_recent_menu_use_session_open_path(qtbot, win, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    path = shared_file(SCENE)
    opened = []
    real_open = win.session.open_path
    monkeypatch.setattr(win.session, "open_path", lambda p: opened.append(str(p)) or real_open(p))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    win.open_dialog()
    qtbot.waitUntil(lambda: win.session.scene is not None, timeout=WAIT_MS)
    actions = [a for a in win.recent_menu.actions() if a.text() == path.name]
    assert len(actions) == 1
    actions[0].trigger()
    qtbot.waitUntil(lambda: not win.session.loading, timeout=WAIT_MS)
    assert opened == [str(path), str(path.resolve())]
