"""The whole-plate prediction, through its command ``livedead.predict``."""

import csv
import json
import shutil
import sys

import h5py
import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
import zarr
from napari_ome_zarr import napari_get_reader
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from PIL import Image

from livedead.data.tilefile import read_tile_attrs
from livedead.errors import LivedeadError
from livedead.inference.evaluation import read_counts
from livedead.inference.predictor import held_out_wells
from livedead.nuclei.size import sizes_of_mask
from livedead.nuclei.table import read_nuclei_table
from livedead.plates.images import read_image
from livedead.plates.omezarr import LABEL_COLOURS, open_zarr_plate, read_labels
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well
from tests.helpers import NAMES, assert_one_line_error, run_cli, run_measured, to_zarr


@pytest.mark.slow
def test_end_to_end_counts_plots_and_metrics(tiny_ckpt, plate_path, tmp_path):
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={out}", "progress=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "counts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9
    assert {"well", "time", "live", "dead", "total", "dead_fraction", "true_live", "true_dead", "stain_live"} <= set(
        rows[0]
    )
    assert {"diameter_px", "stain_diameter_px", "time_h"} <= set(rows[0])
    assert float(rows[0]["stain_diameter_px"]) > 5  # measured in the Hoechst channel
    assert [float(r["time_h"]) for r in rows[:3]] == [0.0, 0.25, 0.5]  # the plate's interval
    for name in ("counts_over_time.png", "dead_fraction.png", "W01_t000_classes.tif", "W01_t000_overlay.png"):
        assert (out / name).exists(), name
    assert tifffile.imread(out / "W01_t000_classes.tif").shape == (256, 320)
    metrics = json.loads((out / "metrics.json").read_text())
    for scope in ("per_image", "per_tile"):
        for source in ("model", "stains"):
            assert {"mse_live", "mse_dead", "mae_live", "relative_error_total"} <= set(metrics[scope][source])
    # the stain-derived reference counts close to the truth; it is the floor of the model's error
    assert metrics["per_image"]["stains"]["relative_error_total"] < 0.1
    # detection against the plate's true nuclei, for the model and the stains
    for source in ("model", "stains"):
        assert {"precision", "recall", "f1", "found", "true"} <= set(metrics["detection"][source])
    assert metrics["detection"]["stains"]["f1"] > 0.95


def test_held_out_wells_and_hdf5_probabilities(tiny_ckpt, plate_path, tmp_path):
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={out}",
                   "wells=held_out", "save=hdf5", "overlays=false", "progress=false")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "counts.csv", newline="") as f:
        wells = {r["well"] for r in csv.DictReader(f)}
    with h5py.File(next(out.glob("*_probs.h5"))) as f:
        assert f["probs"].shape == (3, 256, 320)
        assert f["classes"].shape == (256, 320)
    assert len(wells) == 1


