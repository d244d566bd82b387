"""The reader, without a viewer: a prediction folder and a tile file as napari layer data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from livedead.errors import LivedeadError
from livedead.inference.evaluation import read_counts
from livedead.napari.reader import get_reader, read_prediction_folder
from livedead.plates.images import read_image


@pytest.mark.slow  # the folder is a real predict run (seconds)
def test_a_prediction_folder_opens_as_its_image_class_map_instances_and_counts(predictions):
    layers = get_reader(str(predictions))(str(predictions))
    assert [(kw["name"], kind) for _, kw, kind in layers] == [
        ("W01 overlay", "image"), ("W01 classes", "labels"), ("W01 nuclei", "labels"),
        ("W01 counted nuclei", "points"), ("W01 counts", "points"),
    ]  # fmt: skip
    overlay, classes, nuclei, centroids, counts = (np.asarray(d) for d, _, _ in layers)
    assert overlay.shape == (3, 256, 320, 3)
    assert classes.shape == nuclei.shape == (3, 256, 320)
    written, _ = read_image(predictions / "W01_t002_nuclei.ome.tif")
    np.testing.assert_array_equal(classes[2], written[0])  # the lazy stack reads each time point's own file
    np.testing.assert_array_equal(nuclei[2], written[1])
    rows = read_counts(predictions)
    features = layers[4][1]["features"]
    assert features["live"] == [r["live"] for r in rows]
    assert features["dead"] == [r["dead"] for r in rows]
    for t, row in enumerate(rows):  # what the class map holds is what was counted
        assert len(np.unique(nuclei[t][classes[t] == 1])) == row["live"]
        assert len(np.unique(nuclei[t][classes[t] == 2])) == row["dead"]
    assert counts[:, 0].tolist() == [0, 1, 2]  # one point per time point
    # each counted nucleus a point at its centroid, inside its own instance, coloured by its state
    kept = layers[3][1]["features"]
    assert len(centroids) == sum(r["live"] + r["dead"] for r in rows)
    for (t, y, x), label, state in zip(centroids, kept["label"], kept["state"], strict=True):
        t = int(t)
        inside = nuclei[t] == label
        assert inside.any()
        ys, xs = np.nonzero(inside)
        assert (ys.mean(), xs.mean()) == pytest.approx((y, x), abs=1e-6)
        assert classes[t][ys[0], xs[0]] == (2 if state == "dead" else 1)
    dead = np.array(kept["state"]) == "dead"
    colours = layers[3][1]["face_color"]
    assert (colours[dead, 0] > colours[dead, 1]).all()
    assert (colours[~dead, 1] > colours[~dead, 0]).all()


def test_a_tile_file_opens_as_tiles_and_their_classes(tiles_path):
    (images, image_kw, _), (labels, _label_kw, kind) = get_reader(str(tiles_path))(str(tiles_path))
    assert kind == "labels"
    assert images.shape == labels.shape
    assert images.shape[1:] == (160, 160)
    assert image_kw["metadata"]["n_train"] + 0 < images.shape[0]  # validation tiles follow the training ones
    assert set(np.unique(np.asarray(labels[:50]))) <= {0, 1, 2}


def test_other_paths_are_left_to_other_readers_and_a_broken_folder_is_one_line(tmp_path):
    assert get_reader(str(tmp_path)) is None  # no counts.csv: not a prediction folder
    (tmp_path / "notes.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    (tmp_path / "counts.csv").write_text("well,time,live,dead\nW01,0,3,1\n")
    with pytest.raises(LivedeadError, match="W01_t000, found neither"):
        read_prediction_folder(tmp_path)
    with h5py.File(tmp_path / "other.h5", "w") as f:  # an HDF5 file that is not a tile file
        f["images"] = np.zeros((2, 1, 8, 8), np.uint8)
    with pytest.raises(
        LivedeadError, match=r"other.h5: expected a tile file with /images and /labels, found \['images'\]"
    ):
        get_reader(str(tmp_path / "other.h5"))(str(tmp_path / "other.h5"))
