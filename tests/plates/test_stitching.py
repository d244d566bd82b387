"""Stitching with a known answer: synthetic wells cut into jittered fields, stitched back, prepared and trained on."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from livedead.errors import LivedeadError
from livedead.plates.sources import open_plate
from livedead.plates.stitching import StitchConfig, grid_cell, stitch
from livedead.plates.synthetic import FieldGrid, PlateSpec, generate_plate, write_fields
from tests.helpers import assert_one_line_error, run_cli

GRID = FieldGrid(rows=3, cols=4, overlap=0.15, jitter=5, order="snake", seed=2)
CFG = StitchConfig(rows=3, cols=4, overlap=0.15, order="snake", progress=False)


@pytest.fixture(scope="module")
def plate(tmp_path_factory) -> Path:
    spec = PlateSpec(wells=2, timepoints=2, height=600, width=760, seed=5)
    return generate_plate(tmp_path_factory.mktemp("stitch") / "plate.h5", spec, progress=False)


def true_positions(positions_csv: Path, well: str, cols: int) -> np.ndarray:
    rows = [r for r in csv.DictReader(positions_csv.open()) if r["well"] == well]
    out = np.zeros((len(rows), 2), np.int64)
    for r in rows:
        out[int(r["row"]) * cols + int(r["col"])] = int(r["y"]), int(r["x"])
    return out


def test_grid_orders():
    assert [grid_cell(i, 2, 3, "row-major") for i in range(6)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert [grid_cell(i, 2, 3, "snake") for i in range(6)] == [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0)]
    assert [grid_cell(i, 2, 3, "column-major") for i in range(6)] == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2)]
    assert [grid_cell(i, 2, 3, "column-snake") for i in range(4)] == [(0, 0), (1, 0), (1, 1), (0, 1)]


@pytest.mark.parametrize("noise", [0.0, 20.0])
def test_stitched_fields_land_within_a_pixel_and_equal_the_well(plate, tmp_path, noise):
    """Exact crops stitch back to the very pixels of the well (tolerance 0, seams included); with each
    exposure's own camera noise (sigma 20 counts) positions still land within 1 px, and away from the
    seams every pixel is the well's plus that field's noise (within 6 sigma)."""
    folder = tmp_path / "fields"
    positions_csv = write_fields(plate, folder, FieldGrid(**{**GRID.__dict__, "noise": noise}))
    summary = stitch(folder, tmp_path / "stitched.h5", CFG)
    assert summary.fallback == {}
    with h5py.File(plate) as f, h5py.File(summary.output) as g:
        assert g["images"].shape[:3] == (2, 2, 3)
        assert list(g["images"].attrs["channels"]) == ["brightfield", "hoechst", "draq7"]
        for w, well in enumerate(summary.wells):
            truth = true_positions(positions_csv, well, 4)
            found = g["stitch/positions"][w, 0]
            assert np.abs((found - found[0]) - (truth - truth[0])).max() <= 1
            origin = truth[0] - found[0]  # where the stitched image's corner lies in the well
            for t in range(2):
                stitched = g["images"][w, t].astype(np.int64)
                h, wd = stitched.shape[1:]
                well_image = f["images"][w, t][:, origin[0] : origin[0] + h, origin[1] : origin[1] + wd]
                diff = np.abs(stitched - well_image)
                if noise == 0:
                    assert diff.max() == 0
                else:
                    assert diff.max() <= 6 * noise  # over 2.6 million noisy pixels: 5 sigma is passed about once
                    assert diff.mean() < noise


def test_stage_positions_of_ome_tiff_seed_the_stitching_and_the_pixel_size_is_kept(plate, tmp_path):
    folder = tmp_path / "ome"
    grid = FieldGrid(**{**GRID.__dict__, "ome_tiff": True, "pixel_size_um": 0.5, "jitter": 12})
    positions_csv = write_fields(plate, folder, grid)
    # the stage says where each field is: the registration starts there, 12 px off the grid or not
    summary = stitch(folder, tmp_path / "stitched.h5", StitchConfig(**{**CFG.__dict__, "max_shift": 3}))
    assert summary.pixel_size_um == 0.5
    truth = true_positions(positions_csv, "W01", 4)
    found = summary.positions["W01_t0"]
    assert np.abs((found - found[0]) - (truth - truth[0])).max() <= 1
    described, _ = open_plate(summary.output)
    assert described.pixel_size_um == 0.5
    named = StitchConfig(
        **{**CFG.__dict__, "channel_names": {"brightfield": "brightfield", "hoechst": "x", "draq7": "y"}}
    )
    with pytest.raises(
        LivedeadError, match=r"channel_names.hoechst': expected a channel named 'x', found \['brightfield'"
    ):
        stitch(folder, tmp_path / "named.h5", named)
    assert not (tmp_path / "named.h5").exists()


def test_a_field_without_texture_falls_back_to_its_nominal_position(plate, tmp_path, capsys):
    folder = tmp_path / "fields"
    write_fields(plate, folder, GRID)
    blank = folder / "W01_f005_t000.tif"  # snake order: field 5 is row 1, col 2
    tifffile.imwrite(blank, np.full_like(tifffile.imread(blank), 1000), photometric="minisblack")
    summary = stitch(folder, tmp_path / "stitched.h5", StitchConfig(**{**CFG.__dict__, "progress": True}))
    assert summary.fallback == {"W01": [1 * 4 + 2]}
    out = capsys.readouterr().out
    assert "well W01, time 0: field at row 1, col 2: its overlaps could not be registered" in " ".join(out.split())


def test_bad_field_folders_are_one_line_and_write_nothing(plate, tmp_path):
    folder = tmp_path / "fields"
    write_fields(plate, folder, FieldGrid(rows=2, cols=2, jitter=2))
    out = tmp_path / "out" / "plate.h5"
    args = [f"input={folder}", f"output={out}", "rows=2", "cols=2", "progress=false"]
    too_small = run_cli("livedead.stitch", *args[:2], "rows=1", "cols=2")
    assert_one_line_error(too_small, "field 3 does not fit a 1x2 grid", "numbered 0..1")
    too_large = run_cli("livedead.stitch", *args[:2], "rows=2", "cols=3")
    assert_one_line_error(too_large, "expected 6 fields of a 2x3 grid, found 4 (missing [4, 5])")
    (folder / "W02_f003_t001.tif").unlink()
    missing = run_cli("livedead.stitch", *args)
    assert_one_line_error(missing, "well W02, time 1: expected 4 fields of a 2x2 grid, found 3 (missing [3])")
    tifffile.imwrite(folder / "W02_f003_t001.tif", np.zeros((3, 40, 50), np.uint16))
    shapes = run_cli("livedead.stitch", *args)
    assert_one_line_error(shapes, "W02_f003_t001.tif: expected fields of one shape", "found (40, 50)")
    assert_one_line_error(run_cli("livedead.stitch", *args, "order=zigzag"), "config key 'order'", "zigzag")
    assert_one_line_error(run_cli("livedead.stitch", *args, "rows=abc"), "rows", "abc")
    assert not out.exists()
    assert not list(out.parent.iterdir())


@pytest.mark.slow
def test_a_stitched_plate_is_prepared_and_trained_on(plate, tmp_path):
    """The whole way in: fields, ``livedead.stitch``, ``livedead.prepare``, ``train.py``, real commands."""
    fields = tmp_path / "fields"
    write_fields(plate, fields, GRID)
    stitched, tiles = tmp_path / "stitched.h5", tmp_path / "tiles.h5"
    args = ["rows=3", "cols=4", "overlap=0.15", "order=snake", "progress=false"]
    assert run_cli("livedead.stitch", f"input={fields}", f"output={stitched}", *args).returncode == 0
    assert (tmp_path / "stitched_seams.png").stat().st_size > 10_000  # the first well with its fields outlined
    assert (
        run_cli("livedead.prepare", f"input={stitched}", f"output={tiles}", "chunk=50", "progress=false").returncode
        == 0
    )
    train = run_cli("livedead.train", "data=hdf5", f"data.path={tiles}", "data.batch_size=25", "data.num_workers=0",
                    "model.net.base_channels=4", "model.net.depth=2", "trainer.max_epochs=1", "trainer.accelerator=cpu",
                    "callbacks.progress_bar=null", cwd=tmp_path)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    assert list(tmp_path.glob("outputs/runs/*/checkpoints/last.ckpt"))


def test_synthetic_command_writes_fields_and_every_time_point_can_be_registered(tmp_path):
    made = run_cli("livedead.synthetic", f"output={tmp_path / 'plate.h5'}", "wells=1", "timepoints=2", "height=400",
                   "width=500", f"fields={tmp_path / 'f'}", "grid.rows=2", "grid.cols=2", "grid.jitter=6",
                   "grid.ome_tiff=true", "progress=false")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert len(list((tmp_path / "f").glob("W01_f*_t*.ome.tif"))) == 8
    truth = true_positions(tmp_path / "f" / "positions.csv", "W01", 2)
    cfg = StitchConfig(rows=2, cols=2, nominal="grid", register_every_time=True, progress=False)
    summary = stitch(tmp_path / "f", tmp_path / "s.h5", cfg)
    for t in (0, 1):  # each time point measured on its own: the stage repeated its positions
        found = summary.positions[f"W01_t{t}"]
        assert np.abs((found - found[0]) - (truth - truth[0])).max() <= 1
    with h5py.File(summary.output) as f:
        np.testing.assert_array_equal(f["stitch/positions"][0, 0], f["stitch/positions"][0, 1])
