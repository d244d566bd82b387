"""Benchmark: the assay step against a synthetic plate whose answer is known (issue 25).

Makes a plate from a plate map (6 concentrations x 3 replicates + 6 control wells, 12 time points
by default), predicts it with a trained model (``livedead.predict``, ``save=tiff``), runs the
assay step on the prediction folder, and the same analysis on the true counts and nuclei. Prints

    RESULT link_recall=.. death_time_mae=.. ec50_rel_err=.. ec50_in_ci=.. true_counts_ec50_rel_err=..
    tracking_vs_predict=..

``link_recall`` counts a true link found when the track's positions at both time points lie in
that cell's nucleus, a position gap closing filled in (``observed`` False) included;
``observed_link_recall`` (printed too) only links whose two ends were detected.
``death_time_mae`` is the median absolute error (time points) of the time of death over the true
deaths after the first time point. ``tracking_vs_predict`` is the whole assay step's time (reading
the nuclei ``predict`` counted from its ``nuclei.csv``, tracking, statistics, figures) over ``predict``'s
(of the plate's brightfield images alone, as a time-lapse plate is: no stain-derived reference
counts, no scoring against the truth in its time),
measured on ``--large-wells`` wells of ``--large-timepoints`` 2700x3600 images (both grow with the
images, so the ratio is a 24-well plate's of 12 time points, extrapolated per image, the fixed costs
of statistics and figures included as if they were per image; ``--large-wells 0``: on the small plate).
``TRACKERS`` lines compare laptrack and trackpy on the true nuclei with 10% of them dropped at
random (so that gap closing matters) and on the model's detected nuclei.

    python train.py   # the default model
    python benchmarks/assay.py --ckpt outputs/runs/<run>/checkpoints/last.ckpt [--large-wells 2] [--docs]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from livedead.assays.analysis import AssayConfig, AssayResult, run_assay
from livedead.assays.platemap import WellEntry, dose_series, write_plate_map
from livedead.assays.tracking import cell_fates, track_plate
from livedead.assays.truth import score_tracks, true_plate
from livedead.inference.evaluation import read_counts
from livedead.inference.predictor import PredictConfig, run
from livedead.plates.platefile import PlateAttrs, describe_plate, read_plate_image, write_plate
from livedead.plates.synthetic import PlateSpec, generate_plate, well_names

CONCENTRATIONS = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
ROOT = Path(__file__).resolve().parents[1]


def compare_trackers(detections, plate: Path, wells: list[str], last: int, label: str) -> None:
    for tracker in ("laptrack", "trackpy"):
        start = time.perf_counter()
        defaults = AssayConfig()
        tracks = track_plate(detections, defaults.max_distance, defaults.gap_frames, tracker=tracker)
        seconds = time.perf_counter() - start
        fates = cell_fates(tracks, 0, last)
        score = score_tracks(tracks, fates, plate, wells)
        print(f"TRACKERS {label} tracker={tracker} link_recall={score.link_recall:.4f} "
              f"death_time_mae={score.death_time_mae:.2f} deaths_found={score.deaths_found:.3f} "
              f"seconds={seconds:.2f}")  # fmt: skip


def timed_assay(plate: Path, out: Path, ckpt: str, plate_map: Path) -> tuple[float, float, AssayResult]:
    """``predict`` (``save=tiff``) and the assay step on its folder: their seconds and the assay's result."""
    start = time.perf_counter()
    run(PredictConfig(ckpt=ckpt, input=str(plate), output=str(out / "predictions"), save="tiff", overlays=False,
                      progress=False))  # fmt: skip
    predict_s = time.perf_counter() - start
    cfg = AssayConfig(predictions=str(out / "predictions"), output=str(out / "assay"), plate_map=str(plate_map),
                      progress=False)  # fmt: skip
    start = time.perf_counter()
    result = run_assay(cfg, read_counts(out / "predictions"))
    return predict_s, time.perf_counter() - start, result


def brightfield_only(plate: Path, path: Path) -> Path:
    """The plate's brightfield images alone, without truth: what a time-lapse plate to predict is, so that
    ``predict``'s time holds no stain-derived reference counts nor scoring against the truth."""
    info = describe_plate(plate, None)
    w, t, _, h, wd = info.shape
    attrs = PlateAttrs(
        wells=info.attrs.wells, pixel_size_um=info.attrs.pixel_size_um, time_interval_h=info.attrs.time_interval_h
    )
    with write_plate(path, attrs, (w, t, 1, h, wd), np.dtype(np.uint16), ["brightfield"]) as writer:
        for well in range(w):
            for tp in range(t):
                image, _ = read_plate_image(plate, (well, tp))
                writer.write_image(well, tp, image[info.channels.index("brightfield")][None])
    return path


