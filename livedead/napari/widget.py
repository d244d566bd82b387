"""The widget: predict live and dead nuclei in the image layer shown, correct them, count again.

Choose a checkpoint (``.ckpt``) or an exported bioimage.io package, pick an image layer (one
transmitted-light channel) and press *Predict*: the plane on screen is predicted in a worker thread
(napari's ``thread_worker``) with a progress bar and a *Cancel* button, as ``livedead.predict``
predicts it. Two labels layers come back, ``<image> live`` (green outlines) and ``<image> dead``
(red), and a row of counts in the table. Correct them with napari's label tools (erase a false
nucleus, paint a missed one with a new label, move one from live to dead) and press *Re-count*:
each distinct label is one nucleus. Predicting another plane of a stack adds its row.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from livedead.errors import LivedeadError, one_line
from livedead.napari import prediction
from livedead.viz.overlays import GREEN, RED

if TYPE_CHECKING:
    import napari

COLUMNS = ("image", "plane", "live", "dead", "total", "dead fraction")
PIXEL_KEY = "um_per_px"
"""An image layer's metadata key for its pixel size (µm), where known: the model's rescaling uses it."""


def _colours(rgb: np.ndarray) -> dict[Any, tuple[float, ...]]:
    return {None: (*rgb.tolist(), 1.0), 0: (0.0, 0.0, 0.0, 0.0)}


class PredictWidget(QWidget):
    """The dock widget (npe2 widget command); ``done`` is emitted with a status line when a prediction ends."""

    progressed = Signal(int, int)
    done = Signal(str)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.model_path = QLineEdit(placeholderText="checkpoint (.ckpt) or bioimage.io package (rdf.yaml)")
        browse_ckpt, browse_pkg = QPushButton("Checkpoint…"), QPushButton("Package…")
        self.layer_box = QComboBox()
        self.predict_button, self.cancel_button = QPushButton("Predict"), QPushButton("Cancel")
        self.recount_button = QPushButton("Re-count")
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.setMinimumWidth(460)
        self.cancel_button.setEnabled(False)
        grid = QGridLayout(self)
        grid.addWidget(QLabel("model"), 0, 0)
        grid.addWidget(self.model_path, 0, 1)
        picks = QHBoxLayout()
        picks.addWidget(browse_ckpt)
        picks.addWidget(browse_pkg)
        grid.addLayout(picks, 1, 1)
        grid.addWidget(QLabel("image"), 2, 0)
        grid.addWidget(self.layer_box, 2, 1)
        buttons = QHBoxLayout()
        for b in (self.predict_button, self.cancel_button, self.recount_button):
            buttons.addWidget(b)
        grid.addLayout(buttons, 3, 0, 1, 2)
        grid.addWidget(self.progress, 4, 0, 1, 2)
        grid.addWidget(self.status, 5, 0, 1, 2)
        grid.addWidget(self.table, 6, 0, 1, 2)
        browse_ckpt.clicked.connect(self._browse_checkpoint)
        browse_pkg.clicked.connect(self._browse_package)
        self.predict_button.clicked.connect(self.predict)
        self.cancel_button.clicked.connect(self.cancel)
        self.recount_button.clicked.connect(self.recount)
        self.progressed.connect(self._on_progress)
        self._model: tuple[str, float, Any] | None = None
        self._stop = threading.Event()
        self.worker: Any = None
        self._rows: dict[tuple[str, tuple[int, ...]], int] = {}
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layers)
        self._refresh_layers()

    # -- choosing --------------------------------------------------------------------------------
    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.ckpt)")
        if path:
            self.model_path.setText(path)

    def _browse_package(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "bioimage.io package (exported by livedead.export)")
        if path:
            self.model_path.setText(path)

    def _refresh_layers(self, *_: Any) -> None:
        current = self.layer_box.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and not layer.rgb]
        self.layer_box.clear()
        self.layer_box.addItems(names)
        if current in names:
            self.layer_box.setCurrentText(current)

    def _plane(self, layer: Image) -> tuple[tuple[int, ...], np.ndarray]:
        """The index of the plane on screen in ``layer``'s leading axes, and its pixels."""
        data = layer.data[0] if layer.multiscale else layer.data
        coords = layer.world_to_data(self.viewer.dims.point[-layer.ndim :])
        index = tuple(int(np.clip(round(c), 0, n - 1)) for c, n in zip(coords[:-2], data.shape[:-2], strict=True))
        return index, np.asarray(data[index])

    # -- predicting ------------------------------------------------------------------------------
    def predict(self) -> None:
        """Predict the plane on screen of the chosen image layer, in a worker thread."""
        name = self.layer_box.currentText()
        source = self.model_path.text().strip()
        if not name or name not in self.viewer.layers:
            return self._finish("choose an image layer (one transmitted-light channel) first")
        if not source:
            return self._finish("choose a checkpoint or a bioimage.io package first")
        layer = self.viewer.layers[name]
        index, plane = self._plane(layer)
        shape = (layer.data[0] if layer.multiscale else layer.data).shape
        self._stop.clear()
        self.predict_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self.status.setText(f"predicting {name} {list(index) if index else ''}…")
        self.worker = self._work(source, plane, layer.metadata.get(PIXEL_KEY))
        self.worker.returned.connect(lambda found: self._show(found, name, index, shape))
        self.worker.errored.connect(lambda err: self._finish(f"failed: {self._why(err)}"))
        self.worker.start()

    @thread_worker(ignore_errors=True)
    def _work(self, source: str, plane: np.ndarray, pixel_size_um: float | None) -> Any:
        """In the worker thread: load the model (kept for the next image) and predict; None if cancelled."""
        model, device = self._load(source)

        def on_batch(done: int, total: int) -> None:
            if self._stop.is_set():
                raise prediction.Cancelled
            self.progressed.emit(done, total)

        try:
            return prediction.predict_plane(model, device, plane, pixel_size_um, on_batch)
        except prediction.Cancelled:
            return None

    def _load(self, source: str) -> tuple[Any, str]:
        path = Path(source)
        stamp = path.stat().st_mtime if path.exists() else 0.0
        if self._model is None or self._model[:2] != (source, stamp):
            self._model = (source, stamp, prediction.load(source))
        return self._model[2]

    @staticmethod
    def _why(err: BaseException) -> str:
        return one_line(err) if isinstance(err, LivedeadError) else f"{type(err).__name__}: {err}"

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(total)
        self.progress.setValue(done)

    def cancel(self) -> None:
        """Stop the prediction after the batch of windows under way."""
        self._stop.set()

    def _show(self, found: Any, name: str, index: tuple[int, ...], shape: tuple[int, ...]) -> None:
        if found is None:
            return self._finish("cancelled")
        live, dead = prediction.split_live_dead(found)
        for label, plane, colour in ((f"{name} live", live, GREEN), (f"{name} dead", dead, RED)):
            target = next((layer for layer in self.viewer.layers if layer.name == label), None)
            if not isinstance(target, Labels) or target.data.shape != shape:
                if target is not None:
                    self.viewer.layers.remove(target)
                scale = self.viewer.layers[name].scale
                target = self.viewer.add_labels(
                    np.zeros(shape, np.int32), name=label, scale=scale, colormap=_colours(colour)
                )
                target.contour = 1
                target.events.paint.connect(lambda *_: self.recount())
            target.data[index] = plane
            target.refresh()
        self._set_row(name, index)
        self._finish(f"{name}: {found.counts()['live']} live, {found.counts()['dead']} dead")

    def _finish(self, message: str) -> None:
        self.predict_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(message)
        self.done.emit(message)

    # -- counting --------------------------------------------------------------------------------
    def _set_row(self, name: str, index: tuple[int, ...]) -> None:
        live, dead = (self.viewer.layers[f"{name} {k}"].data[index] for k in ("live", "dead"))
        counts = prediction.count_labels(np.asarray(live), np.asarray(dead))
        key = (name, index)
        if key not in self._rows:
            self._rows[key] = self.table.rowCount()
            self.table.insertRow(self.table.rowCount())
        row = self._rows[key]
        values = (name, ",".join(map(str, index)) or "-", counts.live, counts.dead, counts.total,
                  f"{counts.dead_fraction:.3f}")  # fmt: skip
        for col, value in enumerate(values):
            self.table.setItem(row, col, QTableWidgetItem(str(value)))

    def recount(self) -> None:
        """Count every predicted plane again from its live and dead layers, as the user left them."""
        for name, index in list(self._rows):
            if f"{name} live" in self.viewer.layers and f"{name} dead" in self.viewer.layers:
                self._set_row(name, index)

    def counts(self) -> list[dict[str, str]]:
        """The table as rows of text, column by column (what the user sees)."""
        return [{c: self.table.item(r, i).text() for i, c in enumerate(COLUMNS)} for r in range(self.table.rowCount())]
