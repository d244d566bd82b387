"""Predict whole wells and count live and dead cells over time.

For each stitched image of a plate (HDF5 plate file or TIFF folder) the transmitted-light
channel is predicted in sliding windows (:mod:`livedead.inference`), the class map is counted
(:mod:`livedead.counting`), and the results are written to the output folder:

* per image: the class map (compressed TIFF) or the class probabilities (HDF5), and an RGB
  overlay PNG (live nuclei green, dead nuclei red);
* ``counts.csv``: one row per well and time point: live, dead, total, dead fraction, and the
  truth (and the count of the stain-derived labels) where the input carries them;
* ``counts_over_time.png`` and ``dead_fraction.png``: the assay's read-out;
* ``metrics.json`` when the input carries truth: count MSE, MAE and relative error, per image
  and per 160-px tile, for the model and for the stain-derived reference.

An image that fails is reported and skipped; the run then exits non-zero at the end.

CLI (Hydra, config ``conf/predict.yaml``)::

    python -m livedead.predict ckpt=outputs/runs/<run>/checkpoints/last.ckpt input=plate.h5 output=predictions
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import h5py
import hydra
import numpy as np
import tifffile
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from livedead.counting import Nuclei, find_nuclei, per_tile_counts
from livedead.errors import LivedeadError, atomic_path, cli_errors, one_line
from livedead.inference import LoadedModel, load_model, predict_image
from livedead.labels import labels_from_stains
from livedead.plates import PlateImage, open_plate
from livedead.synthetic import PlateSpec, simulate_well
from livedead.visualize import to_grey

console = Console()


class Truth:
    """Counts (and, for synthetic plates, exact cell centres) of a plate that carries its truth."""

    def __init__(self, path: Path) -> None:
        self.counts: np.ndarray | None = None
        self.spec: PlateSpec | None = None
        if path.is_file():
            with h5py.File(path, "r") as f:
                if "truth/live_count" in f and "truth/dead_count" in f:
                    self.counts = np.stack([f["truth/live_count"][:], f["truth/dead_count"][:]], axis=-1)
                if "spec" in f.attrs:
                    self.spec = PlateSpec(**OmegaConf.to_container(OmegaConf.create(str(f.attrs["spec"]))))
        self._wells: dict[int, list[Any]] = {}

    def nuclei(self, image: PlateImage) -> Nuclei | None:
        """True nuclei of one image: cell centres re-simulated from the plate's spec, else the truth map's."""
        if self.spec is not None:
            if image.well not in self._wells:
                self._wells = {image.well: list(simulate_well(self.spec, image.well))}
            cells = self._wells[image.well][image.time]
            return Nuclei(np.stack([cells.y, cells.x], axis=1), ~cells.alive)
        return find_nuclei(image.truth) if image.truth is not None else None


def overlay_png(image: np.ndarray, class_map: np.ndarray) -> np.ndarray:
    """The input in grey with live nuclei green and dead nuclei red."""
    rgb = np.repeat(to_grey(image)[..., None], 3, axis=-1)
    for cls, colour in ((1, (0.1, 0.9, 0.1)), (2, (1.0, 0.15, 0.15))):
        m = class_map == cls
        rgb[m] = 0.45 * rgb[m] + 0.55 * np.asarray(colour, np.float32)
    return (rgb * 255).astype(np.uint8)


def save_outputs(
    out: Path, name: str, probs: np.ndarray, class_map: np.ndarray, image: np.ndarray, cfg: DictConfig
) -> None:
    if cfg.save == "tiff":
        with atomic_path(out / f"{name}_classes.tif") as tmp:
            tifffile.imwrite(tmp, class_map, compression="zlib")
    elif cfg.save == "hdf5":
        with atomic_path(out / f"{name}_probs.h5") as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("probs", data=probs.astype(np.float16), compression="gzip", chunks=True)
            f.create_dataset("classes", data=class_map, compression="gzip", chunks=True)
    if cfg.overlays:
        with atomic_path(out / f"{name}_overlay.png") as tmp:
            Image.fromarray(overlay_png(image, class_map)).save(tmp)


def count_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """MSE and MAE of live and dead counts, and the mean relative error of the total."""
    err = pred.astype(np.float64) - true
    total_true = true.sum(axis=1)
    rel = np.abs(err.sum(axis=1)) / np.maximum(total_true, 1)
    return {
        "mse_live": float(np.mean(err[:, 0] ** 2)),
        "mse_dead": float(np.mean(err[:, 1] ** 2)),
        "mse": float(np.mean(err**2)),
        "mae_live": float(np.mean(np.abs(err[:, 0]))),
        "mae_dead": float(np.mean(np.abs(err[:, 1]))),
        "relative_error_total": float(np.mean(rel)),
        "n": len(err),
    }


def plot_counts(rows: list[dict[str, Any]], out: Path) -> None:
    """Live and dead counts over time per well, and the dead fraction over time, one line per well."""
    wells = sorted({r["well"] for r in rows})
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.subplots()
    fig2 = Figure(figsize=(8, 4.5), dpi=110)
    ax2 = fig2.subplots()
    for i, well in enumerate(wells):
        rs = sorted((r for r in rows if r["well"] == well), key=lambda r: r["time"])
        t = [r["time"] for r in rs]
        colour = f"C{i % 10}"
        ax.plot(t, [r["live"] for r in rs], "-o", color=colour, ms=3, label=f"{well} live")
        ax.plot(t, [r["dead"] for r in rs], "--s", color=colour, ms=3, label=f"{well} dead")
        ax2.plot(t, [r["dead_fraction"] for r in rs], "-o", color=colour, ms=3, label=well)
    ax.set(xlabel="time point", ylabel="cells", title="live (solid) and dead (dashed) cells per well")
    ax2.set(xlabel="time point", ylabel="dead fraction", title="dead fraction over time", ylim=(0, 1))
    for a, f, name in ((ax, fig, "counts_over_time.png"), (ax2, fig2, "dead_fraction.png")):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=2)
        f.tight_layout()
        with atomic_path(out / name) as tmp:
            f.savefig(tmp)


def held_out_wells(ckpt: Path) -> list[str]:
    """The wells a checkpoint's tile file held out for validation (``attrs['val_units']``)."""
    info = torch.load(ckpt, map_location="cpu", weights_only=True).get("datamodule_hyper_parameters") or {}
    path = Path(info.get("path", ""))
    if not path.is_file():
        raise LivedeadError(f"{ckpt}: config key 'wells=held_out' needs the training tile file, found none at {path}")
    with h5py.File(path, "r") as f:
        return [str(u).removeprefix("well ") for u in f.attrs.get("val_units", []) if str(u).startswith("well ")]