def large_ratio(args: argparse.Namespace, out: Path) -> float:
    """The assay step's time over ``predict``'s on ``--large-wells`` wells of 2700x3600 images (a control
    and the top dose alternating, the control first), and what they extrapolate to for 24 wells."""
    n = args.large_wells
    out.mkdir(parents=True, exist_ok=True)
    t = args.large_timepoints
    spec = PlateSpec(wells=n, timepoints=t, height=2700, width=3600, seed=args.seed, ec50=1.0, hill=1.5,
                     max_hazard=0.2)  # fmt: skip
    entries = [WellEntry(w, "drug 10 uM", "drug", 10.0, "uM", str(i)) if i % 2 else
               WellEntry(w, "control", "vehicle", 0.0, "uM", str(i)) for i, w in enumerate(well_names(n))]  # fmt: skip
    plate_map = write_plate_map(out / "plate_map.csv", entries)
    plate = generate_plate(out / "plate.h5", spec, progress=False, concentrations=[e.concentration for e in entries])
    predict_s, assay_s, result = timed_assay(brightfield_only(plate, out / "brightfield.h5"), out, args.ckpt, plate_map)
    ratio = assay_s / predict_s
    images = n * t
    print(f"LARGE {n} wells x {t} time points of 2700x3600 px, {len(result.fates)} tracks: predict "
          f"{predict_s:.1f} s, assay step {assay_s:.1f} s (linking {result.tracking_s:.1f} s); per image "
          f"{predict_s / images:.1f} s and {assay_s / images:.1f} s, so for 24 wells x 12 time points (extrapolated "
          f"per image) about {288 * predict_s / images / 60:.0f} min and {288 * assay_s / images / 60:.1f} min: "
          f"tracking_vs_predict={ratio:.3f}")  # fmt: skip
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--controls", type=int, default=6)
    parser.add_argument("--timepoints", type=int, default=12)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--large-wells",
        type=int,
        default=2,
        help="wells of 2700x3600 images to time the assay step against predict on (0: the small plate)",
    )
    parser.add_argument("--large-timepoints", type=int, default=12, help="time points of the 2700x3600 wells")
    parser.add_argument("--large-only", action="store_true", help="only the 2700x3600 timing (its LARGE line)")
    parser.add_argument("--out", type=Path, default=None, help="keep the plate, predictions and assay here")
    parser.add_argument("--docs", action="store_true", help="copy conditions.png and dose_response.png into docs/")
    args = parser.parse_args()  # fmt: skip
    out = args.out or Path(tempfile.mkdtemp(prefix="assay-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    large = large_ratio(args, out / "large") if args.large_wells > 0 else None
    if args.large_only:
        return
    n_wells = len(CONCENTRATIONS) * args.replicates + args.controls
    spec = PlateSpec(wells=n_wells, timepoints=args.timepoints, height=args.height, width=args.width, seed=args.seed,
                     ec50=1.0, hill=1.5, max_hazard=0.2)  # fmt: skip
    wells = well_names(n_wells)
    entries = dose_series(wells, CONCENTRATIONS, args.replicates)
    plate_map = write_plate_map(out / "plate_map.csv", entries)
    plate = generate_plate(out / "plate.h5", spec, progress=False, concentrations=[e.concentration for e in entries])
    rows, true_detections, truth = true_plate(plate)
    assert truth.ec50 is not None
    predict_s, assay_s, result = timed_assay(brightfield_only(plate, out / "brightfield.h5"), out, args.ckpt, plate_map)
    score = score_tracks(result.tracks, result.fates, plate, wells)
    (fit,) = result.dose_response

    true_cfg = AssayConfig(predictions=str(out / "predictions"), output=str(out / "assay_truth"),
                           plate_map=str(plate_map), progress=False)  # fmt: skip
    (true_fit,) = run_assay(true_cfg, rows, true_detections).dose_response

    def rel(f) -> float:
        return abs(f.ec50 - truth.ec50) / truth.ec50 if f.status == "ok" else float("nan")

    in_ci = int(fit.status == "ok" and fit.ec50_lower <= truth.ec50 <= fit.ec50_upper)
    filled = int((~result.tracks["observed"]).sum())
    print(f"plate: {n_wells} wells x {args.timepoints} time points of {args.height}x{args.width} px, "
          f"{len(result.fates)} tracks, {filled} positions filled in by gap closing; true EC50 {truth.ec50:.4g}; "
          f"model fit {fit.status} EC50 {fit.ec50} [{fit.ec50_lower}, {fit.ec50_upper}]; true-count fit EC50 "
          f"{true_fit.ec50} [{true_fit.ec50_lower}, {true_fit.ec50_upper}]; predict {predict_s:.1f} s, assay step "
          f"{assay_s:.1f} s (linking {result.tracking_s:.1f} s): {assay_s / predict_s:.3f} of predict; "
          f"links with both ends detected {score.observed_link_recall:.4f}; "
          f"deaths found {score.deaths_found:.3f}")  # fmt: skip
    rng = np.random.default_rng(1)
    dropped = true_detections[rng.random(len(true_detections)) >= 0.1]
    compare_trackers(dropped, plate, wells, args.timepoints - 1, "truth_10pct_missed")
    detected = result.tracks[result.tracks["observed"]]
    model_detections = detected.assign(dead=detected["state"] == "dead")
    compare_trackers(model_detections, plate, wells, args.timepoints - 1, "model")
    if args.docs:
        for name in ("conditions.png", "dose_response.png"):
            shutil.copy(out / "assay" / name, ROOT / "docs" / name)
    ratio = assay_s / predict_s if large is None else large
    print(f"RESULT link_recall={score.link_recall:.4f} death_time_mae={score.death_time_mae:.2f} "
          f"ec50_rel_err={rel(fit):.4f} ec50_in_ci={in_ci} true_counts_ec50_rel_err={rel(true_fit):.4f} "
          f"tracking_vs_predict={ratio:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