def test_held_out_wells_come_from_the_checkpoint_and_older_ones_from_their_tile_file(tiny_ckpt, tiles_path, tmp_path):
    """A checkpoint records its held-out wells: predict needs no tile file. One written before that
    reads them from its tile file, and says in one line when the file is gone."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    held_out = ckpt["livedead"]["held_out_wells"]
    assert held_out == read_tile_attrs(tiles_path).held_out_wells
    assert len(held_out) == 1
    ckpt["datamodule_hyper_parameters"]["path"] = str(tmp_path / "moved.h5")  # the tile file is gone
    torch.save(ckpt, tmp_path / "moved.ckpt")
    assert held_out_wells(tmp_path / "moved.ckpt") == held_out
    del ckpt["livedead"]["held_out_wells"]  # as written before checkpoints recorded them
    torch.save(ckpt, tmp_path / "old.ckpt")
    with pytest.raises(LivedeadError, match="old.ckpt: config key 'wells=held_out': this checkpoint predates"):
        held_out_wells(tmp_path / "old.ckpt")
    ckpt["datamodule_hyper_parameters"]["path"] = str(tiles_path)
    torch.save(ckpt, tmp_path / "old.ckpt")
    assert held_out_wells(tmp_path / "old.ckpt") == held_out


@pytest.mark.slow
def test_ome_tiff_predictions_carry_channel_names_and_pixel_size(tiny_ckpt, plate_path, tmp_path):
    """What napari and Fiji open: probabilities and the counted nuclei, named and at the plate's scale."""
    plate = tmp_path / "plate.h5"
    shutil.copy(plate_path, plate)
    with h5py.File(plate, "a") as f:
        f.attrs["pixel_size_um"] = 0.65
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate}", f"output={out}", "wells=[W01]",
                   "save=ome-tiff", "overlays=false", "progress=false")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    probs, meta = read_image(out / "W01_t000_probs.ome.tif")
    assert probs.shape == (3, 256, 320)
    assert meta.channel_names == ["P(background)", "P(dapi)", "P(cy5)"]
    assert meta.pixel_size_um == 0.65
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    nuclei, meta = read_image(out / "W01_t000_nuclei.ome.tif")
    assert meta.channel_names == ["classes", "instances"]
    with open(out / "counts.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert len(np.unique(nuclei[1])) - 1 == int(row["total"])  # the instances are the counted nuclei
    # the table beside counts.csv holds each of them, by its label: its centroid, area and class
    table = read_nuclei_table(out, read_counts(out))
    first = table[table["time"] == 0]
    assert first["label"].tolist() == list(range(1, int(row["total"]) + 1))
    labels = nuclei[1].astype(np.int64)
    ys, xs = np.nonzero(labels)
    area = np.bincount(labels[ys, xs], minlength=len(first) + 1)[1:]
    np.testing.assert_array_equal(first["area_px"], area)
    np.testing.assert_allclose(first["y"], np.bincount(labels[ys, xs], ys, len(first) + 1)[1:] / area, rtol=1e-12)
    np.testing.assert_allclose(first["x"], np.bincount(labels[ys, xs], xs, len(first) + 1)[1:] / area, rtol=1e-12)
    dead = np.bincount(labels[ys, xs], nuclei[0][ys, xs] == 2, len(first) + 1)[1:] > 0
    np.testing.assert_array_equal(first["state"] == "dead", dead)
    bad = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate}", f"output={out}", "save=zarr")
    assert_one_line_error(bad, "config key 'save'", "zarr")


# --- bad input -------------------------------------------------------------------------------


def test_checkpoint_missing_or_not_livedead(tmp_path, plate_path):
    proc = run_cli("livedead.predict", f"ckpt={tmp_path / 'no.ckpt'}", f"input={plate_path}", f"output={tmp_path}")
    assert_one_line_error(proc, "no.ckpt", "not found", "'ckpt'")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    proc = run_cli("livedead.predict", f"ckpt={other}", f"input={plate_path}", f"output={tmp_path}")
    assert_one_line_error(proc, "other.ckpt", "livedead checkpoint")
    text = tmp_path / "text.ckpt"
    text.write_text("hello")
    assert_one_line_error(run_cli("livedead.predict", f"ckpt={text}", f"input={plate_path}", f"output={tmp_path}"),
                          "text.ckpt", "expected a checkpoint", "unreadable")  # fmt: skip


def test_checkpoint_trained_with_other_classes(tiny_ckpt, plate_path, tmp_path):
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={tmp_path}",
                   "classes=[background,nucleus]")  # fmt: skip
    assert_one_line_error(proc, "expected a model of classes ['background', 'nucleus']", "'dapi'")


