"""The main window: viewport in the centre, Scene and Statistics docks, menus, drag and drop.

Every way of opening a file (command line, File > Open, Open Recent, drops) ends in
Session.open_path; this window only shows what comes back (messages) and never loads itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QUrl
from PySide6.QtGui import QAction, QGuiApplication, QImage, QKeySequence
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
)

from .messages import LoadCancelled, LoadFailed, LoadStarted, SceneLoaded, StatusMessage
from .panels.scene import ScenePanel
from .panels.stats import StatsPanel
from .panels.timeline import Playback, TimelinePanel
from .session import Session
from .viewport import KEY_BINDINGS, Viewport

MAX_RECENT = 10
APP_NAME = "Radview"


def app_settings() -> QSettings:
    """Where the window keeps its layout and recent files (an INI file; tests redirect it with
    QSettings.setPath(IniFormat, UserScope, tmpdir))."""
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "Radview", "radview")


def local_paths(urls: list[QUrl]) -> list[str]:
    return [u.toLocalFile() for u in urls if u.isLocalFile() and u.toLocalFile()]


def save_png(frame, path: str | Path) -> None:
    """Write a Frame's rgb as an 8-bit PNG."""
    img = frame.to_uint8()  # [H, W, 3]
    h, w = img.shape[:2]
    q = QImage(img.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888)
    if not q.save(str(path), "PNG"):
        raise OSError(f"could not write {path}")


