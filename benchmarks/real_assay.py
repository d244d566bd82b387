"""The U-Net on real brightfield: trained on some experiment days of a killing assay, scored on others.

The MCF-7 / NK killing assay (``../shared/real/mcf7-killing``, CC-BY-NC-4.0, used by path, never
copied; 62 fields of brightfield, Hoechst and propidium iodide, with the MCF-7 nuclei drawn by
hand) through the project's own commands, as a user runs them:

1. the fields are split by experiment day (``fields.csv``'s ``group``), never by field: the test
   days are held out of everything, the validation days choose the checkpoint and calibrate the
   counting threshold (``prepare val_wells=``), the rest train; each side is a folder of links to
   the fields, in the TIFF-folder layout;
2. ``python -m livedead.prepare`` labels the training and validation fields from their stains;
3. ``python train.py experiment=real data=hdf5 data.path=...`` trains (extra Hydra overrides after ``--``);
4. ``python -m livedead.predict save=ome-tiff`` predicts the test days with the best checkpoint;
5. the predictions are scored here: PR-AUC per class against the stain-derived labels of the
   test fields (nucleus = any foreground, DAPI, Cy5; pooled over their pixels, as
   ``val/pr_auc`` is), the median per-field relative error of the total count and the mean
   absolute error of the dead fraction against the stain-derived counts (``counts.csv``), and
   the recall and split fraction of the hand-drawn MCF-7 nuclei (a nucleus is found when a counted
   centroid lies in it, split when two do; ``truth_coverage``), beside the same for the stain labels
   themselves, which bound what a model trained on them can reach.

Training runs on the fields shrunk ``--downscale`` (2) times, which ``predict`` undoes by
rescaling the full-size test fields to the checkpoint's pixel size: ``experiment=real``'s 120 epochs
then take about 17.5 minutes of a 2-core CPU (12 epochs: 2.2).

``python benchmarks/real_assay.py [--assay PATH] [--work DIR] [--test-days a,b] [--val-days c,d]
[--train-fraction F] [--downscale F] [-- key=value ...]``; prints one RESULT line.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from rich.console import Console
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livedead.inference.evaluation import read_counts  # noqa: E402
from livedead.inference.rescaling import to_model_grid  # noqa: E402
from livedead.model.metrics import BinnedPRCurve  # noqa: E402
from livedead.nuclei.counting import nuclei_from_instances, stain_reference, truth_coverage  # noqa: E402
from livedead.nuclei.labels import labels_from_stains  # noqa: E402
from livedead.nuclei.size import image_sizes  # noqa: E402

ASSAY = ROOT.parent / "shared" / "real" / "mcf7-killing"
TEST_DAYS = "401,feb,june25"
"""Held out of everything: 18 fields of three days, 2 to 8 fields each, 642 hand-drawn MCF-7 nuclei."""
VAL_DAYS = "610,december"
"""Validation: 5 fields of two other days (checkpoint choice, the counting threshold)."""
PIXEL_UM = 0.3112
"""The assay's pixel size (``fields.csv``); predict rescales the test fields to the checkpoint's."""
console = Console()


def run(command: list[str]) -> None:
    """One of the project's commands, in this terminal (its own progress bars); a failure stops the benchmark."""
    console.print(f"[bold]$ {' '.join(command)}")
    if subprocess.run(command, cwd=ROOT).returncode:
        sys.exit(f"benchmarks/real_assay.py: {' '.join(command[1:3])} failed; its message is above")


def link_fields(folder: Path, ids: list[str], assay: Path) -> None:
    """A TIFF-folder plate of links to the assay's fields (nothing copied)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in ids:
        (folder / f"{i}_t000.tif").symlink_to((assay / "plate" / f"{i}_t000.tif").resolve())


def downscaled_fields(folder: Path, ids: list[str], assay: Path, factor: float) -> None:
    """A TIFF-folder plate of the fields shrunk ``factor`` times (every channel, as ``predict`` resamples), uint16."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in ids:
        image = tifffile.imread(assay / "plate" / f"{i}_t000.tif")
        small = np.stack([to_model_grid(c, 1 / factor) for c in image])
        tifffile.imwrite(
            folder / f"{i}_t000.tif", np.clip(np.round(small), 0, 65535).astype(np.uint16), compression="zlib"
        )