def test_failing_images_are_reported_and_the_rest_finish(tiny_ckpt, plate_path, tmp_path):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    with h5py.File(plate_path) as f:
        good = f["images"][0, 0]
    tifffile.imwrite(folder / "A1_t000.tif", good, photometric="minisblack")
    tifffile.imwrite(folder / "A1_t001.tif", good[:2], photometric="minisblack")  # channels do not match
    tifffile.imwrite(folder / "A1_t002.tif", good[:, :100, :100], photometric="minisblack")  # smaller than a tile
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={folder}", f"output={out}", "progress=false")
    assert proc.returncode != 0
    failures = proc.stderr.splitlines()
    assert len(failures) == 2, proc.stderr
    assert "A1_t001: failed" in failures[0]
    assert "expected 3 channels" in failures[0]
    assert "A1_t002: failed" in failures[1]
    assert "at least one 160x160 tile" in failures[1]
    with open(out / "counts.csv", newline="") as f:
        assert [r["time"] for r in csv.DictReader(f)] == ["0"]


def test_a_value_of_the_wrong_type_is_one_line(tiny_ckpt, plate_path, tmp_path):
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={tmp_path / 'p'}",
                   "batch_size=many")  # fmt: skip
    assert_one_line_error(proc, "'batch_size'", "many", "Integer")
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_ome_zarr_out_mirrors_the_input_with_the_counted_nuclei_as_labels(tiny_ckpt, plate_path, tmp_path):
    """A plate converted to OME-Zarr counts as its plate file does; the labels written are the nuclei counted."""
    source = to_zarr(plate_path, tmp_path / "plate.zarr", "0.4")
    common = (f"ckpt={tiny_ckpt}", "wells=[W02]", "overlays=false", "progress=false")
    h5 = run_cli("livedead.predict", *common, f"input={plate_path}", f"output={tmp_path / 'h5'}", "save=ome-tiff")
    assert h5.returncode == 0, h5.stderr[-3000:]
    names = [f"+tiff.channel_names.{role}={name}" for role, name in NAMES.items()]
    out = tmp_path / "zarr"
    proc = run_cli("livedead.predict", *common, *names, f"input={source}", f"output={out}", "save=ome-zarr")
    assert proc.returncode == 0, proc.stderr[-3000:]
    counts = read_counts(out)
    assert [(r["live"], r["dead"]) for r in counts] == [(r["live"], r["dead"]) for r in read_counts(tmp_path / "h5")]
    plate = open_zarr_plate(out / "predictions.ome.zarr")
    assert (plate.version, plate.well_paths, plate.time_interval_h) == ("0.4", ["W/02"], 0.25)  # as the input
    assert plate.fields[0][0].channel_names == ["P(background)", "P(dapi)", "P(cy5)"]
    assert (out / "predictions.ome.zarr" / "counts.csv").read_text() == (out / "counts.csv").read_text()
    written = read_labels(out / "predictions.ome.zarr" / "W" / "02" / "0")
    assert written.probs.shape == (3, 3, 256, 320)
    offset = 0
    for t in range(3):
        maps, _ = read_image(tmp_path / "h5" / f"W02_t{t:03d}_nuclei.ome.tif")  # the same nuclei, as OME-TIFF
        np.testing.assert_array_equal(written.classes[t], maps[0])
        ids = written.nuclei[t]
        np.testing.assert_array_equal(np.where(ids > 0, ids - offset, 0), maps[1])
        for i in np.unique(ids[ids > 0]):  # each nucleus coloured by its class: live green, dead red
            assert written.colours[int(i)] == LABEL_COLOURS[int(maps[0][ids == i][0])]
        assert counts[t]["total"] == len(np.unique(ids[ids > 0]))
        offset = max(offset, int(ids.max()))
    # ome-zarr-py's reader (napari-ome-zarr's) finds the labels with their colours
    nodes = list(Reader(parse_url(str(out / "predictions.ome.zarr" / "W" / "02" / "0")))())
    label = next(n for n in nodes if n.metadata.get("name") == "nuclei")
    np.testing.assert_array_equal(np.asarray(label.data[0])[:, 0], written.nuclei)
    assert len(label.data) == 3  # multiscale: 256x320, 128x160, 64x80
    # and napari's own OME-Zarr reader (napari-ome-zarr) opens them as labels layers, coloured
    field = str(out / "predictions.ome.zarr" / "W" / "02" / "0")
    layers = {kw["name"].rsplit("/", 1)[-1]: (data, kw) for data, kw, kind in napari_get_reader(field)(field)
              if kind == "labels"}  # fmt: skip
    np.testing.assert_array_equal(np.asarray(layers["classes"][0][0])[:, 0], written.classes)
    np.testing.assert_array_equal(np.asarray(layers["nuclei"][0][0])[:, 0], written.nuclei)
    colours = {k: tuple(round(c * 255) for c in v) for k, v in layers["classes"][1]["colormap"].items()}
    assert colours == {1: LABEL_COLOURS[1], 2: LABEL_COLOURS[2]}, "live green, dead red"


