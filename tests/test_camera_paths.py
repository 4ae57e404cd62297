"""renderer/camera_paths.py: orbit framing, up estimate, keyframe splines, camera path files."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import random_gaussians

from renderer import Camera, look_at_pose
from renderer.camera_paths import (
    estimate_up,
    interpolate,
    orbit,
    read_camera_path,
    resize_cameras,
    write_camera_path,
)
from renderer.conventions import opengl_to_opencv_c2w

BOX = np.array([[-1.0, -0.5, 2.0], [3.0, 0.25, 2.5]])  # off-centre and flat on purpose


def _corners(b):
    return np.array([[b[i, 0], b[j, 1], b[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def _project(cam: Camera, pts: np.ndarray) -> np.ndarray:
    """[N, 3] pixel x, pixel y, depth of world points."""
    pc = (cam.T_camera_world @ np.c_[pts, np.ones(len(pts))].T).T[:, :3]
    return np.c_[cam.fx * pc[:, 0] / pc[:, 2] + cam.cx, cam.fy * pc[:, 1] / pc[:, 2] + cam.cy, pc[:, 2]]


@pytest.mark.parametrize("up", [(0, -1, 0), (0, 0, 1), (0.3, -1.0, 0.2)])
def test_orbit_frames_the_box(up):
    W, H, n = 64, 48, 12
    cams = orbit(BOX, up, n, W, H, fov_y_deg=50.0, elevation_deg=20.0)
    assert len(cams) == n
    centre = BOX.mean(axis=0)
    u = np.asarray(up, dtype=float) / np.linalg.norm(up)
    dists = [np.linalg.norm(c.position - centre) for c in cams]
    np.testing.assert_allclose(dists, dists[0], rtol=1e-9)
    worst = 0.0
    for c in cams:
        assert (c.width, c.height) == (W, H)
        assert c.fov_y_deg == pytest.approx(50.0)
        # Looks at the centre: it projects to the principal point, in front of the camera.
        px = _project(c, centre[None])[0]
        np.testing.assert_allclose(px[:2], [c.cx, c.cy], atol=1e-6)
        assert px[2] > 0
        # Every corner is inside the image.
        pc = _project(c, _corners(BOX))
        assert (pc[:, 2] > 0).all()
        assert (pc[:, 0] >= 0).all() and (pc[:, 0] <= W).all()
        assert (pc[:, 1] >= 0).all() and (pc[:, 1] <= H).all()
        worst = max(worst, np.abs(pc[:, 0] - W / 2).max() / (W / 2), np.abs(pc[:, 1] - H / 2).max() / (H / 2))
        # Elevation 20 degrees above the plane perpendicular to up, and up is up on screen.
        d = (c.position - centre) / np.linalg.norm(c.position - centre)
        assert math.degrees(math.asin(d @ u)) == pytest.approx(20.0, abs=1e-6)
        assert -c.T_world_camera[:3, 1] @ u > 0
    assert worst > 0.6  # framed, not lost in the middle (distance_factor 1.1 leaves ~10%)
    # One full turn: equal steps of 360/n degrees around up.
    d = np.stack([c.position - centre for c in cams])
    d -= np.outer(d @ u, u)
    steps = [math.degrees(math.acos(np.clip(d[i] @ d[(i + 1) % n] / np.linalg.norm(d[i]) ** 2, -1, 1)))
             for i in range(n)]
    np.testing.assert_allclose(steps, 360.0 / n, atol=1e-6)


def test_orbit_is_tight_at_distance_factor_one():
    cams = orbit(BOX, (0, -1, 0), 8, 64, 48, distance_factor=1.0)
    worst = max(max(np.abs(_project(c, _corners(BOX))[:, 0] - 32).max() / 32,
                    np.abs(_project(c, _corners(BOX))[:, 1] - 24).max() / 24) for c in cams)
    assert worst <= 1 + 1e-9
    assert worst > 0.9
    with pytest.raises(ValueError):
        orbit(BOX, (0, 0, 0), 4, 64, 48)
    with pytest.raises(ValueError):
        orbit(BOX, (0, 1, 0), 0, 64, 48)


def test_estimate_up():
    g = random_gaussians(500, seed=3, sh_degree=0)
    g.up = (0.0, 0.0, 2.0)
    np.testing.assert_allclose(estimate_up(g), [0, 0, 1])
    # A cube of points: not flat, so the COLMAP convention -Y.
    g.up = None
    np.testing.assert_allclose(estimate_up(g), [0, -1, 0])
    # A ground plane z = 0 (a Z-up world) with a few things standing on it: +Z.
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-5, 5, (2000, 2)), rng.normal(0, 0.05, 2000)]
    pts[:200, 2] = rng.uniform(0, 2.0, 200)
    g2 = random_gaussians(2000, seed=4, sh_degree=0)
    g2.means = torch.tensor(pts, dtype=torch.float32)
    np.testing.assert_allclose(estimate_up(g2), [0, 0, 1], atol=0.05)
    # A tilted floor mostly facing -Y: its normal, signed towards -Y.
    pts_y = np.c_[rng.uniform(-5, 5, 2000), rng.normal(0, 0.05, 2000), rng.uniform(-5, 5, 2000)]
    g2.means = torch.tensor(pts_y, dtype=torch.float32)
    np.testing.assert_allclose(estimate_up(g2), [0, -1, 0], atol=0.05)

    class Voxels:  # no means: the default
        up = None

    np.testing.assert_allclose(estimate_up(Voxels()), [0, -1, 0])


def _keys():
    eyes = [(4, -1, 0), (0, -1.5, 4), (-4, -1, 0), (0, -0.5, -4)]
    return [Camera.look_at(e, (0, 0, 0), (0, -1, 0), 64, 48, fov_y_deg=40 + 5 * i, time=float(i))
            for i, e in enumerate(eyes)]


def test_interpolate_passes_through_keyframes():
    keys = _keys()
    cams = interpolate(keys, 7)  # (7-1) is a multiple of (4-1): keys at frames 0, 2, 4, 6
    assert len(cams) == 7
    for k, f in zip(keys, (0, 2, 4, 6), strict=True):
        np.testing.assert_allclose(cams[f].T_world_camera, k.T_world_camera, atol=1e-9)
        assert cams[f].fy == pytest.approx(k.fy) and cams[f].time == pytest.approx(k.time)
    for c in cams:  # rotations stay rotations
        r = c.T_world_camera[:3, :3]
        np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)
        assert np.linalg.det(r) == pytest.approx(1.0)
    # In between: between the neighbouring keys in time and focal length.
    assert 0 < cams[1].time < 1 and keys[0].fy > cams[1].fy > keys[1].fy
    # A closed loop hits every key at i * n / K and comes back towards the first.
    loop = interpolate(keys, 8, loop=True)
    for k, f in zip(keys, (0, 2, 4, 6), strict=True):
        np.testing.assert_allclose(loop[f].T_world_camera, k.T_world_camera, atol=1e-9)
    d_last = np.linalg.norm(keys[3].position - keys[0].position)
    assert np.linalg.norm(loop[7].position - keys[0].position) < d_last
    # One keyframe: copies; different sizes: rescaled to the first.
    assert len(interpolate(keys[:1], 3)) == 3
    mixed = interpolate([keys[0], keys[1].scaled(128, 96)], 3)
    assert all((c.width, c.height) == (64, 48) for c in mixed)
    with pytest.raises(ValueError):
        interpolate([], 3)


def test_resize_keeps_vertical_fov():
    c = Camera.look_at((3, 0, 0), (0, 0, 0), (0, -1, 0), 64, 48, fov_y_deg=42.0)
    (r,) = resize_cameras([c], 100, 40)
    assert (r.width, r.height) == (100, 40)
    assert r.fov_y_deg == pytest.approx(42.0) and r.fx == r.fy and (r.cx, r.cy) == (50, 20)


def test_nerfstudio_round_trip(tmp_path):
    cams = orbit(BOX, (0, -1, 0), 5, 64, 48, fov_y_deg=45.0)
    cams = [replace(c, time=0.25 * i) for i, c in enumerate(cams)]
    p = tmp_path / "camera_path.json"
    write_camera_path(p, cams, fps=24, with_time=True)
    doc = json.loads(p.read_text())
    assert doc["camera_type"] == "perspective" and doc["render_width"] == 64 and doc["render_height"] == 48
    assert doc["fps"] == 24 and doc["seconds"] == pytest.approx(5 / 24)
    assert len(doc["camera_path"][0]["camera_to_world"]) == 16
    assert doc["camera_path"][0]["aspect"] == pytest.approx(64 / 48)
    back = read_camera_path(p)
    assert back.source == "nerfstudio" and back.has_time and back.fps == 24
    assert (back.width, back.height) == (64, 48) and len(back.cameras) == 5
    for a, b in zip(cams, back.cameras, strict=True):
        np.testing.assert_allclose(b.T_world_camera, a.T_world_camera, atol=1e-9)
        assert (b.fx, b.fy, b.cx, b.cy) == pytest.approx((a.fx, a.fy, a.cx, a.cy))
        assert b.time == pytest.approx(a.time)
    write_camera_path(p, cams)  # without times: has_time False, times 0
    back = read_camera_path(p)
    assert not back.has_time and all(c.time == 0 for c in back.cameras)


def test_nerfstudio_hand_written_pose(tmp_path):
    # An OpenGL camera at (1, 2, 3) looking along world +X with world +Y up on screen:
    # columns x = (0, 0, 1), y = (0, 1, 0), z = (-1, 0, 0) (it looks down its -Z).
    gl_rows = [[0, 0, -1, 1], [0, 1, 0, 2], [1, 0, 0, 3], [0, 0, 0, 1]]
    doc = {
        "camera_type": "perspective", "render_width": 640, "render_height": 480, "fps": 30, "seconds": 1,
        "camera_path": [{"camera_to_world": sum(gl_rows, []), "fov": 60, "aspect": 4 / 3,
                         "render_time": 0.5}],
        "keyframes": [], "smoothness_value": 0.5,
    }
    p = tmp_path / "hand.json"
    p.write_text(json.dumps(doc))
    (cam,) = read_camera_path(p).cameras
    expected = np.array([[0, 0, 1, 1], [0, -1, 0, 2], [1, 0, 0, 3], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(cam.T_world_camera, expected, atol=1e-12)
    np.testing.assert_allclose(cam.T_world_camera[:3, 2], [1, 0, 0])  # OpenCV forward = world +X
    np.testing.assert_allclose(cam.T_world_camera, opengl_to_opencv_c2w(np.array(gl_rows, float)))
    assert cam.fy == pytest.approx(240 / math.tan(math.radians(30))) and cam.fx == cam.fy
    assert (cam.cx, cam.cy) == (320, 240) and cam.time == 0.5


def test_radview_keyframe_path(tmp_path):
    pose = look_at_pose((0, 0, -5), (0, 0, 0), (0, -1, 0))
    doc = {"radview_camera_path": 1, "width": 32, "height": 24, "fps": 12, "frames": 5,
           "keyframes": [{"eye": [5, 0, 0], "target": [0, 0, 0], "fov": 40, "time": 0},
                         {"T_world_camera": pose.reshape(-1).tolist(), "fov": 40, "time": 2}]}
    p = tmp_path / "path.json"
    p.write_text(json.dumps(doc))
    path = read_camera_path(p)
    assert path.source == "radview" and len(path.cameras) == 5 and path.fps == 12 and path.has_time
    np.testing.assert_allclose(path.cameras[0].position, [5, 0, 0])
    np.testing.assert_allclose(path.cameras[-1].T_world_camera, pose, atol=1e-9)
    assert [c.time for c in path.cameras] == pytest.approx([0, 0.5, 1, 1.5, 2])


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"foo": 1}', "not a camera path"),
    ('{"camera_path": [], "render_width": 4, "render_height": 4}', "non-empty"),
    ('{"camera_path": [{"camera_to_world": [1, 0, 0], "fov": 50}], "render_width": 4, "render_height": 4}',
     "16 numbers"),
    ('{"camera_path": [{"camera_to_world": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1]}], "render_width": 4, '
     '"render_height": 4}', "no 'fov'"),
    ('{"camera_path": [{"camera_to_world": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1], "fov": 200}], '
     '"render_width": 4, "render_height": 4}', "between 0 and 180"),
    ('{"camera_path": [{"camera_to_world": [-1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1], "fov": 50}], '
     '"render_width": 4, "render_height": 4}', "reflection"),
    ('{"camera_path": [{"camera_to_world": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1], "fov": 50}]}',
     "render_width"),
    ('{"camera_path": [{"camera_to_world": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1], "fov": 50}], '
     '"render_width": 4, "render_height": 4, "camera_type": "equirectangular"}', "not supported"),
    ('{"radview_camera_path": 1, "keyframes": [{"eye": [0, 0, 0]}]}', "needs either"),
])
def test_bad_files_raise_value_error(tmp_path, text, match):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_camera_path(p)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such camera path file"):
        read_camera_path(tmp_path / "nope.json")
