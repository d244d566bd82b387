import csv
import json
from functools import partial

import h5py
import lightning as L
import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from livedead.counting import count_cells, find_nuclei, per_tile_counts
from livedead.datamodule import TileDataModule
from livedead.errors import LivedeadError
from livedead.inference import LoadedModel, load_model, predict_image
from livedead.models import UNet
from livedead.module import LiveDeadModule

from .conftest import assert_one_line_error, run_cli


class Constant(nn.Module):
    """A network whose output is the same logits everywhere."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", torch.tensor(logits).view(1, -1, 1, 1))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, *x.shape[-2:])


def constant_model(logits=(0.3, 1.2, -0.5)):
    return LoadedModel(Constant(list(logits)), ["background", "dapi", "cy5"], {"mode": "none"}, 160, 16)


@pytest.mark.parametrize(("mode", "blending"), [("blend", "gaussian"), ("blend", "constant"), ("crop", "gaussian")])
def test_blending_a_constant_output_gives_the_constant_with_no_seams(mode, blending):
    model = constant_model()
    expected = torch.tensor([0.3, 1.2, -0.5]).softmax(0).numpy()
    probs = predict_image(model, np.zeros((517, 701), np.uint16), mode=mode, blending=blending, batch_size=7)
    assert probs.shape == (3, 517, 701)
    np.testing.assert_allclose(probs, np.broadcast_to(expected[:, None, None], probs.shape), rtol=1e-5)


@pytest.fixture(scope="module")
def tiny_ckpt(tiles_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    module = LiveDeadModule(
        net=UNet(base_channels=4, depth=2), optimizer=partial(torch.optim.Adam, lr=0.01), overlay_tiles=0
    )
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=root)  # fmt: skip
    trainer.fit(module, datamodule=TileDataModule(tiles_path, batch_size=25, num_workers=0))
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.mark.parametrize("shape", [(333, 251), (160, 160), (401, 517)])
@pytest.mark.parametrize("mode", ["blend", "crop"])
def test_image_not_a_multiple_of_the_stride(tiny_ckpt, shape, mode):
    model = load_model(tiny_ckpt)
    image = np.random.default_rng(0).integers(1500, 2500, shape).astype(np.uint16)
    probs = predict_image(model, image, mode=mode, window=192 if mode == "crop" else None, margin=16)
    assert probs.shape == (3, *shape)
    np.testing.assert_allclose(probs.sum(0), 1.0, rtol=1e-5)


def test_crop_mode_agrees_with_blending(tiny_ckpt, plate_path):
    model = load_model(tiny_ckpt)
    with h5py.File(plate_path) as f:
        image = f["images"][0, 0, 0]
    a = predict_image(model, image).argmax(0)
    b = predict_image(model, image, mode="crop", window=256, margin=32).argmax(0)
    assert (a == b).mean() > 0.97


def disk(img, cy, cx, r, value):
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def test_counting_known_masks_with_touching_nuclei():
    m = np.zeros((200, 300), np.uint8)
    for i in range(5):
        disk(m, 20, 20 + 40 * i, 7, 1)  # 5 live, apart
    for i in range(3):
        disk(m, 60, 20 + 40 * i, 6, 2)  # 3 dead, apart
    for i in range(2):
        disk(m, 110, 30 + 80 * i, 8, 1)  # 2 pairs of touching live nuclei
        disk(m, 110, 43 + 80 * i, 8, 1)
    disk(m, 160, 40, 8, 1)  # a live and a dead nucleus touching
    disk(m, 160, 53, 8, 2)
    disk(m, 180, 250, 1, 2)  # debris below min_size
    counts = count_cells(m, min_size=20)
    assert counts == {"live": 10, "dead": 4, "total": 14, "dead_fraction": pytest.approx(4 / 14)}
    assert count_cells(m, split=False)["total"] == 11, "without the watershed, touching nuclei merge"
    nuclei = find_nuclei(m)
    tiles = per_tile_counts(nuclei, m.shape, tile=160)
    assert tiles.shape == (4, 2) and tiles.sum(0).tolist() == [10, 4]  # a 2x2 grid of 160-px tiles


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
    for name in ("counts_over_time.png", "dead_fraction.png", "W01_t000_classes.tif", "W01_t000_overlay.png"):
        assert (out / name).exists(), name
    assert tifffile.imread(out / "W01_t000_classes.tif").shape == (256, 320)
    metrics = json.loads((out / "metrics.json").read_text())
    for scope in ("per_image", "per_tile"):
        for source in ("model", "stains"):
            assert {"mse_live", "mse_dead", "mae_live", "relative_error_total"} <= set(metrics[scope][source])
    # the stain-derived reference counts close to the truth; it is the floor of the model's error
    assert metrics["per_image"]["stains"]["relative_error_total"] < 0.1


def test_held_out_wells_and_hdf5_probabilities(tiny_ckpt, plate_path, tmp_path):
    out = tmp_path / "pred"
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={out}",
                   "wells=held_out", "save=hdf5", "overlays=false", "progress=false")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "counts.csv", newline="") as f:
        wells = {r["well"] for r in csv.DictReader(f)}
    with h5py.File(next(out.glob("*_probs.h5"))) as f:
        assert f["probs"].shape == (3, 256, 320) and f["classes"].shape == (256, 320)
    assert len(wells) == 1


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
    assert "A1_t001: failed" in failures[0] and "expected 3 channels" in failures[0]
    assert "A1_t002: failed" in failures[1] and "at least one 160x160 tile" in failures[1]
    with open(out / "counts.csv", newline="") as f:
        assert [r["time"] for r in csv.DictReader(f)] == ["0"]


def test_image_smaller_than_a_tile_in_python():
    with pytest.raises(LivedeadError, match="at least one 160x160 tile"):
        predict_image(constant_model(), np.zeros((100, 300)))
