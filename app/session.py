"""The viewer's model: scene, camera rig, render settings and backend name. A QObject, no widgets.

Everything that opens a scene (command line, File > Open, recent files, drag and drop) calls
`Session.open_path`; the load runs in a LoadWorker and comes back as a message. Panels and the
viewport listen to the signals and to `message(object)` (app.messages dataclasses).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from renderer import Camera, RenderSettings

from . import navigation as nav
from .messages import LoadCancelled, LoadFailed, LoadStarted, SceneLoaded, StatusMessage
from .workers import LoadWorker, scene_memory_bytes, scene_up

BACKENDS = ("gl", "torch")
DEFAULT_FPS = 30.0  # timeline frame rate of a 4D scene that names none (flipbooks carry their own)
MODES = ("rgb", "depth", "alpha", "ellipsoids", "normals", "points")


class Session(QObject):
    """Holds what is shown and how; emits signals when any of it changes."""

    message = Signal(object)  # app.messages dataclasses
    scene_changed = Signal()
    camera_changed = Signal()
    settings_changed = Signal()  # settings, fov or backend
    # settings.time moved (scrubbing, playback; not sent on scene_changed, which resets the time)
    time_changed = Signal(float)
    loading_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None, backend: str = "gl"):
        super().__init__(parent)
        self.scene = None
        self.path: str | None = None
        self.info: SceneLoaded | None = None  # what the loader reported about the open scene
        self.bounds: np.ndarray | None = None  # [2,3]
        self.up = np.array([0.0, -1.0, 0.0])  # [3] world up used by navigation
        self.rig: nav.Rig | None = None
        self.settings = RenderSettings()
        self.fov_y_deg = 50.0
        self.backend = backend if backend in BACKENDS else "gl"
        self.aspect = 4 / 3  # of the viewport, for framing; the viewport keeps it current
        self._job = 0
        self._wanted: int | None = None  # the job whose result will be shown
        self._workers: dict[int, LoadWorker] = {}
        self._queue: list[str] = []  # more dropped files to try if the current one fails
        self._time_range: tuple = (None, None)  # (scene, its time range): see time_range()

    # --- opening scenes -------------------------------------------------------------------------

    def open_path(self, path: str | Path) -> int:
        """Start loading `path` in a worker thread (cancelling a running load); returns the job id."""
        self._cancel_current()
        self._job += 1
        job, path = self._job, str(path)
        worker = LoadWorker(path, job, parent=self)
        worker.done.connect(self._on_done)
        worker.finished.connect(self._on_worker_finished)
        self._workers[job] = worker
        self._wanted = job
        self.message.emit(LoadStarted(path, job))
        self.loading_changed.emit(True)
        worker.start()
        return job

    def open_paths(self, paths: list[str | Path]) -> int | None:
        """Open the first of several files (a drop); if it fails the next is tried, and so on."""
        paths = [str(p) for p in paths]
        if not paths:
            return None
        self._queue = paths[1:]
        job = self.open_path(paths[0])
        return job

    def cancel_load(self) -> None:
        """Stop waiting for the running load; its result is dropped when it arrives."""
        self._queue = []
        self._cancel_current()

    def _cancel_current(self):
        job = self._wanted
        if job is None:
            return
        self._wanted = None
        w = self._workers.get(job)
        self.message.emit(LoadCancelled(w.path if w else "", job))
        self.loading_changed.emit(False)

    @property
    def loading(self) -> bool:
        return self._wanted is not None

    def running_workers(self) -> list[LoadWorker]:
        return [w for w in self._workers.values() if w.isRunning()]

    @Slot(object)
    def _on_done(self, msg):
        if msg.job != self._wanted:
            return  # cancelled or superseded
        self._wanted = None
        self.loading_changed.emit(False)
        if isinstance(msg, SceneLoaded):
            self._queue = []
            self._show(msg)
        elif isinstance(msg, LoadFailed):
            self.message.emit(msg)
            if self._queue:
                self.open_path(self._queue.pop(0))

    @Slot()
    def _on_worker_finished(self):
        # Runs in the session's thread (queued), so the dict is only touched from one thread.
        for job, w in list(self._workers.items()):
            if w.isFinished():
                del self._workers[job]
                w.deleteLater()

    def _show(self, loaded: SceneLoaded):
        self.scene, self.path, self.info = loaded.scene, loaded.path, loaded
        tr = self.time_range()
        # A new scene starts at the beginning of its time range (static scenes keep time 0).
        self.settings = replace(self.settings, time=tr[0] if tr else 0.0)
        self.bounds = np.asarray(loaded.bounds, dtype=np.float64)
        self.up = nav._unit(loaded.up)
        self.rig = nav.frame_bounds(self.bounds, self.up, self.fov_y_deg, self.aspect)
        self.scene_changed.emit()
        self.camera_changed.emit()  # (time was reset above: listeners of scene_changed reread it)
        self.message.emit(loaded)

    def set_scene(self, scene, path: str | None = None) -> None:
        """Show a scene built in code (scripts, tests), as if it had been loaded."""
        self._show(SceneLoaded(path=path or "(in memory)", job=0, scene=scene,
                               bounds=np.asarray(scene.bounds(), dtype=np.float64), up=scene_up(scene),
                               seconds=0.0, memory_bytes=scene_memory_bytes(scene)))

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Drop pending loads and wait for worker threads; True when none is left running."""
        self.cancel_load()
        ok = True
        for w in list(self._workers.values()):
            ok = w.wait(timeout_ms) and ok
        return ok

    # --- camera ---------------------------------------------------------------------------------

    def set_rig(self, rig: nav.Rig) -> None:
        self.rig = rig
        self.camera_changed.emit()

    def frame_scene(self, keep_direction: bool = True) -> None:
        """Fit the scene's bounds in view (F); keep_direction=False also resets direction and roll."""
        if self.bounds is None:
            return
        direction = None
        if keep_direction and self.rig is not None:
            direction = -self.rig.forward
        self.set_rig(nav.frame_bounds(self.bounds, self.up, self.fov_y_deg, self.aspect, direction))

    def reset_camera(self) -> None:
        self.frame_scene(keep_direction=False)

    def flip_up(self) -> None:
        """Turn the world upside down for navigation (the estimate can be wrong)."""
        self.up = -self.up
        if self.rig is not None:
            self.set_rig(self.rig.with_up(self.up))
        self.message.emit(StatusMessage(f"up direction is now {np.round(self.up, 3).tolist()}"))

    def set_fov(self, fov_y_deg: float) -> None:
        self.fov_y_deg = float(min(max(fov_y_deg, 5.0), 150.0))
        self.settings_changed.emit()

    def camera(self, width: int, height: int) -> Camera:
        """The current view as a Camera of that size (OpenCV axes)."""
        if self.rig is None:
            rig = nav.Rig.look_at((0, 0, -3.0), (0, 0, 0), self.up)
        else:
            rig = self.rig
        near, far = nav.near_far(rig, self.bounds) if self.bounds is not None else (0.01, 1e4)
        return Camera.from_fov(int(width), int(height), self.fov_y_deg, rig.pose, near=near, far=far)

    def camera_json(self, width: int, height: int) -> dict:
        """The current camera as plain JSON data (intrinsics in pixels, camera-to-world, OpenCV)."""
        cam = self.camera(width, height)
        return {
            "width": cam.width, "height": cam.height,
            "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
            "T_world_camera": cam.T_world_camera.tolist(),
            "convention": "opencv",  # +X right, +Y down, +Z forward; camera-to-world
            "fov_y_deg": self.fov_y_deg,
        }

    # --- render settings ------------------------------------------------------------------------

    def set_settings(self, **changes) -> None:
        """Change RenderSettings fields (mode, sh_degree, antialias, background, splat_scale, ...)."""
        new = replace(self.settings, **changes)
        if new != self.settings:
            time_moved = new.time != self.settings.time
            self.settings = new
            self.settings_changed.emit()
            if time_moved:
                self.time_changed.emit(new.time)

    # --- time (4D scenes) -----------------------------------------------------------------------

    def time_range(self) -> tuple[float, float] | None:
        """(t0, t1) of the open scene, or None when it has no time (kept per scene: without a
        time_duration a Gaussian4DScene takes quantiles of all its times, and this is asked on
        every playback tick and frame)."""
        if self._time_range[0] is not self.scene:
            self._time_range = (self.scene, scene_time_range(self.scene))
        return self._time_range[1]

    def fps(self) -> float:
        """Frames per second of the open scene's timeline (frame step = 1 / fps)."""
        return scene_fps(self.scene)

    @property
    def time(self) -> float:
        return self.settings.time

    def set_time(self, t: float) -> None:
        """Show the scene at time t (seconds). Emits time_changed only (panels need no resync)."""
        t = float(t)
        if math.isfinite(t) and t != self.settings.time:
            self.settings = replace(self.settings, time=t)
            self.time_changed.emit(t)

    def set_backend(self, name: str) -> None:
        if name not in BACKENDS:
            raise ValueError(f"unknown backend {name!r} (use {', '.join(BACKENDS)})")
        if name != self.backend:
            self.backend = name
            self.settings_changed.emit()

    def mode_refused(self, reason: str) -> None:
        """The backend cannot draw the chosen mode: say so and fall back to colour."""
        mode = self.settings.mode
        self.message.emit(StatusMessage(f"{self.backend} backend cannot render mode {mode!r} ({reason}); "
                                        "showing colour", warning=True))
        self.set_settings(mode="rgb")