def split_fields(rows: list[dict[str, str]], test_days: set[str], val_days: set[str], fraction: float, seed: int):
    """The field ids of each side, by day; ``fraction`` of the training fields (seeded), for a learning curve."""
    days = {r["group"] for r in rows}
    unknown = sorted((test_days | val_days) - days)
    if unknown or test_days & val_days or len(test_days) < 2:
        sys.exit(
            f"benchmarks/real_assay.py: --test-days/--val-days: expected two or more test days and other "
            f"validation days, of {sorted(days)}; found test {sorted(test_days)}, validation {sorted(val_days)}"
        )
    test = [r["id"] for r in rows if r["group"] in test_days]
    val = [r["id"] for r in rows if r["group"] in val_days]
    train = [r["id"] for r in rows if r["group"] not in test_days | val_days]
    keep = np.random.default_rng(seed).permutation(len(train))[: max(1, round(fraction * len(train)))]
    return sorted(train[i] for i in keep), val, test


def best_checkpoint(run_dir: Path) -> Path:
    """The checkpoint of the best validation (``epoch_*.ckpt``, by the optimised metric), else ``last.ckpt``."""
    best = sorted((run_dir / "checkpoints").glob("epoch_*.ckpt"))
    return best[-1] if best else run_dir / "checkpoints" / "last.ckpt"


