"""OME-Zarr HCS plates: read (NGFF 0.4 and 0.5, lazily), stitched from their fields, and their bad input."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from livedead.data.preparation import PrepareConfig, prepare
from livedead.plates.omezarr import open_zarr_plate, write_hcs
from livedead.plates.platefile import PLATE_CHANNELS
from livedead.plates.sources import TiffLayout, open_plate
from livedead.plates.stitching import StitchConfig, stitch
from tests.helpers import NAMES, assert_one_line_error, run_cli, to_zarr


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_plate_reads_as_the_plate_file_does(plate_path, tmp_path, version):
    source = to_zarr(plate_path, tmp_path / "plate.zarr", version)
    h5, h5_images = open_plate(plate_path)
    plate, images = open_plate(source, ["draq7", "brightfield", "hoechst"], TiffLayout(channel_names=NAMES))
    assert plate.wells == h5.wells == ["W01", "W02", "W03"]
    assert (plate.timepoints, plate.shape, plate.n_images) == (3, (256, 320), 9)
    assert (plate.pixel_size_um, plate.time_interval_h) == (0.65, 0.25)
    for ours, theirs in zip(images, h5_images, strict=True):
        assert (ours.well, ours.time, ours.error) == (theirs.well, theirs.time, None)
        for role in PLATE_CHANNELS:  # picked by name, whatever the order of the roles asked for
            np.testing.assert_array_equal(ours.channels[role], theirs.channels[role])
    field = open_zarr_plate(source).fields[1][0]
    np.testing.assert_array_equal(
        field.plane(2, 0)[10:20, 30:50], h5.reader((1, 2)).channels["brightfield"][10:20, 30:50]
    )


@pytest.mark.slow
def test_prepare_tiles_a_plate_as_it_tiles_the_plate_file(plate_path, tiles_path, tmp_path):
    source = to_zarr(plate_path, tmp_path / "plate.zarr", "0.5")
    out = tmp_path / "tiles.h5"
    prepare(source, out, PrepareConfig(chunk=50, progress=False, tiff=TiffLayout(channel_names=NAMES)))
    with h5py.File(out) as ours, h5py.File(tiles_path) as theirs:
        for key in ("images", "labels", "origin", "class_counts"):
            np.testing.assert_array_equal(ours[key][:], theirs[key][:])


def test_a_plate_of_fields_is_stitched_at_their_translations(plate_path, tmp_path):
    source = to_zarr(plate_path, tmp_path / "fields.zarr", "0.5", fields=2)
    with pytest.raises(Exception, match="expected one field per well, found 4: stitch"):
        open_plate(source)
    cfg = StitchConfig(channel_names=NAMES, progress=False)  # rows=cols=3 by default: the grid is read off
    summary = stitch(source, tmp_path / "stitched.h5", cfg)
    assert summary.grid == (2, 2)
    assert summary.pixel_size_um == 0.65
    stitched, images = open_plate(summary.output)
    original, _ = open_plate(plate_path)
    assert stitched.shape == original.shape  # exact crops at their translations: the whole well again
    first = next(images)
    np.testing.assert_array_equal(first.channels["hoechst"], original.reader((0, 0)).channels["hoechst"])


def test_bad_plates_are_one_line(plate_path, tmp_path):
    good = to_zarr(plate_path, tmp_path / "good.zarr", "0.5")

    def prepare(source: Path, *extra: str):
        return run_cli("livedead.prepare", f"input={source}", f"output={tmp_path / 'tiles.h5'}", *extra)

    plain = zarr.open_group(tmp_path / "plain.zarr", mode="w")
    plain.create_array("x", shape=(4, 4), dtype="u1")
    assert_one_line_error(prepare(tmp_path / "plain.zarr"), "plain.zarr", "expected an OME-Zarr HCS plate")
    assert_one_line_error(prepare(good / "W" / "01" / "0"), "expected an OME-Zarr HCS plate")  # an image, no plate
    names = (
        "+tiff.channel_names.brightfield=BF",
        "+tiff.channel_names.hoechst=Hoechst",
        "+tiff.channel_names.draq7=Cy5",
    )
    wrong = prepare(good, *names)
    assert_one_line_error(wrong, "tiff.channel_names.hoechst", "'Hoechst'", "['BF', 'DAPI', 'Cy5']")
    shutil.rmtree(good / "W" / "02")
    assert_one_line_error(prepare(good), "lists the well 'W/02'", "no zarr group")
    data = np.zeros((1, 3, 2, 8, 8), np.uint16)
    write_hcs(tmp_path / "z.zarr", {"A1": [(data[:, :, 0], (0.0, 0.0))]}, ["BF", "DAPI", "Cy5"], "0.5")
    image = zarr.open_group(tmp_path / "z.zarr" / "A" / "1" / "0", mode="a")
    meta = image.attrs.asdict()
    del image["0"]
    image.create_array("0", data=data, dimension_names=["t", "c", "z", "y", "x"])
    axes = meta["ome"]["multiscales"][0]["axes"]
    axes.insert(2, {"name": "z", "type": "space"})
    meta["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"] = [{"type": "scale", "scale": [1] * 5}]
    image.attrs.put(meta)
    assert_one_line_error(prepare(tmp_path / "z.zarr"), "A/1/0", "expected one z plane", "found 2")