def has_time(scene) -> bool:
    """True for scenes with a timeline: kind "gaussians4d" (4D Gaussians, flipbooks) or a time_range."""
    if scene is None:
        return False
    return getattr(scene, "kind", None) == "gaussians4d" or hasattr(scene, "time_range")


def scene_time_range(scene) -> tuple[float, float] | None:
    """(t0, t1) for a scene with time (kind "gaussians4d" or a time_range method), else None.

    A range that is empty or not finite is widened to one frame so a timeline can still show it.
    """
    if not has_time(scene):
        return None
    try:
        t0, t1 = (float(v) for v in scene.time_range())
    except Exception:  # noqa: BLE001 - a scene without a usable range still gets a timeline
        t0, t1 = 0.0, 1.0
    if not math.isfinite(t0):
        t0 = 0.0
    if not (math.isfinite(t1) and t1 > t0):
        t1 = t0 + 1.0 / scene_fps(scene)
    return t0, t1


def scene_fps(scene) -> float:
    """Timeline frame rate: meta["fps"], else the scene's fps (flipbooks), else DEFAULT_FPS."""
    meta = getattr(scene, "meta", None) or {}
    for v in (meta.get("fps"), getattr(scene, "fps", None)):
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f) and f > 0:
            return f
    return DEFAULT_FPS


