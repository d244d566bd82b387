"""Benchmark: the assay step against a synthetic plate whose answer is known (issue 25).

Makes a plate from a plate map (6 concentrations x 3 replicates + 6 control wells, 12 time points
by default), predicts it with a trained model (``livedead.predict``, ``save=tiff``), runs the
assay step on the prediction folder, and the same analysis on the true counts and nuclei. Prints

    RESULT link_recall=.. death_time_mae=.. ec50_rel_err=.. ec50_in_ci=.. true_counts_ec50_rel_err=..
    tracking_vs_predict=..

``death_time_mae`` is the median absolute error (time points) of the time of death over the true
deaths after the first time point; ``tracking_vs_predict`` is the whole assay step's time (reading
the saved class maps, re-deriving the nuclei, tracking, statistics, figures) over ``predict``'s.
``TRACKERS`` lines compare laptrack and trackpy on the true nuclei with 10% of them dropped at
random (so that gap closing matters) and on the model's nuclei.

    python train.py   # the default model
    python benchmarks/assay.py --ckpt outputs/runs/<run>/checkpoints/last.ckpt [--height 320 --width 400] [--docs]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from livedead.assays.analysis import AssayConfig, run_assay
from livedead.assays.platemap import dose_series, write_plate_map
from livedead.assays.tracking import cell_fates, track_plate
from livedead.assays.truth import score_tracks, true_plate
from livedead.inference.evaluation import read_counts
from livedead.inference.predictor import PredictConfig, run
from livedead.plates.synthetic import PlateSpec, generate_plate, well_names

CONCENTRATIONS = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
ROOT = Path(__file__).resolve().parents[1]


def compare_trackers(detections, plate: Path, wells: list[str], last: int, label: str) -> None:
    for tracker in ("laptrack", "trackpy"):
        start = time.perf_counter()
        tracks = track_plate(detections, max_distance=8.0, gap_frames=1, tracker=tracker)
        seconds = time.perf_counter() - start
        fates = cell_fates(tracks, 0, last)
        score = score_tracks(tracks, fates, plate, wells)
        print(f"TRACKERS {label} tracker={tracker} link_recall={score.link_recall:.4f} "
              f"death_time_mae={score.death_time_mae:.2f} deaths_found={score.deaths_found:.3f} "
              f"seconds={seconds:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--replicates", type=int, default=3)
    parser.add_argument("--controls", type=int, default=6)
    parser.add_argument("--timepoints", type=int, default=12)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the plate, predictions and assay here")
    parser.add_argument("--docs", action="store_true", help="copy conditions.png and dose_response.png into docs/")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="assay-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    n_wells = len(CONCENTRATIONS) * args.replicates + args.controls
    spec = PlateSpec(wells=n_wells, timepoints=args.timepoints, height=args.height, width=args.width, seed=args.seed,
                     ec50=1.0, hill=1.5, max_hazard=0.2)  # fmt: skip
    wells = well_names(n_wells)
    entries = dose_series(wells, CONCENTRATIONS, args.replicates)
    plate_map = write_plate_map(out / "plate_map.csv", entries)
    plate = generate_plate(out / "plate.h5", spec, progress=False, concentrations=[e.concentration for e in entries])
    rows, true_detections, truth = true_plate(plate)
    assert truth.ec50 is not None

    start = time.perf_counter()
    run(PredictConfig(ckpt=args.ckpt, input=str(plate), output=str(out / "predictions"), save="tiff",
                      overlays=False, progress=False))  # fmt: skip
    predict_s = time.perf_counter() - start

    cfg = AssayConfig(predictions=str(out / "predictions"), output=str(out / "assay"), plate_map=str(plate_map),
                      progress=False)  # fmt: skip
    start = time.perf_counter()
    result = run_assay(cfg, read_counts(out / "predictions"))
    assay_s = time.perf_counter() - start
    score = score_tracks(result.tracks, result.fates, plate, wells)
    (fit,) = result.dose_response

    true_cfg = AssayConfig(predictions=str(out / "predictions"), output=str(out / "assay_truth"),
                           plate_map=str(plate_map), progress=False)  # fmt: skip
    (true_fit,) = run_assay(true_cfg, rows, true_detections).dose_response

    def rel(f) -> float:
        return abs(f.ec50 - truth.ec50) / truth.ec50 if f.status == "ok" else float("nan")

    in_ci = int(fit.status == "ok" and fit.ec50_lower <= truth.ec50 <= fit.ec50_upper)
    print(f"plate: {n_wells} wells x {args.timepoints} time points of {args.height}x{args.width} px, "
          f"{len(result.fates)} tracks; true EC50 {truth.ec50:.4g}; model fit {fit.status} "
          f"EC50 {fit.ec50} [{fit.ec50_lower}, {fit.ec50_upper}]; true-count fit EC50 {true_fit.ec50} "
          f"[{true_fit.ec50_lower}, {true_fit.ec50_upper}]; predict {predict_s:.1f} s, assay step {assay_s:.1f} s "
          f"(linking {result.tracking_s:.1f} s); deaths found {score.deaths_found:.3f}")  # fmt: skip
    rng = np.random.default_rng(1)
    dropped = true_detections[rng.random(len(true_detections)) >= 0.1]
    compare_trackers(dropped, plate, wells, args.timepoints - 1, "truth_10pct_missed")
    model_detections = result.tracks.assign(dead=result.tracks["state"] == "dead")
    compare_trackers(model_detections, plate, wells, args.timepoints - 1, "model")
    if args.docs:
        for name in ("conditions.png", "dose_response.png"):
            shutil.copy(out / "assay" / name, ROOT / "docs" / name)
    print(f"RESULT link_recall={score.link_recall:.4f} death_time_mae={score.death_time_mae:.2f} "
          f"ec50_rel_err={rel(fit):.4f} ec50_in_ci={in_ci} true_counts_ec50_rel_err={rel(true_fit):.4f} "
          f"tracking_vs_predict={assay_s / predict_s:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
