"""Benchmark: stitching one well of 9x9 fields of 512x512 px (about the study's well) against reading them.

A synthetic well is imaged as 9x9 overlapping fields (10 % overlap, three channels, uint16) with
random stage errors of up to ``--jitter`` px, written as TIFFs; then, in one run:

1. ``read``: reading every field file once (the least any stitcher must do);
2. ``stitch``: :func:`livedead.plates.stitching.stitch` on the folder (it reads the fields twice:
   once to register, once to blend), with the peak growth of resident memory;
3. the largest error of the registered positions against the true ones (after removing the
   mosaic's free translation).

    python benchmarks/stitch.py [--jitter 8]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RssSampler

from livedead.plates.images import read_image
from livedead.plates.stitching import StitchConfig, stitch
from livedead.plates.synthetic import FieldGrid, PlateSpec, generate_plate, write_fields

ROWS = COLS = 9
SIZE = 512
OVERLAP = 0.1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jitter", type=int, default=8, help="the stage's largest error, px per axis")
    args = parser.parse_args()
    side = (ROWS - 1) * round(SIZE * (1 - OVERLAP)) + SIZE + 2 * args.jitter
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plate = generate_plate(tmp / "plate.h5", PlateSpec(wells=1, timepoints=1, height=side, width=side), False)
        grid = FieldGrid(rows=ROWS, cols=COLS, overlap=OVERLAP, jitter=args.jitter, order="snake", seed=1)
        positions_csv = write_fields(plate, tmp / "fields", grid)
        files = sorted((tmp / "fields").glob("*.tif"))
        print(
            f"well {side}x{side} px as {len(files)} fields of {read_image(files[0])[0].shape}, jitter {args.jitter} px"
        )

        start = time.perf_counter()
        for p in files:
            read_image(p)
        read_s = time.perf_counter() - start
        cfg = StitchConfig(rows=ROWS, cols=COLS, overlap=OVERLAP, order="snake", progress=False)
        with RssSampler() as sampler:
            start = time.perf_counter()
            summary = stitch(tmp / "fields", tmp / "stitched.h5", cfg)
            stitch_s = time.perf_counter() - start

        truth = np.zeros((ROWS * COLS, 2), np.int64)
        for r in csv.DictReader(positions_csv.open()):
            truth[int(r["row"]) * COLS + int(r["col"])] = int(r["y"]), int(r["x"])
        found = summary.positions["W01_t0"]
        error = np.abs((found - found[0]) - (truth - truth[0])).max()
        print(f"read every field once:  {read_s:6.2f} s")
        print(f"stitch (register+blend): {stitch_s:6.2f} s -> {summary.shape[0]}x{summary.shape[1]} px")
        print(f"fields at their nominal position: {sum(len(v) for v in summary.fallback.values())}")
        print(
            f"RESULT stitch_vs_read={stitch_s / read_s:.2f} max_position_error_px={error} "
            f"peak_mb={sampler.growth / 1e6:.0f}"
        )


if __name__ == "__main__":
    main()
