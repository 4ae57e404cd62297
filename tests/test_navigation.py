"""Viewer camera controller math (app/navigation.py): no Qt needed."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from app import navigation as nav
from app.navigation import Rig, frame_bounds
from renderer import Camera

UP = np.array([0.0, -1.0, 0.0])  # COLMAP-style world: -Y up


def _rig(eye=(0.0, -1.0, -4.0)):
    return Rig.look_at(eye, (0.0, 0.0, 0.0), UP)


def _orthonormal(R):
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0)


def _project(cam: Camera, pts):
    p = np.c_[pts, np.ones(len(pts))] @ cam.T_camera_world.T
    return np.c_[cam.fx * p[:, 0] / p[:, 2] + cam.cx, cam.fy * p[:, 1] / p[:, 2] + cam.cy], p[:, 2]


def test_no_qt_import():
    src = open(nav.__file__).read()
    assert "import PySide6" not in src and "from PySide6" not in src


def test_orbit_keeps_distance_and_target():
    r0 = _rig()
    r1 = r0.orbit(0.3, 0.2)
    assert r1.distance == pytest.approx(r0.distance)
    np.testing.assert_allclose(r1.target, r0.target)
    _orthonormal(r1.pose[:3, :3])
    # Still looks at the target.
    np.testing.assert_allclose(r1.forward, (r1.target - r1.eye) / r1.distance, atol=1e-9)


def test_orbit_directions():
    r0 = _rig()
    right = r0.orbit(0.1, 0.0)
    assert np.dot(right.eye - r0.eye, r0.right) > 0  # positive azimuth: eye moves to the camera's right
    higher = r0.orbit(0.0, 0.1)
    assert np.dot(higher.eye - r0.eye, UP) > 0  # positive elevation: eye moves up
    # Azimuth leaves the height above the target unchanged.
    assert np.dot(right.eye, UP) == pytest.approx(np.dot(r0.eye, UP))


def test_orbit_stops_at_pole():
    r = _rig().orbit(0.0, 10.0)  # far past straight above
    pole = math.acos(np.dot(r.eye - r.target, r.up) / r.distance)
    assert pole == pytest.approx(nav.MIN_POLE_ANGLE)
    assert np.isfinite(r.pose).all()


def test_full_azimuth_returns_home():
    r0 = _rig()
    r = r0
    for _ in range(8):
        r = r.orbit(2 * math.pi / 8, 0.0)
    np.testing.assert_allclose(r.pose, r0.pose, atol=1e-9)


def test_pan_follows_cursor_at_target_depth():
    r0 = _rig()
    fov, h = 50.0, 480
    cam0 = Camera.from_fov(640, h, fov, r0.pose)
    r1 = r0.pan(40, -25, h, fov)
    cam1 = Camera.from_fov(640, h, fov, r1.pose)
    # The old target moves on screen by exactly the drag.
    (uv0,), _ = _project(cam0, r0.target[None])
    (uv1,), _ = _project(cam1, r0.target[None])
    np.testing.assert_allclose(uv1 - uv0, [40, -25], atol=1e-6)
    np.testing.assert_allclose(r1.forward, r0.forward)


def test_zoom_scales_distance():
    r0 = _rig()
    r1 = r0.zoom(0.5)
    assert r1.distance == pytest.approx(0.5 * r0.distance)
    np.testing.assert_allclose(r1.target, r0.target)
    np.testing.assert_allclose(r1.forward, r0.forward)
    assert r0.zoom(0.0).distance > 0


def test_fly_moves_eye_and_target():
    r0 = _rig()
    r1 = r0.fly(forward=1.0)
    np.testing.assert_allclose(r1.eye - r0.eye, r0.forward)
    np.testing.assert_allclose(r1.target - r0.target, r0.forward)
    r2 = r0.fly(right=2.0, up=1.0)
    np.testing.assert_allclose(r2.eye - r0.eye, 2 * r0.right + UP)


def test_roll_keeps_forward_and_reverses():
    r0 = _rig()
    r1 = r0.roll(0.4)
    np.testing.assert_allclose(r1.forward, r0.forward, atol=1e-12)
    assert not np.allclose(r1.right, r0.right)
    np.testing.assert_allclose(r1.roll(-0.4).pose, r0.pose, atol=1e-12)
    # Orbiting a rolled camera keeps it orthonormal and aimed.
    r2 = r1.orbit(0.3, -0.2)
    _orthonormal(r2.pose[:3, :3])
    np.testing.assert_allclose(r2.forward, (r2.target - r2.eye) / r2.distance, atol=1e-9)


@pytest.mark.parametrize("aspect", [4 / 3, 0.5, 2.5])
@pytest.mark.parametrize("up", [(0, -1, 0), (0, 0, 1), (1, 1, 0)])
def test_frame_bounds_puts_box_in_view(aspect, up):
    bounds = np.array([[-3.0, 10.0, 2.0], [5.0, 12.0, 9.0]])
    h = 240
    w = int(round(h * aspect))
    rig = frame_bounds(bounds, up, 50.0, w / h)
    cam = Camera.from_fov(w, h, 50.0, rig.pose)
    corners = np.array([[x, y, z] for x in bounds[:, 0] for y in bounds[:, 1] for z in bounds[:, 2]])
    uv, z = _project(cam, corners)
    assert (z > 0).all()
    assert (uv[:, 0] >= 0).all() and (uv[:, 0] <= w).all()
    assert (uv[:, 1] >= 0).all() and (uv[:, 1] <= h).all()
    np.testing.assert_allclose(rig.target, bounds.mean(axis=0))
    # Up appears up: the world up vector points to smaller image y.
    assert np.dot(rig.down, nav._unit(up)) < 0


def test_with_up_flips_screen_up():
    r0 = _rig()
    r1 = r0.with_up(-UP)
    np.testing.assert_allclose(r1.up, -UP)
    assert np.dot(r1.down, -UP) < 0
    np.testing.assert_allclose(r1.eye, r0.eye)


def test_near_far_hold_scene():
    bounds = np.array([[-1.0, -1, -1], [1, 1, 1]])
    rig = frame_bounds(bounds, UP, 50.0, 1.0)
    near, far = nav.near_far(rig, bounds)
    assert 0 < near < rig.distance - math.sqrt(3) < rig.distance + math.sqrt(3) < far


def test_cli_does_not_load_qt():
    """`radview info` and friends build the parser without importing PySide6 (the viewer does, lazily)."""
    import subprocess

    code = "import sys, app.cli as c; c.build_parser(); sys.exit('PySide6' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(nav.__file__).parents[1]).returncode == 0
