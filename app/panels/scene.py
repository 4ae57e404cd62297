"""Scene dock: what the open file holds, and the render settings (backend, mode, SH, AA, ...)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..messages import SceneLoaded
from ..session import BACKENDS, MODES, Session, describe_scene

MODE_LABELS = {"rgb": "Colour", "depth": "Depth", "alpha": "Alpha", "ellipsoids": "Ellipsoids",
               "normals": "Normals", "points": "Points"}
INFO_ROWS = ("File", "Format", "Kind", "Model", "Primitives", "Time range", "Frames", "SH degree",
             "Points per convex", "Grid", "Colour", "Bounds min", "Bounds max", "Memory", "Load time",
             "Up")  # the keys of session.describe_scene
# Rows every scene has; the others are hidden when the open scene lacks that fact.
ALWAYS_ROWS = ("File", "Format", "Kind", "Primitives", "Bounds min", "Bounds max", "Memory", "Load time",
               "Up")
AA_LABELS = {"classic": "Classic (0.3 px dilation)", "mip": "Mip filter (opacity compensated)"}


class ScenePanel(QWidget):
    """Scene facts on top, render settings below; widgets follow the session and edit it."""

    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        outer = QVBoxLayout(self)

        info_box = QGroupBox("Scene")
        self.info_form = QFormLayout(info_box)
        self.info_labels: dict[str, QLabel] = {}
        outer.addWidget(info_box)

        box = QGroupBox("Render")
        form = QFormLayout(box)
        self.backend = QComboBox()
        for b in BACKENDS:
            self.backend.addItem(b, b)
        self.mode = QComboBox()
        for m in MODES:
            self.mode.addItem(MODE_LABELS[m], m)
        self.sh_degree = QSpinBox()
        self.sh_degree.setRange(0, 3)
        self.sh_degree.setToolTip("Cap on the spherical-harmonics degree used for colour")
        self.antialias = QComboBox()
        for k, v in AA_LABELS.items():
            self.antialias.addItem(v, k)
        self.background = QPushButton()
        self.splat_scale = QDoubleSpinBox()
        self.splat_scale.setRange(0.01, 4.0)
        self.splat_scale.setSingleStep(0.05)
        self.splat_scale.setDecimals(2)
        self.fov = QSlider(Qt.Orientation.Horizontal)
        self.fov.setRange(10, 120)
        self.fov_label = QLabel()
        form.addRow("Backend", self.backend)
        form.addRow("Mode", self.mode)
        form.addRow("SH degree cap", self.sh_degree)
        form.addRow("Anti-aliasing", self.antialias)
        form.addRow("Background", self.background)
        form.addRow("Splat scale", self.splat_scale)
        form.addRow(self.fov_label, self.fov)
        outer.addWidget(box)
        outer.addStretch(1)

        self.backend.currentIndexChanged.connect(lambda _: session.set_backend(self.backend.currentData()))
        self.mode.currentIndexChanged.connect(lambda _: session.set_settings(mode=self.mode.currentData()))
        self.sh_degree.valueChanged.connect(lambda v: session.set_settings(sh_degree=int(v)))
        self.antialias.currentIndexChanged.connect(
            lambda _: session.set_settings(antialias=self.antialias.currentData()))
        self.splat_scale.valueChanged.connect(lambda v: session.set_settings(splat_scale=float(v)))
        self.fov.valueChanged.connect(lambda v: session.set_fov(float(v)))
        self.background.clicked.connect(self.pick_background)

        session.settings_changed.connect(self.sync)
        session.scene_changed.connect(self.sync_info)
        session.message.connect(self._on_message)
        self.sync()
        self.sync_info()

    def _on_message(self, msg):
        if isinstance(msg, SceneLoaded):
            self.sync_info()

    def sync_info(self):
        """Show the facts about the open scene (rows are made once and only relabelled: deleting
        widgets that Qt has a queued show pending for crashes)."""
        facts = describe_scene(self.session) or {"File": "(none)"}
        for k in INFO_ROWS:
            if k not in self.info_labels:
                lab = QLabel()
                lab.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
                self.info_labels[k] = lab
                self.info_form.addRow(k, lab)
            self.info_labels[k].setText(facts.get(k, "–"))
            self.info_form.setRowVisible(self.info_labels[k], k in ALWAYS_ROWS or k in facts)
        self.sync()

    def sync(self):
        """Make the widgets show the session's settings (without feeding changes back)."""
        s = self.session.settings
        widgets = (self.backend, self.mode, self.sh_degree, self.antialias, self.splat_scale, self.fov)
        for w in widgets:
            w.blockSignals(True)
        try:
            self.backend.setCurrentIndex(max(0, self.backend.findData(self.session.backend)))
            self.mode.setCurrentIndex(max(0, self.mode.findData(s.mode)))
            try:  # not every scene kind has SH colour (a flipbook reads its first frame for it)
                scene_deg = min(max(int(getattr(self.session.scene, "sh_degree", 3)), 0), 3)
            except Exception:  # noqa: BLE001
                scene_deg = 3
            self.sh_degree.setValue(scene_deg if s.sh_degree is None else min(s.sh_degree, 3))
            self.antialias.setCurrentIndex(max(0, self.antialias.findData(s.antialias)))
            self.splat_scale.setValue(s.splat_scale)
            self.fov.setValue(round(self.session.fov_y_deg))
        finally:
            for w in widgets:
                w.blockSignals(False)
        self.fov_label.setText(f"Field of view {self.session.fov_y_deg:.0f}°")
        c = QColor.fromRgbF(*[min(max(v, 0.0), 1.0) for v in s.background])
        self.background.setText(c.name())
        ink = "#000" if c.lightness() > 128 else "#fff"
        self.background.setStyleSheet(f"background: {c.name()}; color: {ink}")

    def pick_background(self):
        c = QColor.fromRgbF(*self.session.settings.background)
        picked = QColorDialog.getColor(c, self, "Background colour")
        if picked.isValid():
            self.session.set_settings(background=(picked.redF(), picked.greenF(), picked.blueF()))
