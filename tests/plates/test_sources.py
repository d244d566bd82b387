"""Plate sources, :mod:`livedead.plates.sources`: one interface over an HDF5 plate file and a folder of TIFFs."""

import h5py
import numpy as np
import pytest
import tifffile

from livedead.errors import LivedeadError
from livedead.plates.sources import open_plate


def test_an_hdf5_plate_and_its_images_as_tiffs_are_the_same_plate(plate_path, tmp_path):
    plate, _ = open_plate(plate_path)
    assert plate.wells == ["W01", "W02", "W03"]
    assert (plate.timepoints, plate.shape, plate.n_images) == (3, (256, 320), 9)
    assert plate.has_truth
    assert plate.time_interval_h == 0.25
    folder = tmp_path / "tiffs"
    folder.mkdir()
    with h5py.File(plate_path) as f:
        raw = f["images"][:]
    for w, t in [(0, 0), (0, 2), (2, 1)]:  # a folder may lack images
        tifffile.imwrite(folder / f"A{w + 1}_t{t:03d}.tif", raw[w, t], photometric="minisblack")
    tiffs, found = open_plate(folder)
    assert tiffs.wells == ["A1", "A3"]
    assert tiffs.index == [(0, 0), (0, 2), (1, 1)]  # only the images there are
    assert not tiffs.has_truth
    for image in found:
        w, t = [0, 2][image.well], image.time
        np.testing.assert_array_equal(image.channels["draq7"], raw[w, t, 2])
        np.testing.assert_array_equal(image.channels["brightfield"], plate.reader((w, t)).channels["brightfield"])


def test_the_truth_comes_from_a_plate_file_and_never_from_a_folder(plate_path, tmp_path):
    plate, images = open_plate(plate_path)
    truth = plate.truth()
    with h5py.File(plate_path) as f:
        np.testing.assert_array_equal(truth.counts[..., 1], f["truth/dead_count"][:])
    first = next(images)
    assert first.truth.shape == (256, 320)
    assert truth.instances(0, 0).max() > 0
    folder = tmp_path / "tiffs"
    folder.mkdir()
    tifffile.imwrite(folder / "A1_t000.tif", np.zeros((3, 32, 32), np.uint16), photometric="minisblack")
    none = open_plate(folder)[0].truth()
    assert none.counts is None
    assert none.instances(0, 0) is None


def test_an_unreadable_image_is_reported_and_the_plate_goes_on(tmp_path):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    tifffile.imwrite(folder / "A1_t000.tif", np.zeros((3, 32, 32), np.uint16), photometric="minisblack")
    (folder / "A1_t001.tif").write_bytes(b"not a tiff")
    _, images = open_plate(folder)
    first, second = list(images)
    assert first.error is None
    assert "A1_t001.tif" in second.error
    with pytest.raises(LivedeadError, match="nothing.h5: file not found"):
        open_plate(tmp_path / "nothing.h5")
    with pytest.raises(LivedeadError, match="needs config key 'channels'"):
        open_plate(folder, channels=None)