def run(cfg: DictConfig) -> int:
    """Predict and count every image; returns the number of images that failed."""
    ckpt, source, out = Path(cfg.ckpt), Path(cfg.input), Path(cfg.output)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    model: LoadedModel = load_model(ckpt, device, cfg.tile)
    if model.class_names != list(cfg.classes):
        raise LivedeadError(f"{ckpt}: expected a model of classes {list(cfg.classes)}, found {model.class_names}")
    plate, images = open_plate(source, cfg.channels, cfg.tiff.pattern, cfg.tiff.axes)
    plate.require("brightfield")
    wells = held_out_wells(ckpt) if cfg.wells == "held_out" else (list(cfg.wells) if cfg.wells else plate.wells)
    unknown = sorted(set(wells) - set(plate.wells))
    if unknown:
        raise LivedeadError(
            f"config key 'wells': expected wells of {source} ({', '.join(plate.wells)}), found {unknown}"
        )
    out.mkdir(parents=True, exist_ok=True)
    truth = Truth(source)
    stains = "hoechst" in plate.channels and "draq7" in plate.channels
    rows: list[dict[str, Any]] = []
    tiles: dict[str, list[np.ndarray]] = {"model": [], "stains": [], "truth": []}
    failures = 0
    selected = (im for im in images if plate.wells[im.well] in wells)
    with Progress(console=console, disable=not cfg.progress) as bar:
        task = bar.add_task("predicting", total=len(wells) * plate.timepoints)
        for image in selected:
            name = f"{plate.wells[image.well]}_t{image.time:03d}"
            try:
                if image.error:
                    raise LivedeadError(image.error)
                raw = image.channels["brightfield"]
                probs = predict_image(model, raw, cfg.mode, cfg.overlap, cfg.blending, cfg.window, cfg.margin,
                                      cfg.batch_size, cfg.tta, device)  # fmt: skip
                class_map = probs.argmax(0).astype(np.uint8)
                nuclei = find_nuclei(class_map, **cfg.counting)
                row: dict[str, Any] = {"well": plate.wells[image.well], "time": image.time, **nuclei.counts()}
                tiles["model"].append(per_tile_counts(nuclei, raw.shape, cfg.count_tile))
                true_nuclei = truth.nuclei(image)
                if truth.counts is not None:
                    row["true_live"], row["true_dead"] = (int(v) for v in truth.counts[image.well, image.time])
                if true_nuclei is not None:
                    tiles["truth"].append(per_tile_counts(true_nuclei, raw.shape, cfg.count_tile))
                if stains:
                    stain_map = labels_from_stains(image.channels["hoechst"], image.channels["draq7"], **cfg.stains)
                    stain_nuclei = find_nuclei(stain_map, **cfg.counting)
                    stain_counts = stain_nuclei.counts()
                    row["stain_live"], row["stain_dead"] = stain_counts["live"], stain_counts["dead"]
                    tiles["stains"].append(per_tile_counts(stain_nuclei, raw.shape, cfg.count_tile))
                save_outputs(out, name, probs, class_map, raw, cfg)
                rows.append(row)
            except (LivedeadError, ValueError, RuntimeError) as err:
                failures += 1
                msg = one_line(err) if isinstance(err, LivedeadError) else f"{type(err).__name__}: {err}"
                print(f"livedead.predict: {name}: failed: {msg}", file=sys.stderr)
            bar.advance(task)
    if rows:
        _write_counts(rows, out)
        plot_counts(rows, out)
        if "true_live" in rows[0]:
            _write_metrics(rows, tiles, out)
    console.print(
        f"wrote {len(rows)} images' predictions and counts to {out}" + (f"; {failures} failed" if failures else "")
    )
    return failures


