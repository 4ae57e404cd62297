"""Plain messages that work (loaders, the renderer) sends to the UI. No widgets here.

Every message travels through one signal, `Session.message(object)`; each panel handles the types
it cares about and ignores the rest (Brush's single message enum, as dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadStarted:
    """A load worker started reading `path`."""

    path: str
    job: int  # increases with every open_path; results of older jobs are ignored


@dataclass(frozen=True)
class SceneLoaded:
    """A scene was read and checked; the session now shows it."""

    path: str
    job: int
    scene: Any  # GaussianScene (or another scene kind)
    bounds: np.ndarray  # [2,3] robust axis-aligned box
    up: np.ndarray  # [3] estimated world up
    seconds: float  # wall time of the load
    memory_bytes: int  # bytes held by the scene's tensors


@dataclass(frozen=True)
class LoadFailed:
    """Reading `path` failed; `reason` is the loader's sentence for the user."""

    path: str
    job: int
    reason: str


@dataclass(frozen=True)
class LoadCancelled:
    """The user cancelled the load of `path`; its result, when it comes, is dropped."""

    path: str
    job: int


@dataclass(frozen=True)
class FrameRendered:
    """The viewport presented a frame."""

    backend: str
    width: int  # render resolution (lower than the widget while the camera moves)
    height: int
    interactive: bool  # True: a reduced-resolution frame while the camera moves
    frame_ms: float  # wall time of render + present
    stages_ms: dict[str, float] = field(default_factory=dict)  # FrameStats.stages_ms
    counters: dict[str, float] = field(default_factory=dict)  # FrameStats.counters
    time: float | None = None  # seconds: the instant a 4D scene was shown at (None: a static scene)


@dataclass(frozen=True)
class StatusMessage:
    """A line for the status bar (notices, fallbacks)."""

    text: str
    timeout_ms: int = 5000  # 0: stays until replaced
    warning: bool = False
