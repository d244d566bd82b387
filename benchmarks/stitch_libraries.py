"""Benchmark: livedead's stitching against the maintained stitching libraries, on one known answer.

A synthetic well is imaged as a grid of overlapping 512x512 fields (10 % overlap, snake order)
with stage errors of up to ``--jitter`` px; each method registers the transmitted-light fields,
and the largest error of its positions against the true ones (after removing the mosaic's free
translation) and its time are printed. The libraries are optional, and each one that is not
installed is skipped:

* ``m2stitch`` (MIST's algorithm in Python; pandas, scikit-learn, networkx);
* ``ashlar`` (the EdgeAligner of ASHLAR; pyjnius and a Java runtime, zarr, scikit-learn);
* ``mist-stitching`` (NIST's Python MIST; run as its own script, as it does not import as a package).

    pip install m2stitch ashlar mist-stitching   # as far as they install
    python benchmarks/stitch_libraries.py [--grid 5] [--jitter 8]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile

from livedead.plates.stitching import StitchConfig, grid_cell, stitch
from livedead.plates.synthetic import FieldGrid, PlateSpec, generate_plate, write_fields

SIZE, OVERLAP = 512, 0.1


def error(found: np.ndarray, truth: np.ndarray) -> int:
    return int(np.abs((found - found[0]) - (truth - truth[0])).max())


def ours(folder: Path, n: int, work: Path) -> np.ndarray:
    cfg = StitchConfig(rows=n, cols=n, overlap=OVERLAP, order="snake", progress=False)
    return stitch(folder, work / "ours.h5", cfg).positions["W01_t0"]


def with_m2stitch(planes: list[np.ndarray], n: int) -> np.ndarray:
    import m2stitch

    rows, cols = np.divmod(np.arange(n * n), n)
    # its ncc_threshold of 0.5 (default) or 0.1 finds no pair on these noisy fields; 0 lets it run
    grid, _ = m2stitch.stitch_images(
        np.stack(planes), rows=list(rows), cols=list(cols), row_col_transpose=False, ncc_threshold=0.0
    )
    return np.stack([grid["y_pos"].to_numpy(), grid["x_pos"].to_numpy()], axis=1).astype(np.int64)


def with_ashlar(planes: list[np.ndarray], n: int, work: Path) -> np.ndarray:
    from ashlar import fileseries, reg

    folder = work / "ashlar"
    folder.mkdir()
    for k in range(n * n):  # ashlar reads the stage's order itself: number the files that way
        r, c = grid_cell(k, n, n, "snake")
        tifffile.imwrite(folder / f"f{k:03d}.tif", planes[r * n + c])
    reader = fileseries.FileSeriesReader(str(folder), "f{series:03}.tif", OVERLAP, n, n, layout="snake")
    aligner = reg.EdgeAligner(reader, channel=0, max_shift=30, do_make_thumbnail=False)
    aligner.run()
    positions = np.rint(aligner.positions).astype(np.int64)
    out = np.empty_like(positions)
    for k in range(n * n):
        r, c = grid_cell(k, n, n, "snake")
        out[r * n + c] = positions[k]
    return out


def with_mist(planes: list[np.ndarray], n: int, work: Path) -> np.ndarray:
    spec = importlib.util.find_spec("mist_stitching")
    assert spec is not None
    assert spec.submodule_search_locations
    folder = work / "mist"
    folder.mkdir()
    for i, plane in enumerate(planes):
        tifffile.imwrite(folder / f"img_r{i // n:03d}_c{i % n:03d}.tif", plane)
    script = Path(next(iter(spec.submodule_search_locations))) / "main.py"
    args = ["--image-dirpath", str(folder), "--output-dirpath", str(work / "mist-out"), "--grid-width", str(n),
            "--grid-height", str(n), "--filename-pattern", "img_r{rrr}_c{ccc}.tif", "--filename-pattern-type",
            "ROWCOL", "--grid-origin", "UL", "--numbering-pattern", "HORIZONTALCONTINUOUS",
            "--horizontal-overlap", str(OVERLAP * 100), "--vertical-overlap", str(OVERLAP * 100)]  # fmt: skip
    subprocess.run([sys.executable, str(script), *args], check=True, capture_output=True, cwd=script.parent)
    out = np.zeros((n * n, 2), np.int64)
    for line in next((work / "mist-out").glob("*global-positions*")).read_text().splitlines():
        # file: img_r000_c001.tif; corr: ...; position: (x, y); grid: (col, row);
        fields = dict(part.strip().split(": ", 1) for part in line.split(";") if ": " in part)
        x, y = (int(v) for v in fields["position"].strip("()").split(","))
        col, row = (int(v) for v in fields["grid"].strip("()").split(","))
        out[row * n + col] = y, x
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=5, help="fields per side")
    parser.add_argument("--jitter", type=int, default=8, help="the stage's largest error, px per axis")
    args = parser.parse_args()
    n = args.grid
    side = (n - 1) * round(SIZE * (1 - OVERLAP)) + SIZE + 2 * args.jitter
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plate = generate_plate(work / "plate.h5", PlateSpec(wells=1, timepoints=1, height=side, width=side), False)
        grid = FieldGrid(rows=n, cols=n, overlap=OVERLAP, jitter=args.jitter, order="snake", noise=20.0, seed=3)
        positions_csv = write_fields(plate, work / "fields", grid)
        truth = np.zeros((n * n, 2), np.int64)
        for r in csv.DictReader(positions_csv.open()):
            truth[int(r["row"]) * n + int(r["col"])] = int(r["y"]), int(r["x"])
        planes = [np.empty(0)] * (n * n)  # the transmitted-light plane of each field, row-major
        for k in range(n * n):
            r, c = grid_cell(k, n, n, "snake")
            planes[r * n + c] = tifffile.imread(work / "fields" / f"W01_f{k:03d}_t000.tif")[0]
        methods: dict[str, tuple[str | None, Callable[[], np.ndarray]]] = {
            "livedead": (None, lambda: ours(work / "fields", n, work)),
            "m2stitch": ("m2stitch", lambda: with_m2stitch(planes, n)),
            "ashlar": ("ashlar", lambda: with_ashlar(planes, n, work)),
            "mist-stitching": ("mist_stitching", lambda: with_mist(planes, n, work)),
        }
        print(f"{n}x{n} fields of {SIZE} px, {OVERLAP:.0%} overlap, stage errors up to {args.jitter} px, noise 20")
        for name, (module, run) in methods.items():
            if module and importlib.util.find_spec(module) is None:
                print(f"{name:15s} not installed")
                continue
            start = time.perf_counter()
            try:
                found = run()
            except Exception as err:  # a library that fails on this input is a result too
                print(f"{name:15s} failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}")
                continue
            seconds = time.perf_counter() - start
            print(f"{name:15s} max position error {error(found, truth):4d} px   {seconds:7.2f} s")


if __name__ == "__main__":
    main()
