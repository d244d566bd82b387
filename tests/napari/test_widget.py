"""The plugin in napari, headless: the reader, the widget and the sample through the plugin's manifest.

One viewer does it all, since a viewer costs seconds. It is napari's viewer model with the widget's
real Qt widget (pytest-qt, offscreen): a full ``napari.Viewer`` draws with OpenGL, which an
offscreen Qt does not have, so the test that docks the widget in one (napari's ``make_napari_viewer``)
runs where OpenGL is, and is skipped elsewhere.

napari, npe2 and Qt are imported in the tests, not at the top: the quick loop (``-m "not slow"``)
collects this file without paying for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from livedead.inference.evaluation import read_counts
from livedead.napari import prediction
from livedead.napari.sample import SPEC
from livedead.plates.sources import open_plate


@pytest.fixture(scope="module")
def manifest() -> Any:
    """livedead's manifest, as napari finds it: through the package's ``napari.manifest`` entry point."""
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()
    return manager.get_manifest("livedead")


@pytest.mark.slow
def test_the_plugin_opens_predicts_counts_and_recounts_as_predict_does(
    qtbot, manifest, predictions, plate_path, tiny_ckpt
):
    from napari.components import ViewerModel

    from livedead.napari.widget import PredictWidget

    viewer = ViewerModel()
    viewer.open(str(predictions), plugin="livedead")  # the reader
    assert [(layer.name, type(layer).__name__) for layer in viewer.layers] == [
        ("W01 overlay", "Image"), ("W01 classes", "Labels"), ("W01 nuclei", "Labels"),
        ("W01 counted nuclei", "Points"), ("W01 counts", "Points"),
    ]  # fmt: skip
    rows = read_counts(predictions)
    assert viewer.layers["W01 counts"].features["live"].tolist() == [r["live"] for r in rows]
    states = viewer.layers["W01 counted nuclei"].features["state"]
    assert (states == "dead").sum() == sum(r["dead"] for r in rows)
    # the widget, on the image predict read first (W01, time point 0)
    widget = manifest.contributions.widgets[0].get_callable()(viewer)
    assert isinstance(widget, PredictWidget)
    qtbot.addWidget(widget)
    _, images = open_plate(plate_path)
    viewer.add_image(next(images).channels["brightfield"], name="W01 t0")
    widget.layer_box.setCurrentText("W01 t0")
    widget.model_path.setText(str(tiny_ckpt))
    with qtbot.waitSignal(widget.done, timeout=120_000) as finished:
        widget.predict()
        widget.cancel()  # before the first batch of windows is through
    assert finished.args == ["cancelled"]
    assert "W01 t0 live" not in viewer.layers
    with qtbot.waitSignal(widget.done, timeout=120_000):
        widget.predict()
    shown = widget.counts()
    assert [(int(r["live"]), int(r["dead"])) for r in shown] == [(rows[0]["live"], rows[0]["dead"])]
    assert widget.progress.value() == widget.progress.maximum() > 0
    live, dead = viewer.layers["W01 t0 live"], viewer.layers["W01 t0 dead"]
    classes = np.asarray(viewer.layers["W01 classes"].data[0])
    np.testing.assert_array_equal(live.data > 0, classes == 1)  # the pixels predict counted as live
    np.testing.assert_array_equal(dead.data > 0, classes == 2)
    # a correction: erase one live nucleus and make another dead, then count again
    first, second = np.unique(live.data[live.data > 0])[:2]
    dead.data[live.data == second] = second
    live.data[np.isin(live.data, (first, second))] = 0
    widget.recount()
    row = widget.counts()[0]
    assert (int(row["live"]), int(row["dead"])) == (rows[0]["live"] - 2, rows[0]["dead"] + 1)
    widget.model_path.setText(str(predictions / "missing.ckpt"))  # a bad model is one line in the widget
    with qtbot.waitSignal(widget.done, timeout=60_000) as failed:
        widget.predict()
    assert failed.args[0].startswith("failed: ")
    assert "missing.ckpt" in failed.args[0]
    assert "\n" not in failed.args[0]
    assert len(widget.counts()) == 1
    viewer.open_sample("livedead", "synthetic_plate")  # the sample, a (well, time, y, x) stack
    stack = viewer.layers["synthetic brightfield"]
    assert stack.data.shape == (SPEC.wells, SPEC.timepoints, SPEC.height, SPEC.width)
    widget.model_path.setText(str(tiny_ckpt))
    widget.layer_box.setCurrentText("synthetic brightfield")
    for well, t in ((1, 2), (0, 0)):  # the plane on screen is predicted; each plane has its row
        viewer.dims.current_step = (well, t, 0, 0)
        with qtbot.waitSignal(widget.done, timeout=120_000):
            widget.predict()
    live = viewer.layers["synthetic brightfield live"]
    assert live.data.shape == stack.data.shape
    assert not live.data[0, 1:].any()
    assert not live.data[1, :2].any()
    model, device = prediction.load(str(tiny_ckpt), "cpu")
    expected = prediction.predict_plane(model, device, stack.data[1, 2]).counts()
    assert widget.counts()[-2:][0]["plane"] == "1,2"
    assert int(widget.counts()[-2]["live"]) == expected["live"]
    assert int(widget.counts()[-2]["dead"]) == expected["dead"]
    assert widget.counts()[-1]["plane"] == "0,0"


@pytest.mark.slow
def test_the_widget_docks_in_a_napari_window_and_the_layers_draw(qapp, make_napari_viewer, predictions):
    """A full viewer, as a user has it. It draws with OpenGL, which offscreen Qt lacks: it runs under a display,
    or the virtual one pytest-xvfb starts where Xvfb is installed (with Mesa's software OpenGL), else it is skipped."""
    from qtpy.QtGui import QOpenGLContext

    from livedead.napari.widget import PredictWidget

    if qapp.platformName() == "offscreen" or not QOpenGLContext().create():  # before a viewer is made
        pytest.skip("no OpenGL under offscreen Qt: napari's canvas cannot draw (run under a display or Xvfb)")
    viewer = make_napari_viewer(show=True)  # a canvas draws only when shown
    viewer.open(str(predictions), plugin="livedead")
    _, widget = viewer.window.add_plugin_dock_widget("livedead", "Predict and count")
    assert isinstance(widget, PredictWidget)
    assert widget.layer_box.count() == 0  # the overlay is RGB: not an image the model can read
    viewer.layers["W01 overlay"].visible = False
    viewer.dims.set_current_step(0, 0)  # time point 0, where the tiny model finds nuclei
    viewer.reset_view()
    canvas = viewer.screenshot(canvas_only=True, flash=False)
    red, green = canvas[..., 0].astype(int), canvas[..., 1].astype(int)
    green = green > 2 * red + 40  # the class map's live nuclei, drawn (green at the layer's opacity, on black)
    assert green.any() == bool((np.asarray(viewer.layers["W01 classes"].data[0]) == 1).any())
