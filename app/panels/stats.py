"""Statistics dock: frame rate, frame time per stage (FrameStats.stages_ms) and counters."""

from __future__ import annotations

import time
from collections import deque

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from ..messages import FrameRendered

# Frames further apart than this are not one animation (the camera rested in between).
MAX_INTERVAL_S = 0.5
# Relabel at most this often while frames stream: every label change repaints part of the window,
# which costs the renderer CPU time on a software rasterizer.
REFRESH_S = 0.25
COUNTER_LABELS = {"visible": "Visible primitives", "tile_pairs": "Tile pairs"}


class StatsPanel(QWidget):
    """Shows the latest FrameRendered message; FPS is measured between presented frames."""

    summary = Signal(str)  # one line for the status bar, emitted when the panel relabels

    def __init__(self, session, parent=None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        top = QGroupBox("Frame")
        self.form = QFormLayout(top)
        self.labels: dict[str, QLabel] = {}
        for key in ("FPS", "Frame time", "Resolution", "Backend", "Time"):
            self.labels[key] = QLabel("–")
            self.form.addRow(key, self.labels[key])
        outer.addWidget(top)
        # One label per box, filled with a small table: rows come and go with the backend, and
        # rebuilding form rows (deleting widgets) races with Qt's queued show of new ones.
        self.stages_box = QGroupBox("Stages (ms)")
        self.stages = QLabel("–")
        QVBoxLayout(self.stages_box).addWidget(self.stages)
        outer.addWidget(self.stages_box)
        self.counters_box = QGroupBox("Counters")
        self.counters = QLabel("–")
        QVBoxLayout(self.counters_box).addWidget(self.counters)
        outer.addWidget(self.counters_box)
        outer.addStretch(1)
        self._times: deque[float] = deque(maxlen=30)
        self.fps: float | None = None
        self._shown_at = -1e9
        session.message.connect(self.on_message)

    def on_message(self, msg):
        if isinstance(msg, FrameRendered):
            self.show_frame(msg)

    def show_frame(self, msg: FrameRendered, now: float | None = None):
        now = time.perf_counter() if now is None else now
        if self._times and now - self._times[-1] > MAX_INTERVAL_S:
            self._times.clear()
        self._times.append(now)
        if len(self._times) >= 2:
            self.fps = (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)
        if msg.interactive and now - self._shown_at < REFRESH_S:
            return
        self._shown_at = now
        if len(self._times) >= 2:
            self.labels["FPS"].setText(f"{self.fps:.1f}")
        else:
            self.labels["FPS"].setText(f"{1000.0 / max(msg.frame_ms, 1e-3):.1f} (one frame)")
        self.labels["Frame time"].setText(f"{msg.frame_ms:.1f} ms")
        moving = " (moving)" if msg.interactive else ""
        self.labels["Resolution"].setText(f"{msg.width} x {msg.height}{moving}")
        self.labels["Backend"].setText(msg.backend)
        # The instant the frame on screen shows (4D scenes; FrameRendered.time is None otherwise).
        self.labels["Time"].setText("–" if msg.time is None else f"{msg.time:.3f} s")
        stages = {k: f"{v:.2f}" for k, v in msg.stages_ms.items()}
        if stages:
            stages["total"] = f"{sum(msg.stages_ms.values()):.2f}"
        self.stages.setText(_table(stages))
        counters = {COUNTER_LABELS.get(k, k): f"{v:,.0f}" for k, v in msg.counters.items()}
        self.counters.setText(_table(counters))
        fps = f" {self.fps:.1f} FPS" if msg.interactive and self.fps else ""
        at = "" if msg.time is None else f" t={msg.time:.2f} s"
        self.summary.emit(f"{msg.backend} {msg.width}x{msg.height} {msg.frame_ms:.0f} ms{fps}{at}")


def _table(rows: dict[str, str]) -> str:
    if not rows:
        return "–"
    body = "".join(f"<tr><td>{k}</td><td align='right'>&nbsp;&nbsp;{v}</td></tr>" for k, v in rows.items())
    return f"<table>{body}</table>"

