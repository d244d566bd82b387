"""The tile file's one owner, :mod:`livedead.data.tilefile`: its attributes written and read back, its first pass."""

import math

import h5py
import numpy as np
import pytest

from livedead.data.tilefile import (
    FORMAT,
    FirstPassAttrs,
    create_tile_file,
    inspect_tile_file,
    read_first_pass,
    read_tile_attrs,
    reusable_first_pass,
)
from livedead.errors import LivedeadError


def test_prepare_writes_the_attributes_the_record_reads_back(tiles_path):
    attrs = read_tile_attrs(tiles_path)
    assert attrs is not None
    with h5py.File(tiles_path) as f:
        n = f["images"].shape[0]
        wells_of_val = {int(w) for w in f["origin"][attrs.n_train :, 0]}
    assert (attrs.tile, attrs.stride, attrs.chunk) == (160, 80, 50)
    assert attrs.n_train + attrs.n_val == n
    assert attrs.split_by == "well"
    assert attrs.class_names == ["background", "dapi", "cy5"]
    assert attrs.wells == ["W01", "W02", "W03"]
    assert attrs.val_units
    assert all(u.startswith("well ") for u in attrs.val_units)
    # the held-out wells are the wells of the validation tiles
    assert attrs.held_out_wells == [attrs.wells[w] for w in sorted(wells_of_val)]
    assert attrs.nucleus_diameter_px > 5
    info = inspect_tile_file(tiles_path, "images", "labels", "class_counts", 3, 25, 0.1, 0)
    assert info.held_out_wells == attrs.held_out_wells
    assert info.train_ranges == [(0, attrs.n_train)]  # the split the file declares


def _study_file(path, n=60, **attrs):
    """A file in the original study's layout: images and labels only, whatever attributes are given."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["images"] = rng.integers(0, 255, (n, 1, 16, 16), dtype=np.uint8)
        f["labels"] = rng.integers(0, 3, (n, 16, 16), dtype=np.uint8)
        f.attrs.update(attrs)
    return path


def test_a_file_prepare_did_not_write_has_no_record_and_no_held_out_wells(tmp_path):
    path = _study_file(tmp_path / "study.h5", val_units=["well W01"])  # no format: not livedead's
    assert read_tile_attrs(path) is None
    info = inspect_tile_file(path, "images", "labels", "class_counts", 3, 10, 0.2, 0)
    assert info.held_out_wells == []
    assert len(info.val_ranges) >= 1  # split by batches instead


def test_an_older_tile_file_reads_missing_attributes_as_their_defaults(tmp_path):
    path = _study_file(tmp_path / "old.h5", format=FORMAT, n_train=40, val_units=["well W02", "image W03/t1"])
    attrs = read_tile_attrs(path)
    assert attrs.n_train == 40
    assert attrs.held_out_wells == ["W02"]  # an image unit is not a well
    assert math.isnan(attrs.nucleus_diameter_px)
    assert attrs.class_names == []


def _cut_off(path):
    with create_tile_file(path) as f:
        f["images"] = np.zeros((2, 1, 4, 4), np.uint8)
        raise RuntimeError("killed while writing")


def test_a_tile_file_appears_only_when_whole(tmp_path):
    path = tmp_path / "t.h5"
    with pytest.raises(RuntimeError):
        _cut_off(path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    with create_tile_file(path) as f:
        f["images"] = np.zeros((2, 1, 4, 4), np.uint8)
    with h5py.File(path) as f:
        assert f["images"].shape == (2, 1, 4, 4)


def test_a_first_pass_is_reused_only_when_complete_and_made_the_same_way(tmp_path):
    path = tmp_path / "t.all.h5"
    assert not reusable_first_pass(path, "recipe")
    with create_tile_file(path) as f:
        FirstPassAttrs("recipe", [9.5, 10.5], 1.25).write(f)
    assert reusable_first_pass(path, "recipe")
    assert not reusable_first_pass(path, "another recipe")
    with h5py.File(path) as f:
        kept = read_first_pass(f)
        assert f.attrs["format"] == FORMAT + "+intermediate"
    assert kept == FirstPassAttrs("recipe", [9.5, 10.5], 1.25)
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False  # a pass that did not finish
    assert not reusable_first_pass(path, "recipe")
    path.write_bytes(b"not an HDF5 file")
    assert not reusable_first_pass(path, "recipe")


def test_a_declared_split_that_does_not_fit_the_file_is_refused(tmp_path):
    """``n_train`` of 100 for 24 tiles would have fallen back to a tile-level split, which leaks (README)."""
    rng = np.random.default_rng(0)
    for declared in (100, 24, 0, -3):
        path = tmp_path / f"t{declared}.h5"
        with h5py.File(path, "w") as f:
            f["images"] = rng.integers(0, 1000, (24, 1, 16, 16), dtype=np.uint16)
            f["labels"] = rng.integers(0, 3, (24, 16, 16), dtype=np.uint8)
            f.attrs["n_train"] = declared
        with pytest.raises(LivedeadError, match=f"t{declared}.h5: attribute 'n_train': .*24 tiles.*found {declared}"):
            inspect_tile_file(path, "images", "labels", "class_counts", 3, 4, 0.1, 0)
