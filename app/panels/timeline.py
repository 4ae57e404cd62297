"""Timeline dock for scenes with time (4D Gaussians, flipbooks): play/pause, scrub, frame steps,
loop and speed.

The session holds the time (RenderSettings.time, Session.set_time); `Playback` only moves it.
While playing, a QTimer ticks and each tick adds the wall-clock time since the previous tick
times the speed, so a slow frame makes playback skip ahead instead of running slow, and the
clock does not depend on how often the timer manages to fire.

Frames are the steps of 1 / fps from the start of the range (Session.fps: a flipbook's own rate,
else meta["fps"], else 30). For a flipbook the range is [0, frames / fps) and the last frame
starts at (frames - 1) / fps; a Gaussian4DScene can be shown at its end time t1 itself.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QElapsedTimer, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QStyle,
    QToolButton,
    QWidget,
)

from ..session import Session

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0)
TICK_MS = 15  # timer interval while playing; the time advanced comes from the clock, not from this
SLIDER_STEPS = 10000  # the slider's integer range over (t0, t1)
EPS = 1e-6  # frames: tolerance when turning a time back into a frame index


class Playback(QObject):
    """Moves the session's time: play/pause on a timer, seek, frame steps, loop, speed."""

    playing_changed = Signal(bool)
    options_changed = Signal()  # loop or speed

    def __init__(self, session: Session, parent: QObject | None = None):
        super().__init__(parent)
        self.session = session
        self.speed = 1.0
        self.loop = True
        self._timer = QTimer(self, interval=TICK_MS)
        self._timer.timeout.connect(self._tick)
        self._clock = QElapsedTimer()
        session.scene_changed.connect(self.pause)  # a new scene starts paused at its start

    # --- what the scene offers ----------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self.session.time_range() is not None

    @property
    def playing(self) -> bool:
        return self._timer.isActive()

    def frame_count(self) -> int:
        """Frames on the timeline (a flipbook's frames; else one per 1/fps step, both ends included)."""
        tr = self.session.time_range()
        if tr is None:
            return 0
        frames = getattr(self.session.scene, "frame_count", None)
        if frames:
            return int(frames)
        return int(math.floor((tr[1] - tr[0]) * self.session.fps() + EPS)) + 1

    def frame_index(self, t: float | None = None) -> int:
        """Index of the frame that time t (default: now) falls in, 0 .. frame_count() - 1."""
        tr = self.session.time_range()
        if tr is None:
            return 0
        t = self.session.time if t is None else t
        k = math.floor((t - tr[0]) * self.session.fps() + EPS)
        return int(min(max(k, 0), self.frame_count() - 1))

    def frame_time(self, k: int) -> float:
        tr = self.session.time_range()
        return (tr[0] if tr else 0.0) + k / self.session.fps()

    # --- control ------------------------------------------------------------------------------

    def play(self) -> None:
        tr = self.session.time_range()
        if tr is None or self.playing:
            return
        if not self.loop and self.session.time >= tr[1]:
            self.session.set_time(tr[0])  # at the end: play from the start again, like a video player
        self._clock.start()
        self._timer.start()
        self.playing_changed.emit(True)

    def pause(self) -> None:
        if self.playing:
            self._timer.stop()
            self.playing_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def seek(self, t: float) -> None:
        """Show time t, clamped to the scene's range."""
        tr = self.session.time_range()
        if tr is not None:
            self.session.set_time(min(max(float(t), tr[0]), tr[1]))

    def step(self, frames: int) -> None:
        """Go `frames` frames forward (negative: back) from the frame shown; pauses playback."""
        if self.session.time_range() is None:
            return
        self.pause()
        k = min(max(self.frame_index() + int(frames), 0), self.frame_count() - 1)
        self.seek(self.frame_time(k))

    def set_speed(self, speed: float) -> None:
        self.speed = float(speed)
        self.options_changed.emit()

    def set_loop(self, on: bool) -> None:
        self.loop = bool(on)
        self.options_changed.emit()

    def _tick(self):
        tr = self.session.time_range()
        if tr is None:
            self.pause()
            return
        t0, t1 = tr
        t = self.session.time + self._clock.restart() / 1000.0 * self.speed
        if t >= t1:
            if self.loop:
                t = t0 + math.fmod(t - t0, t1 - t0)
            else:
                self.session.set_time(t1)
                self.pause()
                return
        self.session.set_time(t)


def _fmt(t: float) -> str:
    return f"{t:.3f} s"


