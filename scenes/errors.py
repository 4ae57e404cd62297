"""The one error type loaders raise for bad input."""

from __future__ import annotations

import os


class SceneLoadError(Exception):
    """A scene file could not be read (or written). Carries the path and a sentence for the user."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