@pytest.mark.slow
def test_labels_into_an_ome_zarr_input_never_replace_its_data(tiny_ckpt, plate_path, tmp_path):
    source = to_zarr(plate_path, tmp_path / "plate.zarr", "0.5")
    before = open_zarr_plate(source).fields[0][0].read(1)
    args = (f"ckpt={tiny_ckpt}", "wells=[W01]", "overlays=false", "progress=false", f"input={source}",
            f"output={tmp_path / 'out'}", "save=ome-zarr", "zarr_into_input=true")  # fmt: skip
    proc = run_cli("livedead.predict", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels = read_labels(source / "W" / "01" / "0", ("livedead-classes", "livedead-nuclei"), probs=False)
    assert labels.classes.shape == (3, 256, 320)
    assert read_counts(tmp_path / "out")[0]["total"] == len(np.unique(labels.nuclei[0])) - 1
    np.testing.assert_array_equal(open_zarr_plate(source).fields[0][0].read(1), before)
    assert not (tmp_path / "out" / "predictions.ome.zarr").exists()
    assert_one_line_error(run_cli("livedead.predict", *args), "already holds the labels 'livedead-classes'")


@pytest.mark.slow
def test_counts_per_population_in_the_table_the_figure_and_the_metrics(tiny_ckpt, plate_path, tmp_path):
    """Ranges in µm (the synthetic plate records no pixel size: given): every counted nucleus is in one
    population or unassigned, for the model, the stains and the truth; ``metrics.json`` sums them over the plate."""
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={out}", "wells=[W01]",
                   "progress=false", "save=none", "overlays=false", "pixel_size_um=0.65",
                   "+populations.large.diameter_um=[5,100]", "+populations.small.diameter_um=[1,5]")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "counts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for prefix, total in (("", "total"), ("stain_", None), ("true_", None)):
        for row in rows:
            parts = sum(int(row[f"{prefix}{p}_{s}"]) for p in ("large", "small") for s in ("live", "dead"))
            whole = int(row[total]) if total else int(row[f"{prefix}live"]) + int(row[f"{prefix}dead"])
            assert parts + int(row[f"{prefix}unassigned"]) == whole, (prefix, row)
    assert sum(int(r["stain_large_live"]) + int(r["stain_large_dead"]) for r in rows) > 0
    metrics = json.loads((out / "metrics.json").read_text())
    pops = metrics["populations"]
    assert pops["definition"]["ranges"] == {"large": [5.0, 100.0], "small": [1.0, 5.0]}
    assert pops["truth"]["large"]["dead"] == sum(int(r["true_large_dead"]) for r in rows)
    assert set(pops) == {"definition", "model", "stains", "truth"}
    assert (out / "populations.png").exists()


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("+populations.a.diameter_um=[3,10]", ["'populations'", "pixel size", "'pixel_size_um'"]),
        ("populations=several", ["'populations'", "'auto'", "'several'"]),
    ],
)
def test_populations_that_cannot_be_counted_are_one_line(tiny_ckpt, plate_path, tmp_path, override, fragments):
    """Diameters in µm on a plate of unknown pixel size, or a setting that is no population, before any work."""
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={tmp_path / 'p'}",
                   override)  # fmt: skip
    assert_one_line_error(proc, *fragments)
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
def test_auto_populations_are_fitted_to_the_plate_and_recorded(tiny_ckpt, plate_path, tmp_path):
    """``populations=auto``: the mixture fitted to the model's nuclei is recorded in ``metrics.json``, and the
    table gets population columns exactly where populations were found (the tiny fixture model's nuclei
    decide which: that one kind of cell is one population is tested on real nuclei, test_populations.py)."""
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={out}", "wells=[W01]",
                   "progress=false", "save=none", "overlays=false", "populations=auto")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    fit = json.loads((out / "metrics.json").read_text())["populations"]["definition"]
    assert fit["unit"] == "px"  # the plate records no pixel size
    assert fit["fit"]["nuclei"] > 20
    found = len(fit["ranges"])
    assert (f"populations=auto: {found} populations" if found else "populations=auto: one population") in proc.stdout
    with open(out / "counts.csv", newline="") as f:
        columns = next(csv.DictReader(f))
    assert any(k.endswith("unassigned") for k in columns) == bool(found)
    assert (out / "populations.png").exists() == bool(found)