class TimelinePanel(QWidget):
    """One row: step back, play/pause, step forward, scrub slider, time and frame, loop, speed.

    The actions (Space, ',', '.', loop) are also put in the window's Playback menu, so their
    shortcuts work wherever the focus is in the window.
    """

    def __init__(self, session: Session, playback: Playback, parent=None):
        super().__init__(parent)
        self.session = session
        self.playback = playback
        st = self.style()
        self._icons = {True: st.standardIcon(QStyle.StandardPixmap.SP_MediaPause),
                       False: st.standardIcon(QStyle.StandardPixmap.SP_MediaPlay)}

        self.play_action = self._act("&Play", playback.toggle, Qt.Key.Key_Space, self._icons[False])
        self.back_action = self._act("Previous &Frame", lambda: playback.step(-1), Qt.Key.Key_Comma,
                                     st.standardIcon(QStyle.StandardPixmap.SP_MediaSeekBackward))
        self.forward_action = self._act("&Next Frame", lambda: playback.step(1), Qt.Key.Key_Period,
                                        st.standardIcon(QStyle.StandardPixmap.SP_MediaSeekForward))
        self.loop_action = QAction("&Loop", self, checkable=True)
        self.loop_action.setChecked(playback.loop)
        self.loop_action.toggled.connect(playback.set_loop)
        self.actions_list = [self.play_action, self.back_action, self.forward_action, self.loop_action]

        row = QHBoxLayout(self)
        row.setContentsMargins(6, 2, 6, 2)
        for a in (self.back_action, self.play_action, self.forward_action):
            row.addWidget(self._button(a))
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the viewport (W/A/S/D)
        self.slider.setMinimumWidth(120)
        row.addWidget(self.slider, 1)
        self.time_label = QLabel()
        self.time_label.setMinimumWidth(self.fontMetrics().horizontalAdvance("0000.000 s / 0000.000 s"))
        row.addWidget(self.time_label)
        self.frame_label = QLabel()
        self.frame_label.setMinimumWidth(self.fontMetrics().horizontalAdvance("frame 0000 / 0000"))
        row.addWidget(self.frame_label)
        loop = self._button(self.loop_action)
        loop.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        row.addWidget(loop)
        self.speed = QComboBox()
        self.speed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}x", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.setToolTip("Playback speed")
        row.addWidget(self.speed)

        self._resume_after_drag = False
        self.slider.valueChanged.connect(self._on_slider)
        self.slider.sliderPressed.connect(self._drag_started)
        self.slider.sliderReleased.connect(self._drag_ended)
        self.speed.currentIndexChanged.connect(lambda _: playback.set_speed(self.speed.currentData()))
        playback.playing_changed.connect(self._show_playing)
        session.time_changed.connect(self._show_time)
        session.scene_changed.connect(self.sync)
        self.sync()

    def _act(self, text, slot, key, icon) -> QAction:
        a = QAction(icon, text, self)
        a.setShortcut(QKeySequence(key))
        a.setToolTip(f"{text.replace('&', '')} ({QKeySequence(key).toString()})")
        a.triggered.connect(slot)
        return a

    @staticmethod
    def _button(action) -> QToolButton:
        b = QToolButton()
        b.setDefaultAction(action)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.setAutoRaise(True)
        return b

    def sync(self):
        """Follow the open scene: enabled with its range when it has time, disabled otherwise."""
        on = self.playback.enabled
        self.setEnabled(on)
        for a in (self.play_action, self.back_action, self.forward_action):
            a.setEnabled(on)
        self.setToolTip("" if on else "This scene has no time (open a 4D scene or a flipbook)")
        self._show_playing(self.playback.playing)
        self._show_time(self.session.time)

    def _show_playing(self, playing: bool):
        self.play_action.setIcon(self._icons[playing])
        self.play_action.setText("&Pause" if playing else "&Play")

    def _show_time(self, t: float):
        tr = self.session.time_range()
        if tr is None:
            self.time_label.setText("no time")
            self.frame_label.setText("")
            self._set_slider(0)
            return
        t0, t1 = tr
        span = f"{_fmt(t)} / {_fmt(t1)}" if t0 == 0 else f"{_fmt(t)} in [{t0:.3f}, {t1:.3f}]"
        self.time_label.setText(span)
        pb = self.playback
        self.frame_label.setText(f"frame {pb.frame_index(t) + 1} / {pb.frame_count()}")
        self._set_slider(round((t - t0) / (t1 - t0) * SLIDER_STEPS))

    def _set_slider(self, v: int):
        if self.slider.isSliderDown():
            return  # the user holds it: do not fight the drag
        self.slider.blockSignals(True)
        self.slider.setValue(int(min(max(v, 0), SLIDER_STEPS)))
        self.slider.blockSignals(False)

    def slider_time(self, v: int) -> float | None:
        tr = self.session.time_range()
        return None if tr is None else tr[0] + (tr[1] - tr[0]) * v / SLIDER_STEPS

    def _on_slider(self, v: int):
        t = self.slider_time(v)
        if t is not None:
            self.playback.seek(t)

    def _drag_started(self):
        self._resume_after_drag = self.playback.playing
        self.playback.pause()

    def _drag_ended(self):
        if self._resume_after_drag:
            self.playback.play()
        self._resume_after_drag = False
