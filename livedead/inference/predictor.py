"""Predict whole wells and count live and dead cells over time: the work behind ``livedead.predict``.

For each stitched image of a plate (HDF5 plate file, OME-Zarr HCS plate or TIFF folder) the transmitted-light
channel is predicted in sliding windows (:mod:`livedead.inference.sliding_window`), the class
map is counted (:mod:`livedead.nuclei.counting`), and the results are written to the output folder.
An image of another pixel size than the checkpoint's is resampled to it for the network and its
probabilities back to the image's grid; it is counted on the finer of the two (:mod:`livedead.inference.rescaling`).
An image of more than ``band_px`` pixels is all that in bands of rows, read lazily where it is a
TIFF: predicted (``predict_bands``), counted (``BandCounter``) and written (:mod:`livedead.inference.outputs`)
a band at a time; any other image is the same code in one band. Written:

* per image (:mod:`livedead.inference.outputs`): the class map (compressed TIFF), or the class
  probabilities with it (OME-TIFF, HDF5), and an RGB overlay PNG (live nuclei green, dead nuclei red);
* ``counts.csv``: one row per well and time point: live, dead, total, dead fraction, and the
  truth (and the count of the stain-derived labels) where the input carries them, and the factor
  the image was rescaled by to the checkpoint's pixel size (``rescale``, 1 for none);
* ``nuclei.csv`` (:mod:`livedead.nuclei.table`), whatever ``save`` is: every nucleus counted, once
  (well, time, label, centroid, area, live or dead), what the assay step tracks;
* ``metrics.json`` when the input carries truth: count MSE, MAE and relative error, per image
  and per ``count_tile``-px tile, for the model and for the stain-derived reference.

With ``save=ome-zarr`` the maps go into an OME-Zarr plate instead (:mod:`livedead.plates.omezarr`):
``<output>/predictions.ome.zarr`` mirroring the input's wells (the probabilities as the image, the
class map and the instances as labels, ``counts.csv`` beside them), or, with ``zarr_into_input``,
labels added to an OME-Zarr input's fields. A Hydra multirun over wells (``wells=A1,A2 -m``) makes
each job a ``part``: its tables go to ``<output>/parts/<job>``, its wells into the shared plate,
and ``livedead.merge`` joins the parts' counts and finishes the plate.

``counts.csv`` and ``metrics.json``, and the scores in them, are :mod:`livedead.inference.evaluation`'s.
``counts.csv`` is written last, after the figures the command draws and ``nuclei.csv``, so that a
table means the run finished.

An image that fails is reported and skipped, and leaves nothing in the results: its row and its
per-tile counts are kept only once every step of it has succeeded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress

from livedead import CLASS_NAMES
from livedead.data.tilefile import read_tile_attrs
from livedead.errors import LivedeadError, one_line
from livedead.files import check_output, remove_stale_temporaries
from livedead.inference.evaluation import SOURCE_PREFIX, write_counts, write_metrics
from livedead.inference.outputs import ImageOutputs
from livedead.inference.rescaling import (
    RESCALE_MODES,
    nuclei_on_image_grid,
    rescale_factor,
    to_image_grid,
    to_model_grid,
)
from livedead.inference.sliding_window import ImageRows, LoadedModel, load_model, predict_bands, predict_image
from livedead.model.checkpoint import CheckpointRecord, read_checkpoint
from livedead.nuclei.counting import (
    MAX_REACH,
    BandCounter,
    Nuclei,
    class_map_of,
    match_nuclei,
    nuclei_from_class_map,
    nuclei_from_instances,
    nuclei_from_probabilities,
    per_tile_counts,
    probability_maps,
    stain_reference,
)
from livedead.nuclei.labels import labels_from_stains
from livedead.nuclei.populations import Populations, fit_populations, parse_populations
from livedead.nuclei.size import NucleusScale, image_sizes
from livedead.nuclei.table import NUCLEI_CSV, NucleiTable
from livedead.plates.omezarr import PlateWriter, WellWriter, finish_plate, unfinish_plate
from livedead.plates.platefile import PLATE_CHANNELS, PlateTruth
from livedead.plates.sources import Plate, PlateImage, TiffLayout, open_plate

SAVE_MODES = ("tiff", "ome-tiff", "ome-zarr", "hdf5", "none")
"""What ``predict`` writes per image besides the overlay (config key ``save``)."""


@dataclass(kw_only=True)
class PredictConfig:
    """Settings of one prediction run; ``conf/predict.yaml`` takes its keys and defaults from here."""

    ckpt: str
    """A checkpoint of a training run (``outputs/runs/<run>/checkpoints/last.ckpt``)."""
    input: str
    """A raw plate: an HDF5 plate file, an OME-Zarr HCS plate (``plate.zarr``) or a folder of stitched TIFFs."""
    output: str
    """The folder to write into."""
    wells: Any = None
    """None: every well; a list (``[W03, W04]``), or one well (a multirun's ``wells=A1,A2``: one job a well);
    or ``held_out``: the training split's validation wells."""
    classes: list[str] = field(default_factory=lambda: list(CLASS_NAMES))
    """The checkpoint must have been trained on these."""
    channels: list[str] = field(default_factory=lambda: list(PLATE_CHANNELS))
    tiff: TiffLayout = field(default_factory=TiffLayout)
    tile: int = 160
    """The training tile size."""
    mode: str = "blend"
    """``blend``: overlapping tiles, blended; ``crop``: large windows, margins cropped off."""
    overlap: float = 0.5
    blending: str = "gaussian"
    """``blend`` mode: ``gaussian`` (as nnU-Net) or ``constant``."""
    window: int | None = None
    """None: the tile (blend) or 3 tiles (crop); a multiple of the network's size divisor."""
    margin: int = 32
    """``crop`` mode: pixels cut off each window edge."""
    batch_size: int = 16
    """Tile-sized windows per forward pass (fewer large windows)."""
    tta: bool = False
    """Average over flips."""
    device: str = "auto"
    save: str = "tiff"
    """``tiff``: class map (zlib TIFF); ``ome-tiff``: probabilities, and the class map with the counted
    instances, as OME-TIFF with channel names and pixel size (napari and Fiji open them at scale);
    ``ome-zarr``: an OME-Zarr plate of the probabilities with the class map and instances as labels;
    ``hdf5``: probabilities and classes; ``none``."""
    zarr_version: str = "auto"
    """``save=ome-zarr``: the NGFF version written, ``0.4`` or ``0.5``; ``auto``: the input plate's, else 0.5."""
    zarr_into_input: bool = False
    """``save=ome-zarr``: add the labels to the OME-Zarr input's fields instead of writing a new plate
    (labels of livedead's names already there are refused, never replaced)."""
    part: str | None = None
    """A multirun job's name (set by the command): tables to ``<output>/parts/<part>``, wells into the
    shared plate, which ``livedead.merge`` finishes."""
    overlays: bool = True
    progress: bool = True
    count_tile: int = 160
    """The grid of the per-tile count evaluation."""
    counting: dict[str, Any] = field(default_factory=dict)
    """:func:`livedead.nuclei.counting.find_nuclei` options (split_depth, min_area, split)."""
    stains: dict[str, Any] = field(default_factory=dict)
    """:func:`livedead.nuclei.labels.segment_channel` options, for the stain-derived reference counts."""
    diameter: Any = "auto"
    """The nucleus diameter in px, or ``auto``: measured in each image (in the predicted nuclei, and
    in the Hoechst channel for the stain-derived reference)."""
    pixel_size_um: float | None = None
    """The pixel size, if the plate does not record it (with ``nucleus_diameter_um``, and for ``rescale``)."""
    nucleus_diameter_um: float | None = None
    """The nucleus diameter in micrometres: with a pixel size, it fixes ``diameter``."""
    rescale: str = "auto"
    """``auto``: images of another pixel size than the checkpoint's are resampled to it for the network,
    and the probabilities back (:mod:`livedead.inference.rescaling`); ``off``: predicted as they are."""
    populations: Any = field(default_factory=dict)
    """Counts per population of nucleus size (:mod:`livedead.nuclei.populations`): ``{}`` none; ``auto``, a
    mixture fitted to the plate's log diameters, reported where clearly bimodal; or ranges in µm,
    ``+populations.target.diameter_um=[10,30] +populations.effector.diameter_um=[3,10]``."""
    band_px: int | None = 16_000_000
    """An image of more pixels than this is read lazily (TIFFs: a band of rows at a time), predicted,
    counted and written in bands of ``band_px // width`` rows, so memory is bounded by a band, not the
    image (a 2700x3600 well is one band); null: every image whole."""

    def validate(self) -> None:
        """The settings that would otherwise fail on every image, each with numpy's words instead of the key."""
        if self.save not in SAVE_MODES:
            raise LivedeadError(f"config key 'save': expected one of {SAVE_MODES}, found {self.save!r}")
        if self.zarr_version not in ("auto", "0.4", "0.5"):
            raise LivedeadError(f"config key 'zarr_version': expected auto, 0.4 or 0.5, found {self.zarr_version!r}")
        if self.rescale not in RESCALE_MODES:
            raise LivedeadError(f"config key 'rescale': expected one of {RESCALE_MODES}, found {self.rescale!r}")
        if self.band_px is not None and self.band_px < 1:
            raise LivedeadError(f"config key 'band_px': expected >= 1 or null, found {self.band_px}")
        for key in ("tile", "count_tile", "batch_size"):
            if getattr(self, key) < 1:
                raise LivedeadError(f"config key '{key}': expected >= 1, found {getattr(self, key)}")
        if not 0.0 <= self.overlap < 1.0:
            raise LivedeadError(f"config key 'overlap': expected in [0, 1), found {self.overlap}")


console = Console()


def true_nuclei(image: PlateImage, instances: np.ndarray | None) -> Nuclei | None:
    """True nuclei of one image: from the plate's instance masks, else counted in its truth class map."""
    if instances is not None:
        return nuclei_from_instances(instances, image.truth == 2 if image.truth is not None else None)
    return nuclei_from_class_map(image.truth) if image.truth is not None else None


def held_out_wells(ckpt: Path) -> list[str]:
    """The wells the training data of a checkpoint held out for validation, as the checkpoint records them;
    for a checkpoint written before it recorded them, as its training tile file says."""
    checkpoint = read_checkpoint(ckpt, "ckpt")
    record = CheckpointRecord.of(checkpoint)
    if record is not None and record.held_out_wells is not None:
        return record.held_out_wells
    path = Path((checkpoint.get("datamodule_hyper_parameters") or {}).get("path", ""))
    if not path.is_file():
        raise LivedeadError(
            f"{ckpt}: config key 'wells=held_out': this checkpoint predates recording its held-out wells, and "
            f"its training tile file is not at {path}"
        )
    attrs = read_tile_attrs(path)
    return attrs.held_out_wells if attrs is not None else []


def choose_device(setting: str) -> str:
    """The device of config key ``device`` (``auto``: CUDA where there is one), or one line if this machine lacks it."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(setting)
    except RuntimeError:
        expected = "auto, cpu, cuda, cuda:N or mps"
        raise LivedeadError(f"config key 'device': expected {expected}, found {setting!r}") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise LivedeadError(
            f"config key 'device': expected a device of this machine, found {setting!r} "
            f"({torch.cuda.device_count()} CUDA devices here; device=auto uses what there is)"
        )
    return setting


def run(
    cfg: PredictConfig, figures: Callable[[list[dict[str, Any]], Path], None] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Predict and count every image; returns the rows of ``counts.csv`` and the number of images that failed.

    ``figures`` (the command's plots of the rows) are drawn into the output folder before the
    table, which is written last: a ``counts.csv`` only stands beside a whole run's outputs.
    """
    ckpt, source, out = Path(cfg.ckpt), Path(cfg.input), Path(cfg.output)
    if cfg.part is not None:
        out = out / "parts" / cfg.part
    cfg.validate()
    populations = parse_populations(cfg.populations)
    device = choose_device(cfg.device)
    model: LoadedModel = load_model(ckpt, device, cfg.tile)
    if model.class_names != list(cfg.classes):
        raise LivedeadError(f"{ckpt}: expected a model of classes {list(cfg.classes)}, found {model.class_names}")
    plate, images = open_plate(source, cfg.channels, cfg.tiff, lazy_px=cfg.band_px)
    plate.require("brightfield")
    if cfg.wells == "held_out":
        wells = held_out_wells(ckpt)
    else:
        wells = [cfg.wells] if isinstance(cfg.wells, str) else (list(cfg.wells) if cfg.wells else plate.wells)
    unknown = sorted(set(wells) - set(plate.wells))
    if unknown:
        raise LivedeadError(
            f"config key 'wells': expected wells of {source} ({', '.join(plate.wells)}), found {unknown}"
        )
    diameter = NucleusScale(cfg.diameter, cfg.pixel_size_um, cfg.nucleus_diameter_um).fixed(plate.pixel_size_um)
    pixel_size = cfg.pixel_size_um or plate.pixel_size_um
    if isinstance(populations, Populations) and pixel_size is None:
        raise LivedeadError(
            f"config key 'populations': expected the pixel size of {source} for diameters in µm, found none: "
            "give config key 'pixel_size_um' (µm/px), or 'populations=auto'"
        )
    in_bands = band_rows(plate.shape, cfg.band_px) < plate.shape[0]
    for what, needed in (("save=ome-zarr", cfg.save == "ome-zarr"), ("populations", bool(cfg.populations))):
        if needed and in_bands:  # before any work; a folder of mixed sizes is caught image by image
            raise LivedeadError(_ONE_BAND.format(what=what, shape=plate.shape))
    factor = rescale_factor(cfg.rescale, pixel_size, model.pixel_size_um, f"{ckpt}, {source}")
    if factor != 1.0:
        console.print(f"images of {pixel_size:g} µm/px rescaled by {factor:.4g} to the model's {model.pixel_size_um:g}")
    if model.foreground_threshold is None:
        console.print(f"{ckpt}: no calibrated foreground threshold (an older checkpoint): counting the argmax")
    check_output(out, [source, ckpt], folder=True)
    zarr_out = _plate_writer(cfg, plate, source, wells)
    out.mkdir(exist_ok=True)
    remove_stale_temporaries(out)  # what a killed run was writing
    for table in ("counts.csv", NUCLEI_CSV):  # an earlier run's tables must not stand beside this run's images
        (out / table).unlink(missing_ok=True)
    truth = plate.truth()
    stains = "hoechst" in plate.channels and "draq7" in plate.channels
    rows: list[dict[str, Any]] = []
    counted = NucleiTable()
    tiles: dict[str, list[np.ndarray]] = {"model": [], "stains": [], "truth": []}
    detection: dict[str, list[dict[str, float]]] = {"model": [], "stains": []}
    sizes: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
    failures = 0
    well: WellWriter | None = None
    current = None  # the well being written
    whole: set[str] = set()  # the wells of the OME-Zarr output none of whose images failed
    selected = (im for im in images if plate.wells[im.well] in wells)
    with Progress(console=console, disable=not cfg.progress) as bar:
        task = bar.add_task("predicting", total=len(wells) * plate.timepoints)
        for image in selected:
            name = f"{plate.wells[image.well]}_t{image.time:03d}"
            if zarr_out is not None and current != plate.wells[image.well]:
                _close(well, whole)
                well, current = None, plate.wells[image.well]
                whole.add(current)
            try:
                if image.error:
                    raise LivedeadError(image.error)
                raw = image.channels["brightfield"]
                with ImageOutputs(out, name, raw, cfg.save, cfg.overlays, cfg.classes, plate.pixel_size_um,
                                  band_rows(raw.shape, cfg.band_px)) as outputs:  # fmt: skip
                    result = _predict_one(model, image, plate.wells, truth, stains, diameter, factor, cfg, device,
                                          outputs)  # fmt: skip
                if plate.time_interval_h is not None:
                    result.row["time_h"] = round(image.time * plate.time_interval_h, 4)
                if zarr_out is not None:
                    if result.probs is None or result.nuclei.instances is None:
                        raise LivedeadError(_ONE_BAND.format(what="save=ome-zarr", shape=raw.shape))
                    if well is None:
                        times = sum(1 for w, _ in plate.index if w == image.well)
                        well = zarr_out.well(plate.wells[image.well], times, raw.shape, plate.pixel_size_um,
                                             plate.time_interval_h)  # fmt: skip
                    nuclei = result.nuclei
                    well.write(image.time, result.probs, class_map_of(nuclei), nuclei.instances, nuclei.dead)
            except (LivedeadError, ValueError, RuntimeError) as err:
                failures += 1
                whole.discard(plate.wells[image.well])
                msg = one_line(err) if isinstance(err, LivedeadError) else f"{type(err).__name__}: {err}"
                print(f"livedead.predict: {name}: failed: {msg}", file=sys.stderr)
            else:  # only a whole image's results are kept, so rows and per-tile counts stay aligned
                rows.append(result.row)
                counted.add(result.row["well"], image.time, result.nuclei)
                for k, v in result.tiles.items():
                    tiles[k].append(v)
                for k, v in result.detection.items():
                    detection[k].append(v)
                sizes.append(result.sizes)
            bar.advance(task)
    _close(well, whole)
    if rows:
        found = count_populations(populations, rows, sizes, pixel_size)
        if figures is not None:
            figures(rows, out)
        if "true_live" in rows[0] or found is not None:
            write_metrics(rows, tiles, detection, out, cfg.count_tile, console, found)
        counted.write(out)
        write_counts(rows, out)
        if zarr_out is not None and zarr_out.into_input is None and cfg.part is None:
            done = [w for w in wells if w in whole]
            if done:  # a plate of the wells none of whose images failed
                finish_plate(zarr_out.path, done, zarr_out.version, (out / "counts.csv").read_text())
    if zarr_out is not None and set(wells) - whole:
        console.print(f"{zarr_out.path}: wells {sorted(set(wells) - whole)} left out: an image of each failed")
    console.print(
        f"wrote {len(rows)} images' predictions and counts to {out}" + (f"; {failures} failed" if failures else "")
    )
    return rows, failures


def _plate_writer(cfg: PredictConfig, plate: Plate, source: Path, wells: list[str]) -> PlateWriter | None:
    """``save=ome-zarr``: the writer of the output plate (a new one, its ``plate`` metadata taken off
    until the run is whole), or of labels into the input's fields; None for other ``save`` modes."""
    if cfg.save != "ome-zarr":
        return None
    zarr_input = plate.reader.zarr if plate.reader is not None else None
    version = cfg.zarr_version if cfg.zarr_version != "auto" else (zarr_input.version if zarr_input else "0.5")
    if cfg.zarr_into_input:
        if zarr_input is None:
            raise LivedeadError(f"config key 'zarr_into_input': expected an OME-Zarr plate as input, found {source}")
        writer = PlateWriter(source, zarr_input.version, zarr_input, cfg.classes)
        writer.check_free(wells)
        return writer
    path = check_output(Path(cfg.output) / "predictions.ome.zarr", [source, cfg.ckpt], key="output", folder=True)
    writer = PlateWriter(path, version, classes=cfg.classes)
    path.mkdir(exist_ok=True)
    unfinish_plate(path)
    return writer


def _close(well: WellWriter | None, whole: set[str]) -> None:
    """Finish a well of the OME-Zarr output, if none of its images failed: only then is it a well of the plate."""
    if well is not None and well.name in whole:
        well.close()


def count_populations(
    setting: Populations | str | None,
    rows: list[dict[str, Any]],
    sizes: list[dict[str, tuple[np.ndarray, np.ndarray]]],
    pixel_size: float | None,
) -> Populations | None:
    """Each row's live and dead nuclei per population, from every source's (diameters px, dead) of its image;
    ``auto`` is fitted to the model's nuclei of the whole plate. None where no populations are reported."""
    if setting is None:
        return None
    scale, unit = (pixel_size, "um") if pixel_size else (1.0, "px")
    if setting == "auto":
        pooled = np.concatenate([s["model"][0] for s in sizes]) if sizes else np.zeros(0)
        populations = fit_populations(pooled * scale, unit)
        fit = populations.fit or {}
        verdict = f"{len(populations.ranges)} populations" if populations.ranges else "one population"
        console.print(
            f"populations=auto: {verdict} in {fit.get('nuclei', 0)} nuclei "
            f"(Ashman's D {fit.get('ashman_d', float('nan')):.2f}, BIC one {fit.get('bic_one', float('nan')):.1f}, "
            f"two {fit.get('bic_two', float('nan')):.1f})"
            + (
                f", split at {', '.join(f'{c:.3g}' for c in fit['split_diameter'])} {unit}"
                if fit.get("split_diameter")
                else ""
            )
        )
    else:
        assert isinstance(setting, Populations)
        populations = setting
    for row, by_source in zip(rows, sizes, strict=True):
        for source, (diameters, dead) in by_source.items():
            row.update(populations.counts(diameters * scale, dead, SOURCE_PREFIX[source]))
    return populations


def band_rows(shape: tuple[int, int], band_px: int | None) -> int:
    """The rows of a band of an image: all of them for an image of at most ``band_px`` pixels."""
    h, w = shape
    return h if band_px is None or h * w <= band_px else max(1, band_px // w)


_ONE_BAND = (
    "{what}: an image of {shape[0]}x{shape[1]} px is predicted in bands (config key 'band_px'), and {what} "
    "needs the whole image's maps: expected band_px=null or larger than its pixels"
)
"""The OME-Zarr output and the populations are made from a whole image's maps (its instance labels)."""


@dataclass
class ImageResult:
    """What one image gives: its row of ``counts.csv``, per-tile counts and detection scores by source, and,
    for an image of one band, its maps and each source's nucleus diameters (px) and dead flags, which
    populations are counted from."""

    row: dict[str, Any]
    tiles: dict[str, np.ndarray]
    detection: dict[str, dict[str, float]]
    probs: np.ndarray | None
    """The class probabilities of an image predicted in one band (None: in bands, written out as they came)."""
    nuclei: Nuclei
    sizes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def _sizes(nuclei: Nuclei) -> tuple[np.ndarray, np.ndarray]:
    """Each nucleus's equivalent diameter (px, from its area: a nucleus counted on a finer grid may have no
    label on the image's) and its dead flag."""
    assert nuclei.areas is not None
    return np.sqrt(4 * nuclei.areas / np.pi), nuclei.dead


def _probability_bands(
    model: LoadedModel, raw: ImageRows, rows: int, factor: float, cfg: PredictConfig, device: str
) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
    """The class probabilities of an image on its own grid, a band of rows at a time, and on the network's
    where that is the finer (None else); an image rescaled for the network is one band."""
    options = (cfg.mode, cfg.overlap, cfg.blending, cfg.window, cfg.margin, cfg.batch_size, cfg.tta, device)
    if factor == 1.0:
        for start, probs in predict_bands(model, raw, rows, *options):
            yield start, probs, None
        return
    if rows < raw.shape[0]:
        raise LivedeadError(
            f"config key 'rescale': an image of {raw.shape[0]}x{raw.shape[1]} px is predicted in bands (config key "
            f"'band_px'), and bands are not rescaled: expected rescale=off, or a pixel size the checkpoint's"
        )
    probs = predict_image(model, to_model_grid(np.asarray(raw), factor), *options)
    yield 0, to_image_grid(probs, raw.shape), probs if factor > 1.0 else None


def _count_finer(
    probs: np.ndarray, shape: tuple[int, int], diameter: float | None, factor: float, threshold: float | None,
    counting: dict[str, Any],
) -> Nuclei:  # fmt: skip
    """The nuclei of probabilities on the network's grid, finer than the image's (``shape``) by ``factor``,
    counted there and mapped to the image's (:func:`~livedead.inference.rescaling.nuclei_on_image_grid`)."""
    fine = nuclei_from_probabilities(probs, threshold, diameter=diameter * factor if diameter else None, **counting)
    return nuclei_on_image_grid(fine, shape)


def _predict_one(
    model: LoadedModel,
    image: PlateImage,
    well_names: list[str],
    truth: PlateTruth,
    stains: bool,
    diameter: float | None,
    factor: float,
    cfg: PredictConfig,
    device: str,
    outputs: ImageOutputs,
) -> ImageResult:
    """One image's counts, its maps handed to ``outputs`` band by band; the network sees it rescaled by
    ``factor``, and its nuclei counted on the finer of the two grids."""
    raw = image.channels["brightfield"]
    counter = BandCounter(raw.shape, diameter, **cfg.counting)
    rows = band_rows(raw.shape, cfg.band_px)
    one_band = rows >= raw.shape[0]
    if cfg.populations and not one_band:
        raise LivedeadError(_ONE_BAND.format(what="populations", shape=raw.shape))
    kept = None  # an image of one band keeps its maps (OME-Zarr output, populations)
    labels: list[np.ndarray] = []
    finer: Nuclei | None = None
    for start, probs, fine in _probability_bands(model, raw, rows, factor, cfg, device):
        outputs.probs(start, probs)
        kept = probs if one_band else None
        if fine is not None:  # the network's grid is the finer: its nuclei are counted there
            finer = _count_finer(fine, raw.shape, diameter, factor, model.foreground_threshold, cfg.counting)
            continue
        for part in counter.add(start, *probability_maps(probs, model.foreground_threshold)):
            outputs.labels(*part)
            if one_band:  # bands are written and let go: only a whole image's labels are kept
                labels.append(part[1])
    if finer is not None:
        nuclei = finer
        outputs.labels(0, finer.instances, class_map_of(finer))
    else:
        for part in counter.finish():
            outputs.labels(*part)
            if one_band:
                labels.append(part[1])
        if counter.cut:
            console.print(
                f"{well_names[image.well]}_t{image.time:03d}: {counter.cut} nuclei of foreground that reaches over "
                f"{MAX_REACH} bands of rows: counted only that far (a larger config key 'band_px' reaches further)"
            )
        nuclei = counter.nuclei()
        if one_band:  # the instance labels, numbered as the nuclei are (1..n)
            nuclei.instances = np.concatenate(labels) if labels else np.zeros(raw.shape, np.int32)
    row: dict[str, Any] = {"well": well_names[image.well], "time": image.time, **nuclei.counts()}
    row["diameter_px"] = round(nuclei.diameter, 2) if nuclei.diameter else None
    row["rescale"] = round(factor, 4)
    tiles = {"model": per_tile_counts(nuclei, raw.shape, cfg.count_tile)}
    diameters = {"model": _sizes(nuclei)} if one_band else {}
    detection: dict[str, dict[str, float]] = {}
    if truth.counts is not None:
        row["true_live"], row["true_dead"] = (int(v) for v in truth.counts[image.well, image.time])
    true_instances = truth.instances(image.well, image.time)
    found_true = true_nuclei(image, true_instances)
    if found_true is not None:
        tiles["truth"] = per_tile_counts(found_true, raw.shape, cfg.count_tile)
        diameters["truth"] = _sizes(found_true)
    if true_instances is not None:
        detection["model"] = match_nuclei(nuclei, true_instances)
    if stains and not all(isinstance(image.channels[c], np.ndarray) for c in ("hoechst", "draq7")):
        console.print(f"{row['well']}_t{image.time:03d}: read in bands: no stain-derived reference counts")
    elif stains:
        hoechst, draq7 = image.channels["hoechst"], image.channels["draq7"]
        sizes = image_sizes(hoechst, draq7, diameter)
        stain_diameter = sizes.typical if sizes is not None else None
        stain_map = labels_from_stains(hoechst, draq7, sizes=sizes, **cfg.stains)
        stain_nuclei = stain_reference(stain_map, sizes, **cfg.counting)
        stain_counts = stain_nuclei.counts()
        row["stain_live"], row["stain_dead"] = stain_counts["live"], stain_counts["dead"]
        row["stain_diameter_px"] = round(stain_diameter, 2) if stain_diameter else None
        tiles["stains"] = per_tile_counts(stain_nuclei, raw.shape, cfg.count_tile)
        diameters["stains"] = _sizes(stain_nuclei)
        if true_instances is not None:
            detection["stains"] = match_nuclei(stain_nuclei, true_instances)
    return ImageResult(row, tiles, detection, kept, nuclei, diameters)
