"""A model meets images of another pixel size: ``predict`` rescales them to the one it was trained at."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from livedead.errors import LivedeadError
from livedead.inference.predictor import PredictConfig, run
from livedead.inference.rescaling import nuclei_on_image_grid, rescale_factor, to_image_grid, to_model_grid
from livedead.nuclei.counting import nuclei_from_instances
from livedead.plates.synthetic import generate_plate
from tests.helpers import (
    SCRATCH_HELD_OUT,
    SCRATCH_TILE,
    SMALL,
    ScratchModel,
    assert_one_line_error,
    run_cli,
    scratch_assay_plate,
)

TRAINED_UM = 0.65
"""The pixel size the checkpoint of these tests says it was trained at."""
NUCLEUS_UM = 6.5
"""The synthetic nucleus (about 10 px at magnification 1) in micrometres, so that counting's diameter
follows each image's pixel size."""


@pytest.fixture(scope="module")
def sized_ckpt(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny fit's checkpoint, recording a pixel size as one trained on a plate that records it does."""
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    assert ckpt["livedead"]["pixel_size_um"] is None  # the synthetic plate records none
    ckpt["livedead"]["pixel_size_um"] = TRAINED_UM
    path = tmp_path_factory.mktemp("sized") / "sized.ckpt"
    torch.save(ckpt, path)
    return path


def field_at(magnification: float, folder: Path) -> Path:
    """The first time point of the test plate's cells imaged at ``magnification`` (same seed, same cells;
    sizes in pixels, blur and noise as a camera of that pixel size has them)."""
    size = {"height": round(SMALL.height * magnification), "width": round(SMALL.width * magnification)}
    spec = replace(SMALL, timepoints=1, magnification=magnification, **size)
    return generate_plate(folder / f"plate-{magnification}x.h5", spec, progress=False)


def predict(ckpt: Path, plate: Path, out: Path, **kw) -> dict:
    """The row of the held-out well's field."""
    cfg = PredictConfig(ckpt=str(ckpt), input=str(plate), output=str(out), wells="held_out", overlays=False,
                        save="none", progress=False, nucleus_diameter_um=NUCLEUS_UM, **kw)  # fmt: skip
    rows, failures = run(cfg)
    assert failures == 0
    assert len(rows) == 1
    return rows[0]


@pytest.fixture(scope="module")
def counts(sized_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The held-out field at 1x, 0.5x and 2x, each predicted with its pixel size given; and 2x as is."""
    tmp = tmp_path_factory.mktemp("rescale")
    rows = {}
    for m in (1.0, 0.5, 2.0):
        plate = field_at(m, tmp)
        rows[f"{m}x"] = predict(sized_ckpt, plate, tmp / f"pred-{m}", pixel_size_um=TRAINED_UM / m)
    rows["2.0x off"] = predict(sized_ckpt, plate, tmp / "off", pixel_size_um=TRAINED_UM / 2, rescale="off")
    return rows


@pytest.mark.slow
def test_images_of_another_pixel_size_are_rescaled_to_the_models(counts):
    """The factor is recorded per image, and counting runs on the image's own grid (the diameter in its
    pixels). Measured (46 true nuclei at each magnification): the model counts 39 at 1x, and at 2x 32
    rescaled against 7 as is (``rescale=off``)."""
    assert [counts[k]["rescale"] for k in ("1.0x", "0.5x", "2.0x", "2.0x off")] == [1.0, 2.0, 0.5, 1.0]
    assert [counts[k]["diameter_px"] for k in ("1.0x", "0.5x", "2.0x")] == [10.0, 5.0, 20.0]
    true = {k: counts[k]["true_live"] + counts[k]["true_dead"] for k in ("1.0x", "0.5x", "2.0x")}
    assert len(set(true.values())) == 1, true  # the same cells
    ref = counts["1.0x"]["total"]
    assert abs(counts["2.0x"]["total"] - ref) < abs(counts["2.0x off"]["total"] - ref)


@pytest.mark.slow
def test_a_real_field_at_half_and_twice_the_magnification_counts_within_10_percent_of_1x(
    scratch_model: ScratchModel, tmp_path: Path
):
    """The issue's criterion, on real transmitted light: the suite's U-Net of the scratch assay
    (:func:`tests.helpers.train_scratch_model`) on its 3 held-out frames, resampled to 0.5x and 2x, each plate
    recording its pixel size. Measured: 328 nuclei at 1x, 316 at 0.5x (-4 %), 335 at 2x (+2 %), for 242
    hand-drawn. At 0.5x the network sees the image upsampled to its grid and is counted there: counted on the
    image's half-size grid, where its small blobs vanish when resampled, it was 233 against 340 at 1x (-31 %,
    with an earlier version of the labels)."""
    totals = {1.0: counts_total(scratch_model.predictions)}
    for scale in (0.5, 2.0):
        plate = scratch_assay_plate(tmp_path / f"held_out-{scale}x.h5", SCRATCH_HELD_OUT, scale)
        out = tmp_path / f"pred-{scale}x"
        cfg = PredictConfig(ckpt=str(scratch_model.ckpt), input=str(plate), output=str(out), save="none",
                            overlays=False, progress=False, tile=SCRATCH_TILE)  # fmt: skip
        assert run(cfg)[1] == 0
        totals[scale] = counts_total(out)
    for scale in (0.5, 2.0):
        assert abs(totals[scale] - totals[1.0]) <= 0.1 * totals[1.0], totals


def counts_total(folder: Path) -> int:
    """The nuclei a prediction folder's ``counts.csv`` counts over all its images."""
    with open(folder / "counts.csv") as f:
        return sum(int(row["total"]) for row in csv.DictReader(f))


