"""The plate file's one owner, :mod:`livedead.plates.platefile`: written, described and read back, truth included."""

import h5py
import numpy as np
import pytest

from livedead.errors import LivedeadError
from livedead.plates.platefile import (
    PLATE_FORMAT,
    PlateAttrs,
    describe_plate,
    read_plate_image,
    read_truth,
    stitch_positions,
    write_plate,
)

SHAPE = (2, 3, 2, 20, 24)


def _write(path, **kw):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 4000, SHAPE, dtype=np.uint16)
    labels = rng.integers(0, 3, (*SHAPE[:2], *SHAPE[3:]), dtype=np.uint8)
    attrs = PlateAttrs(wells=["A1", "B7"], time_interval_h=0.5)
    with write_plate(path, attrs, SHAPE, np.dtype(np.uint16), ["brightfield", "hoechst"], **kw) as plate:
        for w in range(SHAPE[0]):
            for t in range(SHAPE[1]):
                plate.write_image(w, t, images[w, t])
                if "death_hazard" in kw:
                    plate.write_truth(w, t, labels[w, t], (labels[w, t] > 0) * (w + 1), 10 * w + t, t)
                if "fields" in kw:
                    plate.write_positions(w, t, np.full((kw["fields"], 2), w + t))
    return images, labels


def test_a_written_plate_reads_back_with_its_truth(tmp_path):
    path = tmp_path / "plate.h5"
    images, labels = _write(path, death_hazard=np.array([0.0, 0.1]))
    info = describe_plate(path, None)
    assert info.shape == SHAPE
    assert info.channels == ["brightfield", "hoechst"]
    assert info.has_truth
    assert info.attrs == PlateAttrs(wells=["A1", "B7"], time_interval_h=0.5)
    assert info.attrs.format == PLATE_FORMAT
    data, truth = read_plate_image(path, (1, 2), with_truth=True)
    np.testing.assert_array_equal(data, images[1, 2])
    np.testing.assert_array_equal(truth, labels[1, 2])
    assert read_plate_image(path, (1, 2))[1] is None
    found = read_truth(path)
    assert found.counts.shape == (2, 3, 2)
    assert found.counts[1, 2].tolist() == [12, 2]
    np.testing.assert_array_equal(found.instances(1, 2), (labels[1, 2] > 0) * 2)
    with h5py.File(path) as f:
        assert "pixel_size_um" not in f.attrs  # unknown: left out, not written as a guess
        assert f["truth/labels"].compression == "lzf"


def test_a_plate_without_truth_or_stitching_says_so(tmp_path):
    path = tmp_path / "plain.h5"
    _write(path, fields=4)
    info = describe_plate(path, None)
    assert not info.has_truth
    truth = read_truth(path)
    assert truth.counts is None
    assert truth.instances(0, 0) is None
    np.testing.assert_array_equal(stitch_positions(path, 1, 2), np.full((4, 2), 3))
    bare = tmp_path / "bare.h5"
    _write(bare)
    with pytest.raises(LivedeadError, match="bare.h5: expected a stitched plate"):
        stitch_positions(bare, 0, 0)


def test_a_plate_written_elsewhere_gets_default_wells_and_the_callers_channels(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((3, 1, 2, 8, 8), np.float32)
    info = describe_plate(path, ["brightfield", "draq7"])
    assert info.attrs.wells == ["W01", "W02", "W03"]
    assert info.channels == ["brightfield", "draq7"]
    assert info.attrs.pixel_size_um is None
    with pytest.raises(LivedeadError, match="has 2 channels, but the channel names are"):
        describe_plate(path, ["brightfield"])


def test_bad_plate_files_are_one_line(tmp_path):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["pixels"] = np.zeros((2, 8, 8))
    with pytest.raises(LivedeadError, match=r"dataset '/images' not found \(found \['pixels'\]\)"):
        describe_plate(path, None)
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((2, 8, 8))
    with pytest.raises(LivedeadError, match="expected 5 dims"):
        describe_plate(path, None)
    with h5py.File(path, "w") as f:
        f["images"] = np.zeros((1, 1, 1, 8, 8))
        f["truth/labels"] = np.zeros((1, 1, 4, 4), np.uint8)
    with pytest.raises(LivedeadError, match=r"'/truth/labels': expected shape \(1, 1, 8, 8\), found \(1, 1, 4, 4\)"):
        describe_plate(path, ["brightfield"])
    path.write_text("text")
    with pytest.raises(LivedeadError, match="bad.h5: expected a readable HDF5 file"):
        describe_plate(path, None)


def test_a_plate_appears_only_when_whole(tmp_path):
    path = tmp_path / "cut.h5"
    with (
        pytest.raises(RuntimeError),
        write_plate(path, PlateAttrs(wells=["A1"]), (1, 1, 1, 4, 4), np.dtype(np.uint8), ["bf"]),
    ):
        raise RuntimeError("killed while writing")
    assert list(tmp_path.iterdir()) == []
