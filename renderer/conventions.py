"""Camera conventions: the one place that converts between OpenCV poses (ours) and OpenGL ones.

Radview's cameras use OpenCV axes: camera +X right, +Y down, +Z forward (COLMAP, INRIA 3DGS).
OpenGL, nerfstudio, Blender and three.js cameras use +X right, +Y up, -Z forward. Both describe
the same camera with the same world frame; only the camera's local Y and Z axes flip, so a
camera-to-world matrix converts by right-multiplying diag(1, -1, -1, 1). The conversion is its
own inverse, but the two names say which way a call site goes.

World frames are not touched here: a nerfstudio camera path and a splat exported from the same
nerfstudio run share one world frame, and the scene's "up" is a property of the scene
(see camera_paths.estimate_up).
"""

from __future__ import annotations

import math

import numpy as np

# Flips camera-local Y and Z: OpenCV (+Y down, +Z forward) <-> OpenGL (+Y up, -Z forward).
_FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def _as_c2w(m) -> np.ndarray:
    """[..., 4, 4] float64 from a [..., 4, 4] or [..., 3, 4] camera-to-world matrix."""
    a = np.asarray(m, dtype=np.float64)
    if a.shape[-2:] == (3, 4):
        bottom = np.broadcast_to(np.array([0.0, 0.0, 0.0, 1.0]), (*a.shape[:-2], 1, 4))
        a = np.concatenate([a, bottom], axis=-2)
    if a.shape[-2:] != (4, 4):
        raise ValueError(f"expected a 4x4 or 3x4 camera-to-world matrix, got shape {a.shape}")
    return a


def opengl_to_opencv_c2w(m) -> np.ndarray:
    """OpenGL/nerfstudio/Blender camera-to-world (+Y up, -Z forward) to OpenCV (+Y down, +Z forward).

    Args:
        m: [..., 4, 4] or [..., 3, 4] camera-to-world, OpenGL camera axes.
    Returns:
        [..., 4, 4] float64 camera-to-world, OpenCV camera axes (Camera.T_world_camera).
    """
    return _as_c2w(m) @ _FLIP_YZ


def opencv_to_opengl_c2w(m) -> np.ndarray:
    """OpenCV camera-to-world (+Y down, +Z forward) to OpenGL/nerfstudio/Blender (+Y up, -Z forward).

    Args:
        m: [..., 4, 4] or [..., 3, 4] camera-to-world, OpenCV camera axes.
    Returns:
        [..., 4, 4] float64 camera-to-world, OpenGL camera axes.
    """
    return _as_c2w(m) @ _FLIP_YZ


def opencv_to_opengl_w2c(m) -> np.ndarray:
    """OpenCV world-to-camera (view matrix) to the OpenGL view matrix of the same camera.

    Args:
        m: [..., 4, 4] world-to-camera, OpenCV camera axes.
    Returns:
        [..., 4, 4] float64 world-to-camera, OpenGL camera axes.
    """
    return _FLIP_YZ @ _as_c2w(m)


def focal_from_fov(fov_deg: float, size: float) -> float:
    """Focal length in pixels that spans `size` pixels with a field of view of `fov_deg` degrees."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"field of view must be between 0 and 180 degrees, got {fov_deg}")
    return size / (2.0 * math.tan(math.radians(fov_deg) / 2.0))


def fov_from_focal(focal: float, size: float) -> float:
    """Field of view in degrees that a focal length of `focal` pixels gives over `size` pixels."""
    return math.degrees(2.0 * math.atan(size / (2.0 * focal)))


def intrinsics_from_fov_y(width: int, height: int, fov_y_deg: float) -> np.ndarray:
    """[3,3] pinhole K from a vertical field of view: square pixels, centred principal point.

    The nerfstudio viewer and three.js define "fov" this way (vertical, degrees)
    (nerfstudio-project/nerfstudio > nerfstudio/viewer/server/utils.py >
    three_js_perspective_camera_focal_length, used by cameras/camera_paths.py > get_path_from_json).
    """
    f = focal_from_fov(fov_y_deg, height)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def fov_x_from_fov_y(fov_y_deg: float, width: int, height: int) -> float:
    """Horizontal field of view (degrees) of square pixels with vertical fov `fov_y_deg`."""
    return fov_from_focal(focal_from_fov(fov_y_deg, height), width)