def _write_counts(rows: list[dict[str, Any]], out: Path) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out / "counts.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)


def _write_metrics(rows: list[dict[str, Any]], tiles: dict[str, list[np.ndarray]], out: Path) -> None:
    true = np.array([[r["true_live"], r["true_dead"]] for r in rows])
    metrics: dict[str, Any] = {
        "per_image": {"model": count_errors(np.array([[r["live"], r["dead"]] for r in rows]), true)}
    }
    if "stain_live" in rows[0]:
        metrics["per_image"]["stains"] = count_errors(
            np.array([[r["stain_live"], r["stain_dead"]] for r in rows]), true
        )
    if tiles["truth"]:
        true_tiles = np.concatenate(tiles["truth"])
        metrics["per_tile"] = {
            k: count_errors(np.concatenate(v), true_tiles) for k, v in tiles.items() if v and k != "truth"
        }
        metrics["per_tile"]["tile_px"] = 160
    with atomic_path(out / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2))
    pi = metrics["per_image"]["model"]
    console.print(f"count MSE per image: live {pi['mse_live']:.2f}, dead {pi['mse_dead']:.2f}; "
                  f"relative error {pi['relative_error_total']:.3f}")  # fmt: skip
    if "per_tile" in metrics:
        pt = metrics["per_tile"]["model"]
        console.print(
            f"count MSE per 160-px tile: {pt['mse']:.3f} (live {pt['mse_live']:.3f}, dead {pt['mse_dead']:.3f})"
        )


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
@cli_errors("livedead.predict")
def main(cfg: DictConfig) -> None:
    if run(cfg):
        sys.exit(1)


if __name__ == "__main__":
    main()