def score(assay: Path, test: list[str], predictions: Path) -> dict[str, float]:
    """The held-out fields' figures (see the module docstring)."""
    curves = BinnedPRCurve(3)
    foreground = BinnedPRCurve(2)
    model_cov = {"true": 0, "found": 0, "split": 0}
    stain_cov = dict(model_cov)
    pixels = np.zeros(3, np.int64)  # stain-labelled nucleus pixels, hand-drawn MCF-7 pixels, both
    with Progress(console=console) as bar:
        task = bar.add_task("scoring the held-out fields", total=len(test))
        for i in test:
            image = tifffile.imread(assay / "plate" / f"{i}_t000.tif")
            hand = tifffile.imread(assay / "masks" / f"{i}.tif").astype(np.int64)
            sizes = image_sizes(image[1], image[2])
            stains = labels_from_stains(image[1], image[2], sizes=sizes)  # as prepare and predict label them
            probs = torch.from_numpy(tifffile.imread(predictions / f"{i}_t000_probs.ome.tif"))[None]
            label = torch.from_numpy(stains.astype(np.int64))[None]
            curves.update(probs, label)
            pixels += [(stains > 0).sum(), (hand > 0).sum(), ((stains > 0) & (hand > 0)).sum()]
            foreground.update(torch.cat([probs[:, :1], 1 - probs[:, :1]], 1), (label > 0).long())
            instances = tifffile.imread(predictions / f"{i}_t000_nuclei.ome.tif")[1].astype(np.int64)
            for cov, nuclei in (
                (model_cov, nuclei_from_instances(instances, None)),
                (stain_cov, stain_reference(stains, sizes)),
            ):
                for k, v in truth_coverage(nuclei, hand).items():
                    cov[k] += v
            bar.advance(task)
    ap = curves.compute()
    rows = {r["well"]: r for r in read_counts(predictions)}
    rel, dead_err = [], []
    for i in test:
        r = rows[i]
        stain_total = r["stain_live"] + r["stain_dead"]
        rel.append(abs(r["total"] - stain_total) / max(stain_total, 1))
        dead_err.append(abs(r["dead_fraction"] - (r["stain_dead"] / stain_total if stain_total else 0.0)))
    return {
        "pr_auc_nucleus": float(foreground.compute()[1]),
        "pr_auc_dapi": float(ap[1]),
        "pr_auc_cy5": float(ap[2]),
        "count_rel_err_median": float(np.median(rel)),
        "dead_fraction_mae": float(np.mean(dead_err)),
        "mcf7_recall": model_cov["found"] / max(model_cov["true"], 1),
        "mcf7_split": model_cov["split"] / max(model_cov["true"], 1),
        "stain_mcf7_recall": stain_cov["found"] / max(stain_cov["true"], 1),
        "stain_mcf7_split": stain_cov["split"] / max(stain_cov["true"], 1),
        "fields_without_nuclei": int(sum(rows[i]["total"] == 0 for i in test)),
        "stain_px_in_mcf7": pixels[2] / max(pixels[0], 1),
        "mcf7_px_stained": pixels[2] / max(pixels[1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assay", type=Path, default=ASSAY, help="the assay's folder (fields.csv, plate/, masks/)")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "real_assay", help="where everything goes")
    parser.add_argument("--test-days", default=TEST_DAYS)
    parser.add_argument("--val-days", default=VAL_DAYS)
    parser.add_argument("--train-fraction", type=float, default=1.0, help="of the training fields (learning curve)")
    parser.add_argument(
        "--downscale", type=float, default=2.0, help="train on fields shrunk this many times (predict rescales)"
    )
    parser.add_argument("--tag", default="real", help="names the run and prediction folders")
    parser.add_argument("--ckpt", type=Path, help="score this checkpoint instead of training one")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for train.py, after --")
    args = parser.parse_args()
    if not (args.assay / "fields.csv").exists():
        sys.exit(f"benchmarks/real_assay.py: {args.assay}/fields.csv: expected the MCF-7 killing assay, not found")
    with open(args.assay / "fields.csv") as f:
        rows = list(csv.DictReader(f))
    days = {part: set(filter(None, getattr(args, part).split(","))) for part in ("test_days", "val_days")}
    train, val, test = split_fields(rows, days["test_days"], days["val_days"], args.train_fraction, 0)
    console.print(
        f"{len(train)} training fields, {len(val)} validation fields ({', '.join(sorted(days['val_days']))}), "
        f"{len(test)} test fields ({', '.join(sorted(days['test_days']))})"
    )
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    py = sys.executable
    ckpt = args.ckpt
    if ckpt is None:
        tiles = work / f"tiles-{args.tag}.h5"  # labelled afresh each run (seconds): never stale labels
        if args.downscale == 1:
            link_fields(work / "plate-train", train + val, args.assay)
        else:
            console.print(f"shrinking the {len(train + val)} training and validation fields {args.downscale:g} times")
            downscaled_fields(work / "plate-train", train + val, args.assay, args.downscale)
        run([py, "-m", "livedead.prepare", f"input={work}/plate-train", f"output={tiles}",
             f"pixel_size_um={PIXEL_UM * args.downscale:.6g}", f"val_wells=[{','.join(val)}]"])  # fmt: skip
        run_dir = work / f"run-{args.tag}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run([py, "train.py", "experiment=real", "data=hdf5", f"data.path={tiles}", f"hydra.run.dir={run_dir}",
             *args.overrides])  # fmt: skip
        ckpt = best_checkpoint(run_dir)
    trained = time.perf_counter() - start
    link_fields(work / "plate-test", test, args.assay)
    predictions = work / f"pred-{args.tag}"
    shutil.rmtree(predictions, ignore_errors=True)
    run([py, "-m", "livedead.predict", f"ckpt={ckpt}", f"input={work}/plate-test", f"output={predictions}",
         "save=ome-tiff", f"pixel_size_um={PIXEL_UM}"])  # fmt: skip
    s = score(args.assay, test, predictions)
    console.print(
        f"checkpoint {ckpt}; prepare and train {trained / 60:.1f} min, all {(time.perf_counter() - start) / 60:.1f} min"
        f" ({os.cpu_count()} CPUs); the stain labels themselves on the hand-drawn MCF-7 nuclei: recall "
        f"{s['stain_mcf7_recall']:.3f}, split {s['stain_mcf7_split']:.3f}; fields with no nucleus counted: "
        f"{s['fields_without_nuclei']} of {len(test)}; of the stain-labelled nucleus pixels, "
        f"{s['stain_px_in_mcf7']:.1%} lie in hand-drawn MCF-7 nuclei (the rest: NK nuclei, which are not drawn, and "
        f"errors), and {s['mcf7_px_stained']:.1%} of the MCF-7 nuclei's pixels are labelled nucleus"
    )
    print(
        f"RESULT pr_auc_nucleus={s['pr_auc_nucleus']:.3f} pr_auc_dapi={s['pr_auc_dapi']:.3f} "
        f"pr_auc_cy5={s['pr_auc_cy5']:.3f} count_rel_err_median={s['count_rel_err_median']:.3f} "
        f"dead_fraction_mae={s['dead_fraction_mae']:.3f} mcf7_recall={s['mcf7_recall']:.3f} "
        f"mcf7_split={s['mcf7_split']:.3f} stain_mcf7_recall={s['stain_mcf7_recall']:.3f} "
        f"stain_mcf7_split={s['stain_mcf7_split']:.3f}"
    )


if __name__ == "__main__":
    main()