@pytest.mark.slow
def test_an_image_of_unknown_pixel_size_is_refused_in_one_line(sized_ckpt, plate_path, tmp_path):
    """The checkpoint knows its pixel size, the plate does not: they may differ, so predict says so in one
    line naming the keys; ``rescale=off`` predicts as is, and ``pixel_size_um=`` gives the size."""
    common = (f"ckpt={sized_ckpt}", f"input={plate_path}", "wells=[W01]", "progress=false", "overlays=false",
              "save=none")  # fmt: skip
    proc = run_cli("livedead.predict", *common, f"output={tmp_path / 'a'}")
    assert_one_line_error(proc, "sized.ckpt", "0.65 µm/px", "pixel size is unknown", "'pixel_size_um'", "'rescale=off'")
    assert not (tmp_path / "a").exists()
    for ok in ("rescale=off", "pixel_size_um=0.65"):
        proc = run_cli("livedead.predict", *common, f"output={tmp_path / ok.split('=')[0]}", ok)
        assert proc.returncode == 0, proc.stderr[-3000:]
    bad = run_cli("livedead.predict", *common, f"output={tmp_path / 'c'}", "rescale=maybe")
    assert_one_line_error(bad, "config key 'rescale'", "maybe")


def test_the_factor_and_the_grids_there_and_back():
    """Image over model pixel size; within 1 % none; a checkpoint without one as is; probabilities still sum to one."""
    assert rescale_factor("auto", 1.3, 0.65, "x") == 2.0
    assert rescale_factor("auto", 0.655, 0.65, "x") == 1.0
    assert rescale_factor("auto", 1.3, None, "x") == rescale_factor("off", None, 0.65, "x") == 1.0
    with pytest.raises(LivedeadError, match="x: the model was trained at 0.65 µm/px"):
        rescale_factor("auto", None, 0.65, "x")
    image = np.arange(40 * 60, dtype=np.uint16).reshape(40, 60)
    assert to_model_grid(image, 2.0).shape == (80, 120)
    probs = np.random.default_rng(0).dirichlet([1, 1, 1], (80, 120)).transpose(2, 0, 1).astype(np.float32)
    back = to_image_grid(probs, (40, 60))
    assert back.shape == (3, 40, 60)
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-5)


def test_nuclei_counted_on_a_finer_grid_map_back_to_the_images():
    """The same nuclei on a grid twice as fine: mapped back, their centroids, areas and labels are the image's."""
    coarse = np.zeros((40, 60), np.int32)
    coarse[5:9, 10:16], coarse[20:30, 30:33] = 1, 2
    fine = nuclei_from_instances(np.kron(coarse, np.ones((2, 2), np.int32)), None)
    back, direct = nuclei_on_image_grid(fine, coarse.shape), nuclei_from_instances(coarse, None)
    np.testing.assert_allclose(back.centroids, direct.centroids)
    np.testing.assert_array_equal(back.areas, direct.areas)
    np.testing.assert_array_equal(back.instances, coarse)
