"""The Timeline dock and dynamic scenes in the viewer; convex and voxel scenes through the same path.

Run with `xvfb-run -a .venv/bin/pytest tests/test_gui_timeline.py -q` (GL needs the xcb platform,
not offscreen). Scenes are tiny and made in tmp_path; the viewport is 200x150.
"""

from __future__ import annotations

import math
import os

import pytest

pytest.importorskip("pytestqt")
if os.environ.get("QT_QPA_PLATFORM") == "offscreen" or not (os.environ.get("DISPLAY") or
                                                            os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("GUI tests need an X display (run under xvfb-run -a)", allow_module_level=True)

import torch  # noqa: E402
from conftest import psnr, random_gaussians, save_diff  # noqa: E402
from guikit import (  # noqa: E402,F401 - fixtures are activated by importing them
    WAIT_MS,
    grab,
    isolated_settings,
    no_escaped_exceptions,
    no_thread_left,
    not_background,
    settle,
)
from PySide6.QtCore import Qt  # noqa: E402

from app.main_window import MainWindow  # noqa: E402
from app.messages import StatusMessage  # noqa: E402
from app.panels.timeline import SLIDER_STEPS  # noqa: E402
from scenes import Gaussian4DScene, save_scene  # noqa: E402

pytestmark = pytest.mark.gui

SIZE = (200, 150)


@pytest.fixture
def win(qtbot):
    w = MainWindow(backend="gl")
    qtbot.addWidget(w)
    w.viewport.setFixedSize(*SIZE)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()  # window shortcuts (Space, ',', '.') need the active window; Xvfb has no WM
    qtbot.waitActive(w)
    yield w
    w.close()


def open_and_wait(qtbot, w: MainWindow, path):
    w.session.open_path(path)
    qtbot.waitUntil(lambda: not w.session.loading, timeout=WAIT_MS)
    assert w.session.scene is not None, w.last_error


def rotor_scene(n: int = 600, seed: int = 0) -> Gaussian4DScene:
    """Random 4D-Rotor Gaussians in [-1, 1]^3 x [0, 1] s, short-lived (temporal std ~0.08 s) and
    moving, so the picture at t = 0.15 s and at t = 0.85 s share few Gaussians."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g) * 2 - 1
    times = torch.rand(n, generator=g)
    log_scales = torch.cat([-2.3 + 0.3 * torch.randn(n, 3, generator=g),
                            math.log(0.08) + 0.2 * torch.randn(n, 1, generator=g)], dim=1)
    rot = torch.cat([0.5 * torch.randn(n, 4, generator=g) + torch.tensor([0.8, 0, 0, 0]),
                     0.15 * torch.randn(n, 4, generator=g)], dim=1)
    sh = torch.zeros(n, 1, 4, 3)
    sh[:, 0, 0] = torch.randn(n, 3, generator=g) * 0.8
    logits = 2.0 + torch.randn(n, generator=g)
    return Gaussian4DScene.from_raw("rotor", means, times, log_scales, rot, logits, sh,
                                    time_duration=(0.0, 1.0), up=(0.0, -1.0, 0.0))


@pytest.fixture(scope="module")
def ply4d(tmp_path_factory):
    path = tmp_path_factory.mktemp("timeline") / "moving.ply"
    save_scene(rotor_scene(), path)
    return path


def test_4d_scene_enables_timeline_and_scrubbing_changes_the_image(qtbot, win, ply4d):
    panel, pb = win.timeline_panel, win.playback
    assert not panel.isEnabled() and not panel.play_action.isEnabled()  # nothing open yet
    open_and_wait(qtbot, win, ply4d)
    s = win.session
    assert s.time_range() == (0.0, 1.0) and s.time == 0.0 and s.fps() == 30.0
    assert panel.isEnabled() and panel.play_action.isEnabled() and not pb.playing
    assert pb.frame_count() == 31 and panel.frame_label.text() == "frame 1 / 31"
    labels = win.scene_panel.info_labels
    assert labels["Model"].text() == "rotor" and labels["Kind"].text() == "gaussians4d"
    assert labels["Time range"].text() == "0 – 1 s" and labels["Primitives"].text() == "600"
    assert not labels["Grid"].isVisible()  # rows a 4D scene lacks are hidden

    panel.slider.setValue(int(0.15 * SLIDER_STEPS))  # the user drags the slider
    assert s.time == pytest.approx(0.15) and s.settings.time == pytest.approx(0.15)
    early = grab(qtbot, win)
    assert win.viewport.last_frame.time == pytest.approx(0.15)
    assert win.stats_panel.labels["Time"].text() == "0.150 s"
    panel.slider.setValue(int(0.85 * SLIDER_STEPS))
    late = grab(qtbot, win)
    assert not_background(early) > 0.02 and not_background(late) > 0.02
    assert psnr(early, late) < 25, save_diff("gui_timeline_same", early, late)

    # The same time again gives the same picture (the slice is a function of time only).
    panel.slider.setValue(int(0.15 * SLIDER_STEPS))
    again = grab(qtbot, win)
    assert psnr(early, again) > 40, save_diff("gui_timeline_again", early, again)

    # The torch backend follows the time too.
    win.scene_panel.backend.setCurrentIndex(win.scene_panel.backend.findData("torch"))
    torch_early = grab(qtbot, win)
    assert win.viewport.last_frame.backend == "torch" and win.viewport.last_frame.time == pytest.approx(0.15)
    assert psnr(early, torch_early) > 30, save_diff("gui_timeline_torch", early, torch_early)


def test_space_plays_and_frame_keys_step(qtbot, win, ply4d):
    open_and_wait(qtbot, win, ply4d)
    s, pb, vp = win.session, win.playback, win.viewport
    qtbot.keyClick(vp, Qt.Key.Key_Space)
    assert pb.playing and win.timeline_panel.play_action.text() == "&Pause"
    qtbot.waitUntil(lambda: s.time > 0.05, timeout=WAIT_MS)  # the clock advances it
    qtbot.keyClick(vp, Qt.Key.Key_Space)
    assert not pb.playing
    paused_at = s.time
    qtbot.wait(60)
    assert s.time == paused_at

    pb.seek(0.0)
    qtbot.keyClick(vp, Qt.Key.Key_Period)
    assert s.time == pytest.approx(1 / 30)
    qtbot.keyClick(vp, Qt.Key.Key_Period)
    assert s.time == pytest.approx(2 / 30) and win.timeline_panel.frame_label.text() == "frame 3 / 31"
    qtbot.keyClick(vp, Qt.Key.Key_Comma)
    assert s.time == pytest.approx(1 / 30)
    pb.seek(1.0)
    qtbot.keyClick(vp, Qt.Key.Key_Period)  # the last frame: stays
    assert s.time == pytest.approx(1.0)

    # Without loop, playback stops at the end; with loop it wraps to the start.
    win.timeline_panel.loop_action.setChecked(False)
    win.timeline_panel.speed.setCurrentIndex(win.timeline_panel.speed.findData(4.0))
    assert pb.speed == 4.0 and not pb.loop
    pb.seek(0.97)
    pb.play()
    qtbot.waitUntil(lambda: not pb.playing, timeout=WAIT_MS)
    assert s.time == 1.0
    win.timeline_panel.loop_action.setChecked(True)
    pb.seek(0.97)
    pb.play()
    qtbot.waitUntil(lambda: s.time < 0.5, timeout=WAIT_MS)
    assert pb.playing
    pb.pause()


def test_static_scene_disables_timeline(qtbot, win, ply4d, tmp_path):
    open_and_wait(qtbot, win, ply4d)
    assert win.timeline_panel.isEnabled()
    win.playback.play()
    win.session.set_scene(random_gaussians(300, seed=3, sh_degree=1, log_scale=-3.0), "static")
    panel = win.timeline_panel
    assert not win.playback.playing and not panel.isEnabled() and not panel.play_action.isEnabled()
    assert win.session.time_range() is None and win.session.time == 0.0
    qtbot.keyClick(win.viewport, Qt.Key.Key_Space)
    qtbot.keyClick(win.viewport, Qt.Key.Key_Period)
    assert not win.playback.playing and win.session.time == 0.0
    assert not win.scene_panel.info_labels["Model"].isVisible()
    img = grab(qtbot, win)
    assert win.viewport.last_frame.time is None and win.stats_panel.labels["Time"].text() == "–"
    assert not_background(img) > 0.01

    # A flipbook (folder of per-frame PLYs) has time: its frames at its fps.
    folder = tmp_path / "seq"
    folder.mkdir()
    for i in range(3):
        save_scene(random_gaussians(100 + 50 * i, seed=i, sh_degree=0, log_scale=-3.0),
                   folder / f"frame_{i:04d}.ply")
    open_and_wait(qtbot, win, folder)
    assert panel.isEnabled() and win.playback.frame_count() == 3
    assert win.scene_panel.info_labels["Model"].text() == "flipbook"
    assert win.scene_panel.info_labels["Frames"].text() == "3 at 30 fps"
    first = grab(qtbot, win)
    qtbot.keyClick(win.viewport, Qt.Key.Key_Period)
    qtbot.keyClick(win.viewport, Qt.Key.Key_Period)
    qtbot.keyClick(win.viewport, Qt.Key.Key_Period)  # past the last frame: stays on it
    assert win.session.time == pytest.approx(2 / 30) and panel.frame_label.text() == "frame 3 / 3"
    last = grab(qtbot, win)
    assert psnr(first, last) < 30, save_diff("gui_flipbook_same", first, last)


def random_convexes(n: int = 80, k: int = 6, seed: int = 0):
    from scenes.convex import ConvexScene
    from scenes.gaussians import SH_C0

    g = torch.Generator().manual_seed(seed)
    pts = (torch.rand(n, 1, 3, generator=g) * 2 - 1) * 0.8 + torch.randn(n, k, 3, generator=g) * 0.12
    sh = torch.randn(n, 4, 3, generator=g) * 0.1
    sh[:, 0] = (torch.rand(n, 3, generator=g) - 0.5) / SH_C0
    return ConvexScene.from_raw(pts, torch.full((n,), math.log(0.2)), torch.full((n,), math.log(0.08)),
                                torch.randn(n, generator=g) + 1.5, sh)


def test_convex_and_voxel_files_render(qtbot, win, tmp_path):
    from scenes.voxels import procedural_shell

    notices = []
    win.session.message.connect(lambda m: notices.append(m.text) if isinstance(m, StatusMessage) else None)
    save_scene(random_convexes(), tmp_path / "convex.pt")
    open_and_wait(qtbot, win, tmp_path / "convex.pt")
    labels = win.scene_panel.info_labels
    assert labels["Kind"].text() == "convex" and labels["Primitives"].text() == "80"
    assert labels["Points per convex"].text() == "6" and labels["SH degree"].text() == "1"
    assert not win.timeline_panel.isEnabled()
    img = grab(qtbot, win)
    assert not_background(img) > 0.02, save_diff("gui_convex_blank", img, torch.zeros_like(img))

    save_scene(procedural_shell(16, fine=False, seed=1), tmp_path / "coarse_last.tar")
    open_and_wait(qtbot, win, tmp_path / "coarse_last.tar")
    assert labels["Kind"].text() == "voxels" and labels["Grid"].text() == "16 x 16 x 16"
    assert labels["Colour"].text() == "sigmoid_k0" and not labels["SH degree"].isVisible()
    assert labels["Primitives"].text() == f"{16 ** 3:,}"
    img = grab(qtbot, win)
    assert not_background(img) > 0.02, save_diff("gui_voxels_blank", img, torch.zeros_like(img))

    # A mode a backend refuses for this kind falls back to colour with a notice (or it renders).
    for mode in ("ellipsoids", "points"):
        win.session.set_settings(mode=mode)
        grab(qtbot, win)
        qtbot.wait(20)  # a refusal is handled from the event loop
        if win.session.settings.mode != mode:
            assert win.session.settings.mode == "rgb"
            assert any(mode in t for t in notices), notices
    win.session.set_settings(mode="rgb")
    assert not_background(grab(qtbot, win)) > 0.02


def test_scene_gl_cannot_draw_falls_back_to_torch(qtbot, win, tmp_path, monkeypatch):
    from renderer.gl_backend import GLRenderer

    real = GLRenderer.supports
    monkeypatch.setattr(GLRenderer, "supports",
                        lambda self, scene: getattr(scene, "kind", None) != "convex" and real(self, scene))
    notices = []
    win.session.message.connect(lambda m: notices.append(m.text) if isinstance(m, StatusMessage) else None)
    win.session.set_scene(random_convexes(seed=4), "convexes")
    img = grab(qtbot, win)
    assert win.session.backend == "gl"  # the user's choice stays for the next scene
    assert win.viewport.effective_backend() == "torch" and win.viewport.last_frame.backend == "torch"
    assert any("does not draw this 'convex' scene" in t for t in notices), notices
    assert not_background(img) > 0.02
    win.session.set_scene(random_gaussians(200, seed=5, sh_degree=0, log_scale=-3.0), "gaussians")
    grab(qtbot, win)
    assert win.viewport.last_frame.backend == "gl"


def test_playback_advances_by_wall_clock_times_speed(qtbot, monkeypatch):
    """Each tick adds (wall time since the last tick) x speed, however few ticks a slow frame lets run."""
    from app.panels.timeline import Playback
    from app.session import Session

    s = Session()
    pb = Playback(s)
    s.set_scene(rotor_scene(50), "4d")
    pb.set_speed(2.0)
    pb.play()  # its timer cannot fire here (no event loop runs): the ticks are driven by hand
    monkeypatch.setattr(pb._clock, "restart", lambda: 300)  # 300 ms since the previous tick
    pb._tick()
    assert s.time == pytest.approx(0.6) and pb.playing
    pb._tick()  # 1.2 s: wraps (loop is on by default)
    assert s.time == pytest.approx(0.2)
    pb.set_loop(False)
    pb._tick()
    pb._tick()
    pb._tick()  # 0.2 + 1.8 > 1: stops at the end
    assert s.time == 1.0 and not pb.playing
    assert s.shutdown()


def test_timeline_dock_in_view_menu_and_layout_remembered(qtbot, win):
    assert win.timeline_dock.toggleViewAction() in win.menuBar().actions()[1].menu().actions()
    assert win.timeline_dock.isVisible()
    win.timeline_dock.hide()
    win.close()
    again = MainWindow(backend="gl")
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    try:
        assert not again.timeline_dock.isVisible() and again.scene_dock.isVisible()
        again.reset_layout()
        assert again.timeline_dock.isVisible()
    finally:
        again.close()
