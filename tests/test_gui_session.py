"""app.session.Session without widgets: loading in a thread, failures, cancelling, camera, settings."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from conftest import random_gaussians, shared_file  # noqa: E402
from guikit import WAIT_MS, no_escaped_exceptions  # noqa: E402,F401 - the fixture is activated by importing it

from app import workers  # noqa: E402
from app.messages import LoadCancelled, LoadFailed, LoadStarted, SceneLoaded  # noqa: E402
from app.session import Session, describe_scene  # noqa: E402
from app.workers import running_threads  # noqa: E402

pytestmark = pytest.mark.gui

SCENE = "3dgs_ply/kacytran1122_try_iter7000_point_cloud.ply"


@pytest.fixture
def session(qapp):
    s = Session()
    msgs = []
    s.message.connect(msgs.append)
    s.msgs = msgs
    yield s
    assert s.shutdown()
    assert not running_threads()


def wait_idle(qtbot, s: Session):
    qtbot.waitUntil(lambda: not s.loading and not running_threads(), timeout=WAIT_MS)


def test_open_path_loads_in_a_thread_and_frames_camera(qtbot, session):
    path = shared_file(SCENE)
    with qtbot.waitSignal(session.scene_changed, timeout=WAIT_MS):
        job = session.open_path(path)
        assert session.loading
    assert isinstance(session.msgs[0], LoadStarted) and session.msgs[0].job == job
    loaded = [m for m in session.msgs if isinstance(m, SceneLoaded)]
    assert len(loaded) == 1 and loaded[0].memory_bytes >= 9080 * 59 * 4
    assert session.path == str(path) and len(session.scene) == 9080
    assert session.bounds.shape == (2, 3)
    # The framed camera looks at the centre of the bounds.
    np.testing.assert_allclose(session.rig.target, session.bounds.mean(axis=0))
    facts = describe_scene(session)
    assert facts["Primitives"] == "9,080" and facts["SH degree"] == "3"
    wait_idle(qtbot, session)


def test_failed_load_keeps_open_scene(qtbot, session, tmp_path):
    session.set_scene(random_gaussians(100, seed=3), "synthetic")
    scene, rig = session.scene, session.rig
    bad = tmp_path / "bad.ply"
    bad.write_text("this is not a ply file\n")
    with qtbot.waitSignal(session.loading_changed, check_params_cb=lambda on: not on, timeout=WAIT_MS):
        session.open_path(bad)
    failed = [m for m in session.msgs if isinstance(m, LoadFailed)]
    assert len(failed) == 1 and failed[0].reason and "bad.ply" in failed[0].path
    assert session.scene is scene and session.rig is rig and session.path == "synthetic"
    wait_idle(qtbot, session)

    session.open_path(tmp_path / "missing.ply")
    wait_idle(qtbot, session)
    assert "no such file" in [m for m in session.msgs if isinstance(m, LoadFailed)][-1].reason


def _slow_loader(monkeypatch, seconds=0.3):
    real = workers.load_and_describe

    def slow(path, job):
        time.sleep(seconds)
        return real(path, job)

    monkeypatch.setattr(workers, "load_and_describe", slow)


def test_cancel_drops_the_result(qtbot, session, monkeypatch):
    _slow_loader(monkeypatch)
    session.open_path(shared_file(SCENE))
    session.cancel_load()
    assert not session.loading
    assert any(isinstance(m, LoadCancelled) for m in session.msgs)
    qtbot.waitUntil(lambda: not running_threads(), timeout=WAIT_MS)
    qtbot.wait(50)  # the finished worker's queued result arrives and is ignored
    assert session.scene is None
    assert not any(isinstance(m, SceneLoaded) for m in session.msgs)


def test_newer_open_supersedes_older(qtbot, session, monkeypatch, tmp_path):
    _slow_loader(monkeypatch)
    bad = tmp_path / "bad.ply"
    bad.write_text("nope")
    session.open_path(shared_file(SCENE))
    session.open_path(bad)  # the user changed their mind
    wait_idle(qtbot, session)
    qtbot.wait(50)
    assert session.scene is None  # the first load's result was dropped
    assert [type(m) for m in session.msgs if isinstance(m, (SceneLoaded, LoadFailed))] == [LoadFailed]


def test_open_paths_tries_the_next_file_after_a_failure(qtbot, session, tmp_path):
    bad = tmp_path / "bad.ply"
    bad.write_text("nope")
    with qtbot.waitSignal(session.scene_changed, timeout=WAIT_MS):
        session.open_paths([bad, shared_file(SCENE)])
    assert session.path.endswith(".ply") and "bad" not in session.path
    results = [type(m) for m in session.msgs if isinstance(m, (SceneLoaded, LoadFailed))]
    assert results == [LoadFailed, SceneLoaded]
    wait_idle(qtbot, session)


def test_camera_settings_and_backend(session):
    assert session.rig is None
    session.set_scene(random_gaussians(100, seed=3), "synthetic")
    changed = []
    session.settings_changed.connect(lambda: changed.append(1))
    session.set_settings(mode="depth", sh_degree=1)
    assert session.settings.mode == "depth" and session.settings.sh_degree == 1 and changed
    session.set_settings(mode="depth")  # no change, no signal
    assert len(changed) == 1
    session.set_backend("torch")
    assert session.backend == "torch"
    with pytest.raises(ValueError):
        session.set_backend("vulkan")
    session.mode_refused("not supported")
    assert session.settings.mode == "rgb"

    cam = session.camera_json(320, 240)
    assert (cam["width"], cam["height"]) == (320, 240)
    assert cam["cx"] == 160 and np.asarray(cam["T_world_camera"]).shape == (4, 4)
    session.set_fov(70)
    assert session.camera(320, 240).fov_y_deg == pytest.approx(70)

    up = session.up.copy()
    session.flip_up()
    np.testing.assert_allclose(session.up, -up)
    assert np.dot(session.rig.down, session.up) < 0  # the new up appears up on screen
    session.set_rig(session.rig.roll(0.5))
    session.reset_camera()
    np.testing.assert_allclose(session.rig.target, session.bounds.mean(axis=0))
