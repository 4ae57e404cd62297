"""Camera controller math for the viewer: orbit, pan, zoom, fly, roll, framing. No Qt.

A `Rig` is an immutable camera pose plus the point it orbits around and the world up direction.
Every operation returns a new Rig, so the viewport can keep the previous one (undo, tests).
Poses are camera-to-world in the project's one convention, OpenCV: +X right, +Y down, +Z forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from renderer.types import look_at_pose

# Keep the orbit away from the poles: looking straight along `up` makes azimuth undefined.
MIN_POLE_ANGLE = math.radians(2.0)
# Default direction a freshly framed scene is seen from (relative to `up`).
DEFAULT_AZIMUTH_DEG = 30.0
DEFAULT_ELEVATION_DEG = 20.0
# Margin so the framed bounds do not touch the image border.
FRAME_MARGIN = 1.1


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else v


def rotation(axis, angle: float) -> np.ndarray:
    """[3,3] rotation by `angle` radians about `axis` (right-hand rule, Rodrigues' formula)."""
    k = _unit(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def horizontal_fov(fov_y_deg: float, aspect: float) -> float:
    """Horizontal field of view in degrees for a vertical one and an aspect ratio width/height."""
    return math.degrees(2 * math.atan(aspect * math.tan(math.radians(fov_y_deg) / 2)))


def view_direction(up, azimuth_deg: float = DEFAULT_AZIMUTH_DEG,
                   elevation_deg: float = DEFAULT_ELEVATION_DEG) -> np.ndarray:
    """[3] unit direction from the target to the eye, at an azimuth/elevation around `up`."""
    up = _unit(up)
    a = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 0, 1.0])
    e1 = _unit(np.cross(up, a))
    e2 = np.cross(up, e1)
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return math.cos(el) * (math.cos(az) * e1 + math.sin(az) * e2) + math.sin(el) * up


