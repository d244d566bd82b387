"""The README's screenshot of the napari widget, predicting a synthetic well: rerun it to remake the PNG.

    python docs/napari_screenshot.py <checkpoint> docs/napari_widget.png
    QT_QPA_PLATFORM=xcb xvfb-run -a python docs/napari_screenshot.py ...   # no display: apt-get install xvfb

The checkpoint is a training run's (``python train.py``: ``outputs/runs/<run>/checkpoints/last.ckpt``).
The well is the most toxic of a synthetic plate like the training one (``livedead.plates.synthetic``),
at its last time point, so that dead nuclei show; the widget predicts it as a user would, in its
worker thread, and the script prints the counts next to the plate's truth.
"""

from __future__ import annotations

import sys

import napari
import numpy as np
from qtpy.QtCore import QEventLoop, QTimer

from livedead.napari.widget import PredictWidget
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well

SPEC = PlateSpec(wells=8, timepoints=4, height=480, width=640, seed=5)
WELL = SPEC.wells - 1  # the most toxic well


def main(ckpt: str, out: str) -> None:
    *_, cells = simulate_well(SPEC, WELL)
    image, _, _ = render_image(SPEC, cells, WELL, SPEC.timepoints - 1)
    viewer = napari.Viewer(title="livedead", show=True)
    viewer.window.resize(1500, 820)
    name = f"synthetic W{WELL + 1:02d} t{SPEC.timepoints - 1}"
    viewer.add_image(image[0], name=name)
    _, widget = viewer.window.add_plugin_dock_widget("livedead", "Predict and count")
    assert isinstance(widget, PredictWidget)
    widget.model_path.setText(ckpt)
    widget.layer_box.setCurrentText(name)
    loop = QEventLoop()
    widget.done.connect(lambda message: (print(message), loop.quit()))
    QTimer.singleShot(0, widget.predict)
    loop.exec()
    if not widget.counts():
        sys.exit(f"napari_screenshot: the widget counted nothing ({widget.status.text()})")
    print(f"truth: {int(cells.alive.sum())} live, {int((~cells.alive).sum())} dead")
    viewer.reset_view()
    shot = viewer.screenshot(out, canvas_only=False, flash=False)
    print(f"wrote {out} ({shot.shape[1]}x{shot.shape[0]} px, {np.count_nonzero(shot[..., :3].std(-1))} coloured px)")
    viewer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