def scene_model(scene) -> str | None:
    """"rotor" / "yang" (Gaussian4DScene), "flipbook" (per-frame PLYs), or None for static scenes."""
    if not has_time(scene):
        return None
    if hasattr(scene, "frame_count"):
        return "flipbook"
    return str(getattr(scene, "model", "?"))


def describe_scene(session: Session) -> dict[str, str]:
    """Label -> text for the Scene panel (file, format, counts, SH degree, time, bounds, memory).

    Only facts the scene has are present: no time rows for static scenes, no SH degree where the
    colour is not SH (voxel grids with an MLP or plain RGB), grid rows only for voxel grids.
    """
    if session.scene is None:
        return {}
    scene, info = session.scene, session.info
    meta = getattr(scene, "meta", None) or {}
    out = {"File": Path(session.path).name if session.path else "", "Format": str(meta.get("format", "?"))}
    out["Kind"] = str(getattr(scene, "kind", "?"))
    model = scene_model(scene)
    if model is not None:
        out["Model"] = model
    try:
        out["Primitives"] = f"{len(scene):,}"
        if model == "flipbook":
            out["Primitives"] += " (first frame)"
    except Exception:  # noqa: BLE001 - no length (TypeError) or a frame that fails to load
        pass
    tr = session.time_range()
    if tr is not None:
        fps = scene_fps(scene)
        out["Time range"] = f"{tr[0]:.3g} – {tr[1]:.3g} s"
        frames = getattr(scene, "frame_count", None)
        out["Frames"] = f"{frames:,} at {fps:g} fps" if frames else f"{fps:g} fps (timeline step)"
    if getattr(scene, "kind", None) == "voxels":
        try:
            out["Grid"] = " x ".join(str(v) for v in scene.grid_shape)
        except Exception:  # noqa: BLE001
            pass
        mode = getattr(scene, "color_mode", None)
        if mode is not None:
            out["Colour"] = str(mode)
        if mode == "sh":
            out["SH degree"] = str(scene.sh_degree)
    else:
        try:
            out["SH degree"] = str(scene.sh_degree)
        except Exception:  # noqa: BLE001 - none (AttributeError), or a flipbook frame that fails
            pass
    if getattr(scene, "kind", None) == "convex" and hasattr(scene, "num_points"):
        out["Points per convex"] = str(scene.num_points)
    lo, hi = session.bounds
    out["Bounds min"] = ", ".join(f"{v:.3g}" for v in lo)
    out["Bounds max"] = ", ".join(f"{v:.3g}" for v in hi)
    if info is not None:
        out["Memory"] = f"{info.memory_bytes / 2**20:.1f} MiB"
        out["Load time"] = f"{info.seconds:.2f} s"
    out["Up"] = ", ".join(f"{v:.2f}" for v in session.up)
    if not math.isfinite(float(np.sum(session.bounds))):
        out["Bounds min"] = "n/a"
    return out
