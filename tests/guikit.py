"""Fixtures and helpers shared by the Qt widget tests (tests/test_gui_*.py); imported by them only,
so the model tests never load Qt. Importing the fixtures into a test module activates the autouse ones."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PySide6.QtCore import QSettings
from PySide6.QtGui import QImage

from app.workers import running_threads

WAIT_MS = 60000  # generous: other work may share the 2 cores while these run


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path):
    """Window layout and recent files go to a temporary INI file, not the user's."""
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings"))
    yield


@pytest.fixture(autouse=True)
def no_escaped_exceptions(monkeypatch):
    """Fail if any exception reaches sys.excepthook (i.e. escaped to the event loop)."""
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *exc: seen.append(exc))
    yield seen
    assert not seen, f"exceptions escaped to the event loop: {seen}"


@pytest.fixture(autouse=True)
def no_thread_left():
    yield
    left = running_threads()
    assert not left, f"threads still running after the test: {left}"


def settle(qtbot, w) -> None:
    """Wait until the camera rests and the backend delivered the full-resolution view."""
    vp = w.viewport
    vp.update()  # a torch view is asked for when the widget paints
    qtbot.waitUntil(lambda: not vp.interactive and not w.session.loading and vp.frame_current(),
                    timeout=WAIT_MS)


def grab(qtbot, w) -> torch.Tensor:
    """The viewport's framebuffer as [H, W, 3] float in [0, 1] (it repaints at full resolution)."""
    settle(qtbot, w)
    return rgb_tensor(w.viewport.grabFramebuffer())


def rgb_tensor(image: QImage) -> torch.Tensor:
    """A QImage as [H, W, 3] float in [0, 1]."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    h, wd, bpl = img.height(), img.width(), img.bytesPerLine()
    a = np.frombuffer(img.constBits(), np.uint8, count=h * bpl).reshape(h, bpl)[:, : wd * 3]
    return torch.from_numpy(a.reshape(h, wd, 3).astype(np.float32) / 255.0)


def not_background(img: torch.Tensor, bg=(0.0, 0.0, 0.0)) -> float:
    """Fraction of pixels differing from the background by more than 4/255."""
    return float(((img - torch.tensor(bg)).abs().amax(-1) > 4 / 255).float().mean())
