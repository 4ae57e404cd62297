"""Camera, RenderSettings, Frame, FrameStats and the Renderer protocol.

Axis convention, stated once for the whole project: OpenCV. Camera +X right, +Y down, +Z forward
(the same as COLMAP and the INRIA 3DGS code). `T_world_camera` maps camera coordinates to world
coordinates. Conversions to and from OpenGL / nerfstudio / Blender cameras (+Y up, -Z forward)
live in renderer/conventions.py and nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera. Pixel (i, j) covers [i, i+1) x [j, j+1); its centre is (i+0.5, j+0.5)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    T_world_camera: np.ndarray = field(default_factory=lambda: np.eye(4))  # [4,4] camera-to-world, OpenCV
    near: float = 0.01
    far: float = 1e10
    time: float = 0.0  # seconds: the time a camera-path key carries; renderers read RenderSettings.time

    def __post_init__(self):
        m = np.asarray(self.T_world_camera, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"T_world_camera must be 4x4, got {m.shape}")
        object.__setattr__(self, "T_world_camera", m)

    @property
    def T_camera_world(self) -> np.ndarray:
        """[4,4] world-to-camera (the view matrix)."""
        return np.linalg.inv(self.T_world_camera)

    @property
    def position(self) -> np.ndarray:
        """[3] camera centre in world coordinates."""
        return self.T_world_camera[:3, 3].copy()

    @property
    def K(self) -> np.ndarray:
        """[3,3] intrinsics."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def fov_y_deg(self) -> float:
        return math.degrees(2 * math.atan(self.height / (2 * self.fy)))

    def scaled(self, width: int, height: int) -> Camera:
        """Same view at another resolution (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        return replace(self, width=width, height=height, fx=self.fx * sx, fy=self.fy * sy,
                       cx=self.cx * sx, cy=self.cy * sy)

    def with_pose(self, T_world_camera: np.ndarray) -> Camera:
        return replace(self, T_world_camera=T_world_camera)

    @staticmethod
    def from_fov(width: int, height: int, fov_y_deg: float, T_world_camera: np.ndarray | None = None,
                 **kw) -> Camera:
        """Centred principal point, square pixels, vertical field of view in degrees."""
        f = height / (2 * math.tan(math.radians(fov_y_deg) / 2))
        return Camera(width, height, f, f, width / 2, height / 2,
                      np.eye(4) if T_world_camera is None else T_world_camera, **kw)

    @staticmethod
    def look_at(eye, target, up, width: int, height: int, fov_y_deg: float = 50.0, **kw) -> Camera:
        """Camera at `eye` looking at `target`; `up` is the world direction that appears up on screen."""
        return Camera.from_fov(width, height, fov_y_deg, look_at_pose(eye, target, up), **kw)


def look_at_pose(eye, target, up) -> np.ndarray:
    """[4,4] camera-to-world (OpenCV: +Z towards target, +Y down on screen) from eye/target/up."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(-up, z)  # OpenCV: y points down (= -up), and x = y cross z
    if np.linalg.norm(x) < 1e-9:  # looking along up: pick any perpendicular
        x = np.cross(np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, eye
    return m


RenderMode = Literal["rgb", "depth", "alpha", "normals", "ellipsoids", "points", "albedo"]


@dataclass(frozen=True)
class RenderSettings:
    """How to render; the same dataclass feeds the CLI and the GUI defaults."""

    mode: str = "rgb"  # rgb | depth | alpha | normals | ellipsoids | points | albedo
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # linear RGB in [0,1]
    sh_degree: int | None = None  # cap on the SH degree used (None: the scene's)
    antialias: str = "classic"  # "classic" (+0.3 px dilation) | "mip" (opacity compensation)
    splat_scale: float = 1.0  # multiplies every Gaussian's scales (INRIA scale_modifier)
    time: float = 0.0  # seconds: the instant a 4D scene is sliced at
    depth_range: tuple[float, float] | None = None  # colour-map range in "depth" mode (None: auto)
    ellipsoid_sigma: float = 2.0  # "ellipsoids" mode: draw each Gaussian's sigma-ellipsoid
    point_size: float = 2.0  # "points" mode: radius in pixels
    min_opacity: float = 0.0  # "ellipsoids"/"points": skip Gaussians below this opacity


@dataclass
class FrameStats:
    """Per-stage wall/GPU milliseconds and counters of one frame."""

    stages_ms: dict[str, float] = field(default_factory=dict)  # e.g. project, sort, bin, blend, readback
    counters: dict[str, float] = field(default_factory=dict)  # visible, tile_pairs, blended_pairs, ...
    backend: str = ""

    @property
    def total_ms(self) -> float:
        return float(sum(self.stages_ms.values()))


@dataclass
class Frame:
    """A rendered image. Tensors are float32, linear (no gamma)."""

    rgb: Tensor  # [H, W, 3] in [0, 1] (mode "depth"/"alpha"/...: the colour-mapped visualisation)
    alpha: Tensor  # [H, W, 1] accumulated opacity (1 - final transmittance)
    depth: Tensor | None = None  # [H, W, 1] expected view-space z, normalised by alpha (0 where empty)
    normals: Tensor | None = None  # [H, W, 3] world-space unit normals (where the mode provides them)
    extras: dict[str, Tensor] = field(default_factory=dict)  # G-buffer channels etc., [H, W, C]
    stats: FrameStats = field(default_factory=FrameStats)

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def to_uint8(self) -> np.ndarray:
        """[H, W, 3] uint8 with sRGB-free clipping (values are written as stored)."""
        return rgb_to_uint8(self.rgb.detach().cpu().numpy())


def rgb_to_uint8(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] float colour to uint8: clipped to [0, 1], rounded half up (pixel_out.glsl's
    display words round the same way)."""
    return (np.clip(rgb, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


@runtime_checkable
class Renderer(Protocol):
    """A backend. Holds resources (device, GL context, per-scene buffers); no camera state."""

    name: str

    def supports(self, scene) -> bool: ...

    def render(self, scene, camera: Camera, settings: RenderSettings = RenderSettings()) -> Frame: ...


def view_matrix_torch(camera: Camera, device=None) -> Tensor:
    """[4,4] float32 world-to-camera as a tensor."""
    return torch.as_tensor(camera.T_camera_world, dtype=torch.float32, device=device)
