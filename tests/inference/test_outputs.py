"""What predict writes of one image, band by band: the files an image given in one band gives, and none on failure."""

import h5py
import numpy as np
import pytest
from PIL import Image

from livedead.inference.outputs import ImageOutputs
from livedead.plates.images import read_image
from livedead.viz.overlays import nuclei_overlay

SHAPE = (230, 170)


def image_and_maps():
    """A raw image, class probabilities, and counted instances with their class map."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 4000, SHAPE).astype(np.uint16)
    probs = rng.random((3, *SHAPE)).astype(np.float32)
    probs /= probs.sum(0)
    instances = np.zeros(SHAPE, np.int32)
    for i, (y, x) in enumerate(rng.integers(10, 160, (40, 2)), start=1):
        instances[y : y + 9, x : x + 9] = i
    dead = rng.random(40) < 0.3
    classes = np.concatenate([[0], np.where(dead, 2, 1)]).astype(np.uint8)[instances]
    return image, probs, instances, classes, dead


def write(out, save, rows):
    image, probs, instances, classes, _ = image_and_maps()
    out.mkdir()
    with ImageOutputs(out, "A1_t000", image, save, True, ["background", "dapi", "cy5"], 0.65, rows) as outputs:
        for y in range(0, SHAPE[0], rows):
            outputs.probs(y, probs[:, y : y + rows])
        lag = rows // 2  # label rows come later than probabilities, in bands of their own
        for y0, y1 in ((0, lag), *((y, min(y + rows, SHAPE[0])) for y in range(lag, SHAPE[0], rows))):
            outputs.labels(y0, instances[y0:y1], classes[y0:y1])


@pytest.mark.parametrize("save", ["ome-tiff", "tiff", "hdf5", "none"])
def test_files_written_band_by_band_are_those_written_whole(tmp_path, save):
    image, probs, instances, classes, dead = image_and_maps()
    write(tmp_path / "whole", save, SHAPE[0])
    write(tmp_path / "bands", save, 37)
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "bands").iterdir()), "no scratch file is left"
    expected = {"ome-tiff": 3, "tiff": 2, "hdf5": 2, "none": 1}[save]
    assert len(names) == expected
    for folder in ("whole", "bands"):
        out = tmp_path / folder
        overlay = np.asarray(Image.open(out / "A1_t000_overlay.png"))
        np.testing.assert_array_equal(overlay, nuclei_overlay(image, instances, dead))
        if save == "ome-tiff":
            written, meta = read_image(out / "A1_t000_probs.ome.tif")
            np.testing.assert_array_equal(written, probs)
            assert meta.channel_names == ["P(background)", "P(dapi)", "P(cy5)"]
            maps, meta = read_image(out / "A1_t000_nuclei.ome.tif")
            np.testing.assert_array_equal(maps, np.stack([classes, instances]).astype(np.uint32))
            assert (meta.channel_names, meta.pixel_size_um) == (["classes", "instances"], 0.65)
        elif save == "tiff":
            written, _ = read_image(out / "A1_t000_classes.tif")
            np.testing.assert_array_equal(written[0], classes)
        elif save == "hdf5":
            with h5py.File(out / "A1_t000_probs.h5") as f:
                np.testing.assert_array_equal(f["probs"][:], probs.astype(np.float16))
                np.testing.assert_array_equal(f["classes"][:], classes)


def test_an_image_that_fails_midway_leaves_no_file(tmp_path):
    image, probs, *_ = image_and_maps()

    def fail_midway() -> None:
        with ImageOutputs(tmp_path, "A1_t000", image, "ome-tiff", True, ["b", "d", "c"], None, 50) as outputs:
            outputs.probs(0, probs[:, :50])
            raise ValueError("the network ran out of memory")

    with pytest.raises(ValueError, match="out of memory"):
        fail_midway()
    assert list(tmp_path.iterdir()) == []
