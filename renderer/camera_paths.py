"""Camera paths: an orbit that frames a box, keyframe splines, and camera path files.

All cameras are `Camera`s with OpenCV axes; files in other conventions go through
renderer/conventions.py.

Files `read_camera_path` accepts (JSON):

1. nerfstudio `camera_path.json`, as the nerfstudio viewer's render panel exports it and
   `ns-render camera-path` reads it (nerfstudio-project/nerfstudio >
   nerfstudio/cameras/camera_paths.py > get_path_from_json)::

       {"camera_type": "perspective", "render_width": 1920, "render_height": 1080,
        "fps": 30, "seconds": 4,
        "camera_path": [{"camera_to_world": [16 numbers: a row-major 4x4, OpenGL camera axes],
                         "fov": 50.0,          # vertical, degrees
                         "aspect": 1.777,      # ignored: render_width / render_height rule
                         "render_time": 0.0},  # optional; used only when every entry has one
                        ...]}

   One entry per frame. Other keys ("keyframes", "smoothness_value", ...) are ignored. The
   pose is taken as given in the scene's world frame (a splat exported from a nerfstudio run
   shares the frame of that run's camera paths). Only "perspective" cameras are supported.

2. A Radview keyframe path, short enough to write by hand::

       {"radview_camera_path": 1, "width": 640, "height": 480, "fps": 30,
        "frames": 90,            # optional: frames to interpolate (default: one per keyframe)
        "loop": false,           # optional: close the spline back to the first keyframe
        "keyframes": [
          {"eye": [x, y, z], "target": [x, y, z], "up": [0, -1, 0], "fov": 50, "time": 0.0},
          {"T_world_camera": [16 numbers: a row-major 4x4, OpenCV axes], "fov": 40},
          ...]}

   "up" defaults to -Y (the COLMAP / INRIA 3DGS convention), "fov" (vertical degrees) to 50,
   "time" (seconds) to none. Keyframes are interpolated with `interpolate`.

Bad files raise ValueError with a sentence naming the problem.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .conventions import focal_from_fov, opencv_to_opengl_c2w, opengl_to_opencv_c2w
from .types import Camera, look_at_pose

DEFAULT_UP = np.array([0.0, -1.0, 0.0])  # COLMAP / INRIA 3DGS worlds: -Y is usually up
DEFAULT_FPS = 30.0


@dataclass
class CameraPath:
    """Cameras read from a file, one per frame, with the file's playback settings."""

    cameras: list[Camera]
    fps: float
    width: int
    height: int
    has_time: bool  # every camera's `time` comes from the file (nerfstudio render_time / Radview "time")
    source: str  # "nerfstudio" | "radview"


# ----------------------------------------------------------------------------- up direction


