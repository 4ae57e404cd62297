"""renderer/conventions.py: OpenCV <-> OpenGL camera poses and intrinsics from a field of view."""

from __future__ import annotations

import math

import numpy as np
import pytest

from renderer import Camera, look_at_pose
from renderer.conventions import (
    focal_from_fov,
    fov_from_focal,
    fov_x_from_fov_y,
    intrinsics_from_fov_y,
    opencv_to_opengl_c2w,
    opencv_to_opengl_w2c,
    opengl_to_opencv_c2w,
)


def _random_pose(rng) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = q, rng.normal(size=3) * 5
    return m


def test_round_trips():
    rng = np.random.default_rng(0)
    poses = np.stack([_random_pose(rng) for _ in range(5)])  # [5, 4, 4]
    np.testing.assert_allclose(opencv_to_opengl_c2w(opengl_to_opencv_c2w(poses)), poses, atol=1e-12)
    np.testing.assert_allclose(opengl_to_opencv_c2w(opencv_to_opengl_c2w(poses)), poses, atol=1e-12)
    # The camera centre never moves, only the camera's local Y and Z flip.
    np.testing.assert_allclose(opengl_to_opencv_c2w(poses)[:, :3, 3], poses[:, :3, 3])
    # 3x4 input is padded.
    np.testing.assert_allclose(opengl_to_opencv_c2w(poses[0, :3]), opengl_to_opencv_c2w(poses[0]))
    # w2c converts consistently with c2w.
    np.testing.assert_allclose(opencv_to_opengl_w2c(np.linalg.inv(poses[1])),
                               np.linalg.inv(opencv_to_opengl_c2w(poses[1])), atol=1e-12)
    with pytest.raises(ValueError, match="4x4"):
        opengl_to_opencv_c2w(np.eye(3))


def test_opengl_minus_z_is_opencv_plus_z():
    # An OpenGL camera at (1, 2, 3) with the identity rotation looks down world -Z with +Y up.
    gl = np.eye(4)
    gl[:3, 3] = [1, 2, 3]
    cv = Camera(64, 48, 50.0, 50.0, 32.0, 24.0, opengl_to_opencv_c2w(gl))
    np.testing.assert_allclose(cv.T_world_camera[:3, 2], [0, 0, -1])  # OpenCV forward (+Z) = world -Z
    np.testing.assert_allclose(cv.T_world_camera[:3, 1], [0, -1, 0])  # OpenCV down (+Y) = world -Y
    np.testing.assert_allclose(cv.T_world_camera[:3, 0], [1, 0, 0])
    np.testing.assert_allclose(cv.position, [1, 2, 3])
    # A point 5 units in front of the GL camera is at depth +5 in OpenCV camera coordinates, and a
    # point above it (world +Y) is above the image centre (smaller pixel row).
    p_cam = cv.T_camera_world @ np.array([1, 2, -2, 1.0])
    np.testing.assert_allclose(p_cam[:3], [0, 0, 5], atol=1e-12)
    above = cv.T_camera_world @ np.array([1, 3, -2, 1.0])
    assert above[1] < 0


def test_look_at_agrees_with_opengl_reading():
    eye, target, up = np.array([3.0, 1.0, 2.0]), np.array([0.0, 0.5, 0.0]), np.array([0.0, 1.0, 0.0])
    gl = opencv_to_opengl_c2w(look_at_pose(eye, target, up))
    fwd = (target - eye) / np.linalg.norm(target - eye)
    np.testing.assert_allclose(-gl[:3, 2], fwd, atol=1e-12)  # OpenGL looks down its -Z
    assert gl[:3, 1] @ up > 0.9  # and its +Y is up on screen


def test_intrinsics_from_fov():
    K = intrinsics_from_fov_y(640, 480, 90.0)
    np.testing.assert_allclose(K, [[240, 0, 320], [0, 240, 240], [0, 0, 1]], atol=1e-9)
    assert focal_from_fov(60.0, 480) == pytest.approx(240 / math.tan(math.radians(30)))
    assert fov_from_focal(focal_from_fov(37.0, 300), 300) == pytest.approx(37.0)
    assert fov_x_from_fov_y(90.0, 480, 480) == pytest.approx(90.0)
    assert fov_x_from_fov_y(50.0, 640, 480) > 50.0
    cam = Camera.from_fov(640, 480, 50.0)
    np.testing.assert_allclose(cam.K, intrinsics_from_fov_y(640, 480, 50.0))
    with pytest.raises(ValueError):
        focal_from_fov(180.0, 100)