@pytest.mark.parametrize("override", ["save=ome-zarr", "populations=auto"])
def test_what_needs_a_whole_image_is_refused_in_bands_before_any_work(tiny_ckpt, plate_path, tmp_path, override):
    """The OME-Zarr output and the populations are made from a whole image's instance labels."""
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={tmp_path / 'p'}",
                   "band_px=20000", override)  # fmt: skip
    assert_one_line_error(proc, override.split("=")[0], "predicted in bands", "'band_px'", "256x320")
    assert not (tmp_path / "p").exists()


# --- wells larger than memory ------------------------------------------------------------------


def brightfield_folder(folder, image, name="A1_t000.tif", **tiff):
    folder.mkdir()
    tifffile.imwrite(folder / name, image, photometric="minisblack", **tiff)
    return folder


@pytest.mark.slow
def test_a_well_predicted_in_bands_is_the_well_predicted_whole(tiny_ckpt, tmp_path):
    """A TIFF over ``band_px`` is read, predicted, counted and written in bands of rows: the counts and every
    file are those of the image predicted whole (the instances numbered otherwise)."""
    spec = PlateSpec(wells=1, timepoints=1, height=420, width=320, seed=4)
    image = render_image(spec, next(simulate_well(spec, 0)), 0, 0)[0][0]
    folder = brightfield_folder(tmp_path / "in", image, tile=(64, 64), compression="zlib")
    outs = {}
    for name, band_px in (("whole", "null"), ("bands", "20000")):  # bands of 62 rows
        outs[name] = tmp_path / name
        proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={folder}", f"output={outs[name]}",
                       "channels=[brightfield]", "save=ome-tiff", f"band_px={band_px}", "progress=false")  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    whole, bands = (read_counts(outs[n]) for n in ("whole", "bands"))
    assert whole == bands
    assert whole[0]["total"] > 20
    tables = [read_nuclei_table(outs[n], whole).drop(columns="label").sort_values(["y", "x"], ignore_index=True)
              for n in outs]  # fmt: skip
    pd.testing.assert_frame_equal(*tables)  # each nucleus once, numbered otherwise
    probs = [read_image(outs[n] / "A1_t000_probs.ome.tif")[0] for n in outs]
    np.testing.assert_array_equal(*probs)
    maps = [read_image(outs[n] / "A1_t000_nuclei.ome.tif")[0] for n in outs]
    np.testing.assert_array_equal(maps[0][0], maps[1][0])  # the class maps
    pairs = np.unique(np.stack([maps[0][1].ravel(), maps[1][1].ravel()]), axis=1)
    assert pairs.shape[1] == whole[0]["total"] + 1, "the same nuclei, one label each"
    overlays = [np.asarray(Image.open(outs[n] / "A1_t000_overlay.png")) for n in outs]
    np.testing.assert_array_equal(*overlays)


CROP, COPIES = 4000, 5
"""A 20,000 x 20,000 px well is made of 5 x 5 copies of a 4,000 x 4,000 px crop, which the in-memory path predicts."""