def estimate_up(scene) -> np.ndarray:
    """[3] unit world "up" for a scene: `scene.up` when the file said, else an estimate.

    The estimate, cheap and deterministic: a PCA of (up to 20,000 evenly strided) Gaussian
    means. When the scene is flat (smallest variance under a quarter of the middle one: a
    ground plane, a table top, an outdoor capture) its normal is up. Otherwise -Y, the
    COLMAP / INRIA 3DGS convention (the first camera held upright). The normal's sign is
    the one closer to -Y; when the normal is nearly perpendicular to Y, the sign that puts
    the long tail of the distribution (things standing on the ground) above the plane.
    Scenes without means (voxel grids) get -Y.
    """
    up = getattr(scene, "up", None)
    if up is not None:
        v = np.asarray(up, dtype=np.float64).reshape(3)
        n = np.linalg.norm(v)
        if np.isfinite(v).all() and n > 0:
            return v / n
    means = getattr(scene, "means", None)
    if means is None:
        return DEFAULT_UP.copy()
    pts = means.detach().cpu().numpy() if hasattr(means, "detach") else np.asarray(means)
    pts = np.asarray(pts, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 3:
        return DEFAULT_UP.copy()
    pts = pts[:, :3]  # 4D scenes may carry (x, y, z, t)
    if len(pts) > 20_000:
        pts = pts[:: len(pts) // 20_000]
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 10:
        return DEFAULT_UP.copy()
    # Robust centre and a trim of far floaters so a few outliers do not set the axes.
    centre = np.median(pts, axis=0)
    d = np.linalg.norm(pts - centre, axis=1)
    pts = pts[d <= np.quantile(d, 0.95)]
    q = pts - pts.mean(axis=0)
    evals, evecs = np.linalg.eigh(q.T @ q / len(q))  # ascending eigenvalues
    if not evals[1] > 0 or evals[0] > 0.25 * evals[1]:
        return DEFAULT_UP.copy()
    normal = evecs[:, 0]
    along = float(normal @ DEFAULT_UP)
    if abs(along) > 0.2:
        sign = 1.0 if along > 0 else -1.0
    else:
        h = q @ normal
        skew = float(np.mean(h**3))
        sign = 1.0 if skew >= 0 else -1.0
    return sign * normal / np.linalg.norm(normal)


# ----------------------------------------------------------------------------- orbit


def _basis_around(up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit up and two unit vectors spanning the plane perpendicular to it (deterministic)."""
    u = np.asarray(up, dtype=np.float64).reshape(3)
    n = np.linalg.norm(u)
    if not np.isfinite(u).all() or n == 0:
        raise ValueError(f"up must be a non-zero 3-vector, got {up!r}")
    u = u / n
    ref = np.eye(3)[int(np.argmin(np.abs(u)))]  # the world axis least aligned with up
    e1 = ref - (ref @ u) * u
    e1 /= np.linalg.norm(e1)
    return u, e1, np.cross(u, e1)


def _box_corners(bounds) -> np.ndarray:
    b = np.asarray(bounds, dtype=np.float64)
    if b.shape != (2, 3) or not np.isfinite(b).all():
        raise ValueError(f"bounds must be a finite [2,3] array (min row, max row), got shape {b.shape}")
    return np.array([[b[i, 0], b[j, 1], b[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])


def orbit(
    bounds,  # [2, 3] min row, max row
    up,  # [3] world up
    n_frames: int,
    width: int,
    height: int,
    fov_y_deg: float = 50.0,
    elevation_deg: float = 20.0,
    distance_factor: float = 1.1,
    start_azimuth_deg: float = 0.0,
) -> list[Camera]:
    """One full turn around `up` through the box centre, looking at the centre.

    The distance is the smallest at which all 8 box corners project inside the image at
    every frame's azimuth (and at 64 evenly spaced ones, so the framing does not depend on
    the frame count), times `distance_factor` (>= 1 keeps the whole box in view; the margin
    leaves room for Gaussians that reach past their means). The same distance is used for
    every frame. Frames are spaced 360/n_frames degrees apart, the last one short of the
    first, so the video loops.

    Returns:
        n_frames Cameras (OpenCV axes), centred principal point, square pixels.
    """
    if n_frames < 1:
        raise ValueError(f"an orbit needs at least one frame, got {n_frames}")
    if distance_factor <= 0:
        raise ValueError(f"distance_factor must be positive, got {distance_factor}")
    corners = _box_corners(bounds)
    centre = corners.mean(axis=0)
    u, e1, e2 = _basis_around(up)
    el = math.radians(elevation_deg)
    f = focal_from_fov(fov_y_deg, height)
    tx, ty = (width / 2.0) / f, (height / 2.0) / f  # tan of the half fields of view

    def direction(az: float) -> np.ndarray:  # from the centre towards the camera
        return math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * u

    az0 = math.radians(start_azimuth_deg)
    frame_az = [az0 + 2 * math.pi * i / n_frames for i in range(n_frames)]
    # Also check a fixed fan of azimuths so the framing does not depend on the frame count.
    check_az = frame_az + [2 * math.pi * i / 64 for i in range(64)]
    q = corners - centre
    need = 0.0
    for az in check_az:
        rot = look_at_pose(centre + direction(az), centre, u)[:3, :3]
        xc, yc, zc = (q @ rot).T  # corner offsets in camera axes (z: forward)
        # A corner at depth z_c + d projects inside when |x_c| <= tx (z_c + d), same for y.
        need = max(need, float(np.max(np.abs(xc) / tx - zc)), float(np.max(np.abs(yc) / ty - zc)),
                   float(np.max(-zc)))
    extent = float(np.linalg.norm(q, axis=1).max())
    dist = distance_factor * need if need > 0 else max(extent, 1.0)
    near = min(0.01, 0.01 * dist)
    return [
        Camera.look_at(centre + dist * direction(az), centre, u, width, height, fov_y_deg, near=near)
        for az in frame_az
    ]


# ----------------------------------------------------------------------------- rotations


def _quat_from_rotmat(r: np.ndarray) -> np.ndarray:
    """[4] unit (w, x, y, z) of a [3,3] rotation (Shepperd's method: branch on the largest term)."""
    t = np.trace(r)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def _rotmat_from_quat(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def _slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Constant-speed rotation from q0 (s=0) to q1 (s=1) along the shorter arc."""
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly equal: the lerp is exact to float precision and avoids 0/0
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(dot, 1.0))
    return (math.sin((1 - s) * theta) * q0 + math.sin(s * theta) * q1) / math.sin(theta)


def _orthonormal(r: np.ndarray, what: str) -> np.ndarray:
    """The rotation nearest to a [3,3] matrix (polar decomposition); ValueError if it is not one."""
    if not np.isfinite(r).all():
        raise ValueError(f"{what} holds a non-finite number")
    uu, sv, vt = np.linalg.svd(r)
    if sv[-1] <= 1e-9 * max(sv[0], 1e-30):
        raise ValueError(f"{what} has a degenerate rotation (its 3x3 part is singular)")
    rot = uu @ vt
    if np.linalg.det(rot) < 0:
        raise ValueError(f"{what} is a reflection, not a rotation (its 3x3 part has a negative determinant)")
    return rot


# ----------------------------------------------------------------------------- splines


def _catmull_rom(p0, p1, p2, p3, s: float) -> np.ndarray:
    """Uniform Catmull-Rom point between p1 (s=0) and p2 (s=1)."""
    s2, s3 = s * s, s * s * s
    return 0.5 * (2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s2
                  + (3 * p1 - p0 - 3 * p2 + p3) * s3)


def interpolate(keyframes: list[Camera], n_frames: int, loop: bool = False) -> list[Camera]:
    """n_frames cameras along a spline through the keyframes.

    Positions follow a uniform Catmull-Rom spline (ends extended by reflection), rotations
    slerp between successive keys, intrinsics, near/far and time go linearly. Keys are evenly
    spaced in time: frame i sits at key parameter i*(K-1)/(n_frames-1) (loop: i*K/n_frames,
    wrapping to the first key), so the first and last frames are the first and last keys, and
    every key is hit exactly when (n_frames-1) is a multiple of (K-1). Every camera takes the
    first keyframe's image size (others are rescaled to it).
    """
    if not keyframes:
        raise ValueError("a camera path needs at least one keyframe")
    if n_frames < 1:
        raise ValueError(f"a camera path needs at least one frame, got {n_frames}")
    w, h = keyframes[0].width, keyframes[0].height
    keys = [k if (k.width, k.height) == (w, h) else k.scaled(w, h) for k in keyframes]
    if len(keys) == 1:
        return [keys[0]] * n_frames
    nk = len(keys)
    pos = np.stack([k.T_world_camera[:3, 3] for k in keys])
    quats = [_quat_from_rotmat(_orthonormal(k.T_world_camera[:3, :3], f"keyframe {i}"))
             for i, k in enumerate(keys)]
    for i in range(1, nk):  # same hemisphere as the previous key: slerp takes the short way
        if quats[i] @ quats[i - 1] < 0:
            quats[i] = -quats[i]

    def point(i: int) -> np.ndarray:
        if loop:
            return pos[i % nk]
        if i < 0:
            return 2 * pos[0] - pos[1]
        if i >= nk:
            return 2 * pos[-1] - pos[-2]
        return pos[i]

    out = []
    for f in range(n_frames):
        if loop:
            u = f * nk / n_frames
        else:
            u = 0.0 if n_frames == 1 else f * (nk - 1) / (n_frames - 1)
        seg = min(int(math.floor(u)), nk - 1 if loop else nk - 2)
        s = u - seg
        a, b = keys[seg % nk], keys[(seg + 1) % nk]
        p = _catmull_rom(point(seg - 1), point(seg), point(seg + 1), point(seg + 2), s)
        m = np.eye(4)
        m[:3, :3] = _rotmat_from_quat(_slerp(quats[seg % nk], quats[(seg + 1) % nk], s))
        m[:3, 3] = p
        lin = {k: (1 - s) * getattr(a, k) + s * getattr(b, k)
               for k in ("fx", "fy", "cx", "cy", "near", "far", "time")}
        out.append(replace(a, T_world_camera=m, **lin))
    return out


def resize_cameras(cameras: list[Camera], width: int, height: int) -> list[Camera]:
    """Cameras rendered at another size: the vertical field of view is kept, pixels stay square
    and the principal point is centred (the nerfstudio reading of fov + render size)."""
    out = []
    for c in cameras:
        if (c.width, c.height) == (width, height):
            out.append(c)
            continue
        f = focal_from_fov(c.fov_y_deg, height)
        out.append(replace(c, width=width, height=height, fx=f, fy=f, cx=width / 2.0, cy=height / 2.0))
    return out


# ----------------------------------------------------------------------------- files


def _number(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {v!r}")
    return float(v)


def _positive_int(v, what: str) -> int:
    x = _number(v, what)
    if x != int(x) or x < 1:
        raise ValueError(f"{what} must be a positive whole number, got {v!r}")
    return int(x)


def _fov(v, what: str) -> float:
    x = _number(v, what)
    if not 0 < x < 180:
        raise ValueError(f"{what} must be between 0 and 180 degrees, got {v!r}")
    return x


def _matrix16(v, what: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != 16:
        n = len(v) if isinstance(v, list) else type(v).__name__
        raise ValueError(f"{what} must be a list of 16 numbers (a row-major 4x4), got {n}")
    m = np.array([_number(x, what) for x in v], dtype=np.float64).reshape(4, 4)
    m[:3, :3] = _orthonormal(m[:3, :3], what)
    m[3] = [0.0, 0.0, 0.0, 1.0]  # nerfstudio reads only the top 3 rows
    return m


def _vec3(v, what: str) -> np.ndarray:
    if not isinstance(v, list) or len(v) != 3:
        raise ValueError(f"{what} must be a list of 3 numbers, got {v!r}")
    return np.array([_number(x, what) for x in v], dtype=np.float64)


def _read_nerfstudio(d: dict) -> CameraPath:
    ctype = d.get("camera_type", "perspective")
    if ctype != "perspective":
        raise ValueError(f"camera_type {ctype!r} is not supported (only 'perspective')")
    if "render_width" not in d or "render_height" not in d:
        raise ValueError("a nerfstudio camera path needs render_width and render_height")
    width = _positive_int(d["render_width"], "render_width")
    height = _positive_int(d["render_height"], "render_height")
    fps = _number(d.get("fps", DEFAULT_FPS), "fps")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    entries = d["camera_path"]
    if not isinstance(entries, list) or not entries:
        raise ValueError("camera_path must be a non-empty list of cameras")
    has_time = all(isinstance(e, dict) and "render_time" in e for e in entries)
    cams = []
    for i, e in enumerate(entries):
        where = f"camera_path[{i}]"
        if not isinstance(e, dict):
            raise ValueError(f"{where} must be an object, got {type(e).__name__}")
        for key in ("camera_to_world", "fov"):
            if key not in e:
                raise ValueError(f"{where} has no {key!r}")
        c2w = opengl_to_opencv_c2w(_matrix16(e["camera_to_world"], f"{where}.camera_to_world"))
        fov = _fov(e["fov"], f"{where}.fov")
        t = _number(e["render_time"], f"{where}.render_time") if has_time else 0.0
        cams.append(Camera.from_fov(width, height, fov, c2w, time=t))
    return CameraPath(cams, fps, width, height, has_time, "nerfstudio")


def _read_radview(d: dict) -> CameraPath:
    version = d.get("radview_camera_path")
    if version != 1:
        raise ValueError(f"radview_camera_path version {version!r} is not supported (expected 1)")
    width = _positive_int(d.get("width", 640), "width")
    height = _positive_int(d.get("height", 480), "height")
    fps = _number(d.get("fps", DEFAULT_FPS), "fps")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    keys = d.get("keyframes")
    if not isinstance(keys, list) or not keys:
        raise ValueError("keyframes must be a non-empty list")
    has_time = all(isinstance(k, dict) and "time" in k for k in keys)
    cams = []
    for i, k in enumerate(keys):
        where = f"keyframes[{i}]"
        if not isinstance(k, dict):
            raise ValueError(f"{where} must be an object, got {type(k).__name__}")
        fov = _fov(k.get("fov", 50.0), f"{where}.fov")
        if "T_world_camera" in k:
            pose = _matrix16(k["T_world_camera"], f"{where}.T_world_camera")
        elif "eye" in k and "target" in k:
            eye, target = _vec3(k["eye"], f"{where}.eye"), _vec3(k["target"], f"{where}.target")
            up = _vec3(k["up"], f"{where}.up") if "up" in k else DEFAULT_UP
            if np.linalg.norm(target - eye) == 0:
                raise ValueError(f"{where}: eye and target are the same point")
            if np.linalg.norm(up) == 0:
                raise ValueError(f"{where}: up is the zero vector")
            pose = look_at_pose(eye, target, up)
        else:
            raise ValueError(f"{where} needs either 'eye' and 'target' or 'T_world_camera'")
        t = _number(k["time"], f"{where}.time") if has_time else 0.0
        cams.append(Camera.from_fov(width, height, fov, pose, time=t))
    frames = _positive_int(d["frames"], "frames") if "frames" in d else len(cams)
    loop = bool(d.get("loop", False))
    return CameraPath(interpolate(cams, frames, loop=loop), fps, width, height, has_time, "radview")


def read_camera_path(path: str | os.PathLike) -> CameraPath:
    """Read a nerfstudio camera_path.json or a Radview keyframe path (see the module docstring).

    Raises:
        ValueError: the file is missing, not JSON, or not a camera path; the message names the problem.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such camera path file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: cannot read the camera path ({e})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{p}: a camera path is a JSON object, got a {type(d).__name__}")
    try:
        if "camera_path" in d:
            return _read_nerfstudio(d)
        if "radview_camera_path" in d or "keyframes" in d:
            return _read_radview(d)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None
    raise ValueError(f"{p}: not a camera path (no 'camera_path' list as nerfstudio writes, "
                     "and no 'radview_camera_path' keyframes)")


def write_camera_path(path: str | os.PathLike, cameras: list[Camera], fps: float = DEFAULT_FPS,
                      with_time: bool = False) -> None:
    """Write cameras as a nerfstudio camera_path.json (one entry per frame).

    The format keeps a vertical field of view per camera and one render size, so a camera's
    off-centre principal point or non-square pixels are not stored. `with_time` writes each
    camera's `time` as render_time.
    """
    if not cameras:
        raise ValueError("no cameras to write")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    w, h = cameras[0].width, cameras[0].height
    entries = []
    for c in cameras:
        e = {
            "camera_to_world": [float(x) for x in opencv_to_opengl_c2w(c.T_world_camera).reshape(-1)],
            "fov": float(c.fov_y_deg),
            "aspect": w / h,
        }
        if with_time:
            e["render_time"] = float(c.time)
        entries.append(e)
    doc = {
        "camera_type": "perspective",
        "render_width": int(w),
        "render_height": int(h),
        "fps": float(fps),
        "seconds": len(cameras) / float(fps),
        "camera_path": entries,
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
