"""QThreads that do slow work off the UI thread and report through app.messages dataclasses."""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import torch
from PySide6.QtCore import QThread, Signal

from .messages import LoadFailed, SceneLoaded

_threads: weakref.WeakSet = weakref.WeakSet()  # every worker made, for running_threads()


def running_threads() -> list[QThread]:
    """Workers whose thread is still running (tests check none is left behind)."""
    from shiboken6 import isValid

    return [t for t in list(_threads) if isValid(t) and t.isRunning()]


def scene_memory_bytes(scene) -> int:
    """Bytes held by the tensors of a scene dataclass."""
    total = 0
    if dataclasses.is_dataclass(scene):
        for f in dataclasses.fields(scene):
            v = getattr(scene, f.name, None)
            if isinstance(v, torch.Tensor):
                total += v.element_size() * v.nelement()
    return total


def scene_up(scene) -> np.ndarray:
    """[3] world up of a scene: the file's hint, else renderer.camera_paths.estimate_up, else -Y.

    -Y is the COLMAP/INRIA habit (OpenCV cameras with +Y down, captured mostly upright).
    """
    hint = getattr(scene, "up", None)
    if hint is not None:
        return np.asarray(hint, dtype=np.float64)
    try:
        from renderer.camera_paths import estimate_up
    except ImportError:
        return np.array([0.0, -1.0, 0.0])
    up = np.asarray(estimate_up(scene), dtype=np.float64).reshape(3)
    n = np.linalg.norm(up)
    return up / n if np.isfinite(n) and n > 0 else np.array([0.0, -1.0, 0.0])


def load_and_describe(path: str, job: int) -> SceneLoaded | LoadFailed:
    """Load a scene and compute what the UI needs (bounds, up, memory); never raises."""
    from scenes import SceneLoadError, load_scene

    t0 = time.perf_counter()
    try:
        scene = load_scene(path)
        bounds = np.asarray(scene.bounds(), dtype=np.float64)
        if not np.isfinite(bounds).all():
            return LoadFailed(path, job, "the scene has no finite positions to show")
        up = scene_up(scene)
    except SceneLoadError as e:
        return LoadFailed(path, job, e.reason)
    except MemoryError:
        return LoadFailed(path, job, "not enough memory to load this scene")
    except Exception as e:  # noqa: BLE001 - a loader bug must not take the viewer down
        return LoadFailed(path, job, f"unexpected error while loading ({type(e).__name__}: {e})")
    return SceneLoaded(path=path, job=job, scene=scene, bounds=bounds, up=up,
                       seconds=time.perf_counter() - t0, memory_bytes=scene_memory_bytes(scene))


class LoadWorker(QThread):
    """Loads one file; emits `done(SceneLoaded | LoadFailed)` once, from the worker thread.

    Reading a file cannot be interrupted part way; cancelling is the session dropping the
    result of a job it no longer wants (the thread still runs to the end, then quits).
    """

    done = Signal(object)

    def __init__(self, path: str | Path, job: int, parent=None):
        super().__init__(parent)
        _threads.add(self)
        self.path = str(path)
        self.job = job

    def run(self):
        self.done.emit(load_and_describe(self.path, self.job))


class RenderWorker(QThread):
    """Runs render jobs off the UI thread, newest first: a job submitted while one runs replaces
    any job still waiting (the camera moved on; the in-between view is not worth rendering).

    `done(key, frame, ms)` or `failed(key, exception)` is emitted for every job that ran.
    """

    done = Signal(object, object, float)
    failed = Signal(object, object)

    def __init__(self, parent=None):
        super().__init__(parent)
        _threads.add(self)
        self._cond = threading.Condition()
        self._job = None  # (key, fn) waiting to run
        self._stop = False
        self.busy_key = None  # key of the job running now

    def submit(self, key, fn) -> None:
        with self._cond:
            self._job = (key, fn)
            self._cond.notify()
        if not self.isRunning():
            self.start()

    def stop(self, timeout_ms: int = 60000) -> bool:
        """Finish the running job, drop the waiting one, end the thread."""
        with self._cond:
            self._stop = True
            self._job = None
            self._cond.notify()
        return self.wait(timeout_ms)

    def run(self):
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                key, fn = self._job
                self._job = None
                self.busy_key = key
            t0 = time.perf_counter()
            try:
                frame = fn()
            except Exception as e:  # noqa: BLE001 - reported to the UI thread, never raised here
                self.busy_key = None
                self.failed.emit(key, e)
                continue
            self.busy_key = None
            self.done.emit(key, frame, (time.perf_counter() - t0) * 1e3)