def big_tiff(path, crop, copies):
    """A (copies * crop)-px square TIFF made a tile at a time from ``crop`` (zlib, 400 px tiles): never in memory."""
    tile = 400
    size = copies * crop.shape[0]
    tiles = (crop[y % CROP : y % CROP + tile, x % CROP : x % CROP + tile]
             for y in range(0, size, tile) for x in range(0, size, tile))  # fmt: skip
    tifffile.imwrite(path, tiles, shape=(size, size), dtype=crop.dtype, tile=(tile, tile), compression="zlib",
                     photometric="minisblack")  # fmt: skip


@pytest.mark.slow
def test_the_peak_memory_measured_is_the_commands_own(tmp_path):
    """A command that holds 128 MB, started by this test process once it has held 512 MB: 128 MB and Python's."""
    held = np.ones(2**29 // 8)  # the test process's peak, whatever it was, is now at least 512 MB
    del held
    code = "import numpy as np; a = np.ones(2**27 // 8); import sys; sys.exit(3)"
    proc, peak_mb = run_measured([sys.executable, "-c", code], tmp_path / "peak_kb")
    assert proc.returncode == 3
    assert 128 < peak_mb < 256, peak_mb


@pytest.mark.slow
@pytest.mark.large
def test_a_well_larger_than_memory(tiny_ckpt, tmp_path):
    """A 20,000 x 20,000 px well (800 MB of pixels; its class probabilities alone would be 4.8 GB) is predicted
    and counted in bands on the CPU by the command in a process of its own, whose peak resident memory stays
    under 2 GB; in the interior of each of its 25 copies of a 4,000 x 4,000 px crop, its counted nuclei (class
    map) are those of the crop predicted in memory."""
    spec = PlateSpec(wells=1, timepoints=1, height=CROP, width=CROP, seed=7)
    image, truth, _ = render_image(spec, next(simulate_well(spec, 0)), 0, 0)
    crop = image[0]
    diameter = sizes_of_mask(truth > 0).typical  # one size for both runs, as livedead.nuclei.size measures it
    settings = ["channels=[brightfield]", "mode=crop", "window=960", f"diameter={diameter}", "progress=false"]
    small = brightfield_folder(tmp_path / "crop", crop)
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={small}", f"output={tmp_path / 'crop_out'}",
                   "band_px=null", *settings)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = tifffile.imread(tmp_path / "crop_out" / "A1_t000_classes.tif")
    del image, truth
    big = tmp_path / "big"
    big.mkdir()
    big_tiff(big / "A1_t000.tif", crop, COPIES)
    args = [sys.executable, "-m", "livedead.predict", f"ckpt={tiny_ckpt}", f"input={big}",
            f"output={tmp_path / 'big_out'}", "band_px=2000000", *settings]  # fmt: skip
    proc, peak_mb = run_measured(args, tmp_path / "peak_kb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(f"peak RSS of the 20,000 x 20,000 px prediction: {peak_mb:.0f} MB")
    assert peak_mb < 2000
    (row,) = read_counts(tmp_path / "big_out")
    (crop_row,) = read_counts(tmp_path / "crop_out")
    copies = COPIES * COPIES
    assert 0.8 * copies * crop_row["total"] < row["total"] < 1.2 * copies * crop_row["total"]
    margin = 80 + 3 * int(np.ceil(diameter))  # windows straddle the copies' seams there, and nuclei reach in
    inner = slice(margin, CROP - margin)
    store = tifffile.imread(tmp_path / "big_out" / "A1_t000_classes.tif", aszarr=True)
    classes = zarr.open_array(store, mode="r")
    for y in range(0, COPIES * CROP, CROP):
        for x in range(0, COPIES * CROP, CROP):
            got = classes[y + inner.start : y + inner.stop, x + inner.start : x + inner.stop]
            np.testing.assert_array_equal(got, expected[inner, inner], err_msg=f"the copy at ({y}, {x})")
    store.close()