@dataclass(frozen=True, eq=False)
class Rig:
    """A camera pose, the point it orbits around, and the world up direction."""

    pose: np.ndarray  # [4,4] camera-to-world, OpenCV axes
    target: np.ndarray  # [3] orbit centre, world
    up: np.ndarray  # [3] unit world up (appears up on screen when there is no roll)

    def __post_init__(self):
        object.__setattr__(self, "pose", np.asarray(self.pose, dtype=np.float64).copy())
        object.__setattr__(self, "target", np.asarray(self.target, dtype=np.float64).copy())
        object.__setattr__(self, "up", _unit(self.up))

    # Camera axes in world coordinates.
    @property
    def eye(self) -> np.ndarray:
        return self.pose[:3, 3].copy()

    @property
    def right(self) -> np.ndarray:
        return self.pose[:3, 0].copy()

    @property
    def down(self) -> np.ndarray:
        return self.pose[:3, 1].copy()

    @property
    def forward(self) -> np.ndarray:
        return self.pose[:3, 2].copy()

    @property
    def distance(self) -> float:
        return float(np.linalg.norm(self.eye - self.target))

    @staticmethod
    def look_at(eye, target, up) -> Rig:
        return Rig(look_at_pose(eye, target, up), target, up)

    def _with(self, R: np.ndarray | None = None, eye=None, target=None) -> Rig:
        pose = self.pose.copy()
        if R is not None:
            pose[:3, :3] = R
        if eye is not None:
            pose[:3, 3] = eye
        return replace(self, pose=pose, target=self.target if target is None else target)

    def orbit(self, d_azimuth: float, d_elevation: float) -> Rig:
        """Turn the camera around the target: azimuth about `up`, elevation towards `up` (radians).

        Positive azimuth moves the eye to the camera's right; positive elevation moves it up.
        Elevation stops short of the poles. Roll is kept.
        """
        offset = self.eye - self.target
        dist = np.linalg.norm(offset)
        if dist < 1e-12:
            offset, dist = -self.forward, 1.0
        # Axis of elevation: horizontal, perpendicular to the view (the right axis without roll).
        h = np.cross(self.forward, self.up)
        if np.linalg.norm(h) < 1e-9:
            h = self.right
        h = _unit(h)
        pole = math.acos(float(np.clip(np.dot(offset / dist, self.up), -1, 1)))  # 0: eye straight above
        # Rotating about h by +angle moves the eye down (away from up): clamp the pole angle.
        new_pole = float(np.clip(pole - d_elevation, MIN_POLE_ANGLE, math.pi - MIN_POLE_ANGLE))
        el = pole - new_pole
        R = rotation(self.up, d_azimuth) @ rotation(h, -el)
        return self._with(R @ self.pose[:3, :3], eye=self.target + R @ offset)

    def pan(self, dx_px: float, dy_px: float, viewport_height_px: float, fov_y_deg: float) -> Rig:
        """Drag the scene with the mouse: it follows the cursor at the target's depth."""
        units_per_px = 2 * max(self.distance, 1e-9) * math.tan(math.radians(fov_y_deg) / 2) / max(
            viewport_height_px, 1.0)
        delta = -(dx_px * self.right + dy_px * self.down) * units_per_px
        return self._with(eye=self.eye + delta, target=self.target + delta)

    def zoom(self, factor: float, min_distance: float = 1e-6) -> Rig:
        """Scale the distance to the target by `factor` (< 1 moves closer)."""
        d = max(self.distance * factor, min_distance)
        return self._with(eye=self.target - self.forward * d)

    def fly(self, right: float = 0.0, up: float = 0.0, forward: float = 0.0) -> Rig:
        """Move eye and target together: along the camera's right and forward axes, and world up."""
        delta = right * self.right + forward * self.forward + up * self.up
        return self._with(eye=self.eye + delta, target=self.target + delta)

    def roll(self, angle: float) -> Rig:
        """Turn the camera about its viewing axis (radians; positive turns the image clockwise)."""
        R = rotation(self.forward, angle)
        return self._with(R @ self.pose[:3, :3])

    def with_up(self, up) -> Rig:
        """Same eye and target seen with another world up (roll is reset)."""
        eye = self.eye
        if np.linalg.norm(np.cross(_unit(self.target - eye), _unit(up))) < 1e-6:
            eye = self.target + view_direction(up) * max(self.distance, 1e-6)
        return Rig.look_at(eye, self.target, up)


def bounds_radius(bounds) -> tuple[np.ndarray, float]:
    """Centre [3] and bounding-sphere radius of an axis-aligned box [2,3]."""
    b = np.asarray(bounds, dtype=np.float64)
    centre = b.mean(axis=0)
    return centre, max(0.5 * float(np.linalg.norm(b[1] - b[0])), 1e-6)


def frame_bounds(bounds, up, fov_y_deg: float, aspect: float, direction=None) -> Rig:
    """A Rig that shows the whole box [2,3] (its bounding sphere) in a view of that fov and aspect.

    direction: [3] from the target to the eye; default: DEFAULT_AZIMUTH/ELEVATION around `up`.
    """
    centre, radius = bounds_radius(bounds)
    half = math.radians(min(fov_y_deg, horizontal_fov(fov_y_deg, aspect))) / 2
    dist = FRAME_MARGIN * radius / math.sin(half)
    d = _unit(view_direction(up) if direction is None else direction)
    if np.linalg.norm(np.cross(d, _unit(up))) < 1e-6:  # looking along up: tilt a little
        d = view_direction(up, 0.0, 90.0 - math.degrees(MIN_POLE_ANGLE) * 2)
    return Rig.look_at(centre + d * dist, centre, up)


def fly_speed(bounds) -> float:
    """World units per second for W/A/S/D: cross the scene's bounding sphere in about 4 s."""
    return bounds_radius(bounds)[1] / 2.0


def near_far(rig: Rig, bounds) -> tuple[float, float]:
    """Clip planes that hold the scene's bounding sphere from the rig's eye (near stays positive)."""
    centre, radius = bounds_radius(bounds)
    d = float(np.linalg.norm(rig.eye - centre))
    far = d + 4 * radius  # room for floaters outside the robust bounds
    return max(far * 1e-5, 1e-4), far