class MainWindow(QMainWindow):
    def __init__(self, session: Session | None = None, backend: str = "gl"):
        super().__init__()
        self.session = session or Session(self, backend=backend)
        self.setAcceptDrops(True)
        self.setWindowTitle(APP_NAME)
        self.error_box: QMessageBox | None = None
        self.last_error: str | None = None

        self.viewport = Viewport(self.session, self)
        self.setCentralWidget(self.viewport)

        self.scene_panel = ScenePanel(self.session)
        scroll = QScrollArea()
        scroll.setWidget(self.scene_panel)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Wide enough for the form without a horizontal scroll bar.
        bar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(self.scene_panel.sizeHint().width() + bar)
        self.scene_dock = self._dock("Scene", "scene_dock", scroll, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.stats_panel = StatsPanel(self.session)
        self.stats_dock = self._dock("Statistics", "stats_dock", self.stats_panel,
                                     Qt.DockWidgetArea.RightDockWidgetArea)
        self.stats_dock.visibilityChanged.connect(self.viewport.set_count_blends)
        self.playback = Playback(self.session, self)
        self.timeline_panel = TimelinePanel(self.session, self.playback)
        self.timeline_dock = self._dock("Timeline", "timeline_dock", self.timeline_panel,
                                        Qt.DockWidgetArea.BottomDockWidgetArea)

        self.busy = QProgressBar()
        self.busy.setRange(0, 0)  # indeterminate: readers do not report progress
        self.busy.setMaximumWidth(120)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.session.cancel_load)
        self.fps_label = QLabel()
        self.stats_panel.summary.connect(self.fps_label.setText)
        sb = self.statusBar()
        sb.addPermanentWidget(self.fps_label)
        sb.addPermanentWidget(self.busy)
        sb.addPermanentWidget(self.cancel_button)
        self._set_busy(False)

        self._build_menus()
        self.session.message.connect(self.on_message)
        self.session.loading_changed.connect(self._set_busy)
        self.session.scene_changed.connect(self._update_title)
        self._restore_layout()

    def _dock(self, title: str, name: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)  # saveState/restoreState key
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    # --- menus ----------------------------------------------------------------------------------

    def _action(self, menu, text: str, slot, shortcut=None, checkable=False) -> QAction:
        a = QAction(text, self)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.setCheckable(checkable)
        a.triggered.connect(slot)
        menu.addAction(a)
        return a

    def _build_menus(self):
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = f.addMenu("Open &Recent")
        self._action(f, "&Cancel Loading", self.session.cancel_load, "Esc")
        f.addSeparator()
        self._action(f, "Save &Screenshot…", self.screenshot_dialog, "Ctrl+Shift+S")
        self._action(f, "Copy &Camera as JSON", self.copy_camera, "Ctrl+Shift+C")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self._rebuild_recent()

        v = mb.addMenu("&View")
        v.addAction(self.scene_dock.toggleViewAction())
        v.addAction(self.stats_dock.toggleViewAction())
        v.addAction(self.timeline_dock.toggleViewAction())
        v.addSeparator()
        # F and R are handled by the viewport's keyPressEvent; the menu shows them after a tab.
        self._action(v, "&Frame Scene\tF", lambda: self.session.frame_scene())
        self._action(v, "&Reset Camera\tR", lambda: self.session.reset_camera())
        self._action(v, "Flip &Up Direction", lambda: self.session.flip_up())
        self.adaptive_action = self._action(v, "&Lower Resolution While Moving", self._toggle_adaptive,
                                            checkable=True)
        self.adaptive_action.setChecked(True)
        v.addSeparator()
        self._action(v, "Reset &Layout", self.reset_layout)

        # Space, ',' and '.' work anywhere in the window (they are the timeline's actions).
        p = mb.addMenu("&Playback")
        p.addActions(self.timeline_panel.actions_list)

        h = mb.addMenu("&Help")
        self._action(h, "&Key Bindings", self.show_key_bindings, QKeySequence.StandardKey.HelpContents)
        self._action(h, "&About Radview", self.show_about)


    def _toggle_adaptive(self, on: bool):
        self.viewport.adaptive = bool(on)
        self.viewport.update()

    def key_bindings_text(self) -> str:
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{v}</td></tr>" for k, v in KEY_BINDINGS)
        return f"<table>{rows}</table>"

    def show_key_bindings(self):
        QMessageBox.information(self, "Key bindings", self.key_bindings_text())

    def show_about(self):
        QMessageBox.about(self, "About Radview", "Radview: a viewer for radiance fields "
                          "(Gaussian splats and friends), rendered with OpenGL compute or PyTorch.")

    # --- opening --------------------------------------------------------------------------------

    def open_dialog(self):
        from scenes.load import formats  # (`scenes.formats` is also the formats package)

        exts = sorted({e for f in formats() for e in f.extensions if e})
        filt = f"Scenes ({' '.join('*' + e for e in exts)});;All files (*)"
        path, _ = QFileDialog.getOpenFileName(self, "Open scene", self._last_dir(), filt)
        if path:
            self.session.open_path(path)

    def _last_dir(self) -> str:
        recent = self.recent_files()
        return str(Path(recent[0]).parent) if recent else ""

    def recent_files(self) -> list[str]:
        v = app_settings().value("recent_files", [])
        if isinstance(v, str):
            v = [v]
        return [str(p) for p in (v or [])]

    def add_recent(self, path: str):
        path = str(Path(path).resolve())
        files = [path] + [p for p in self.recent_files() if p != path]
        app_settings().setValue("recent_files", files[:MAX_RECENT])
        self._rebuild_recent()

    def _rebuild_recent(self):
        self.recent_menu.clear()
        files = self.recent_files()
        for p in files:
            a = self.recent_menu.addAction(Path(p).name)
            a.setToolTip(p)
            a.setStatusTip(p)
            a.triggered.connect(lambda _=False, p=p: self.session.open_path(p))
        if files:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear List", self._clear_recent)
        self.recent_menu.setEnabled(bool(files))

    def _clear_recent(self):
        app_settings().setValue("recent_files", [])
        self._rebuild_recent()

    def dragEnterEvent(self, e):
        if local_paths(e.mimeData().urls()):
            e.acceptProposedAction()
        else:
            e.ignore()

    def dragMoveEvent(self, e):
        self.dragEnterEvent(e)

    def dropEvent(self, e):
        paths = local_paths(e.mimeData().urls())
        if not paths:
            e.ignore()
            return
        e.acceptProposedAction()
        self.session.open_paths(paths)

    # --- messages from work ---------------------------------------------------------------------

    def on_message(self, msg):
        sb = self.statusBar()
        if isinstance(msg, LoadStarted):
            sb.showMessage(f"Loading {Path(msg.path).name}…")
        elif isinstance(msg, SceneLoaded):
            n = len(msg.scene) if hasattr(msg.scene, "__len__") else 0
            sb.showMessage(f"Opened {Path(msg.path).name}: {n:,} primitives in {msg.seconds:.2f} s", 10000)
            if msg.job:  # job 0: a scene set from code, not a file
                self.add_recent(msg.path)
        elif isinstance(msg, LoadFailed):
            self.show_error(f"Could not open {Path(msg.path).name}", msg.reason)
            sb.showMessage(f"Could not open {Path(msg.path).name}: {msg.reason}", 15000)
        elif isinstance(msg, LoadCancelled):
            sb.showMessage(f"Cancelled loading {Path(msg.path).name}", 5000)
        elif isinstance(msg, StatusMessage):
            sb.showMessage(("⚠ " if msg.warning else "") + msg.text, msg.timeout_ms)

    def show_error(self, title: str, text: str):
        """A window-modal message box that does not block the caller (no nested event loop)."""
        self.last_error = text
        if self.error_box is not None:
            self.error_box.close()
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda _: setattr(self, "error_box", None))
        self.error_box = box
        box.open()

    def _set_busy(self, on: bool):
        self.busy.setVisible(on)
        self.cancel_button.setVisible(on)

    def _update_title(self):
        p = self.session.path
        self.setWindowTitle(f"{Path(p).name} — {APP_NAME}" if p else APP_NAME)
        if p:
            self.setWindowFilePath(p)

    # --- stills and cameras ---------------------------------------------------------------------

    def save_screenshot(self, path: str | Path, width: int | None = None, height: int | None = None):
        """Render the current view at full resolution with the current backend and write a PNG."""
        frame = self.viewport.render_still(width, height)
        save_png(frame, path)
        return frame

    def screenshot_dialog(self):
        if self.session.scene is None:
            self.statusBar().showMessage("Nothing to save: no scene is open", 5000)
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", "screenshot.png", "PNG images (*.png)")
        if not path:
            return
        try:
            self.save_screenshot(path)
        except Exception as e:  # noqa: BLE001 - report, do not crash
            self.show_error("Could not save the screenshot", f"{type(e).__name__}: {e}")
            return
        self.statusBar().showMessage(f"Saved {path}", 5000)

    def camera_json_text(self) -> str:
        w, h = self.viewport.physical_size()
        return json.dumps(self.session.camera_json(w, h), indent=2)

    def copy_camera(self):
        QGuiApplication.clipboard().setText(self.camera_json_text())
        self.statusBar().showMessage("Camera copied to the clipboard as JSON", 4000)

    # --- layout ---------------------------------------------------------------------------------

    def _restore_layout(self):
        self._default_state = self.saveState()
        s = app_settings()
        geo, state = s.value("window/geometry"), s.value("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1200, 800)
        if state is not None:
            self.restoreState(state)
        # (a dock hidden before the window is first shown emits no visibilityChanged)
        self.viewport.set_count_blends(not self.stats_dock.isHidden())

    def save_layout(self):
        s = app_settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.sync()

    def reset_layout(self):
        self.restoreState(self._default_state)
        self.scene_dock.show()
        self.stats_dock.show()
        self.timeline_dock.show()

    def closeEvent(self, e):
        self.save_layout()
        self.playback.pause()
        self.viewport.shutdown()
        self.session.shutdown()
        super().closeEvent(e)
