"""Benchmark: prepare full-size 2700x3600 synthetic well images into a tile file, in 1 and 2 processes.

Prepares the same plate (2 wells x 2 time points: a by-well split needs two wells) with
``workers=1`` and ``workers=2`` and prints, for each: tiles per second, the peak memory (of this
process traced, and the proportional set size of it and its workers together), and whether the two
files are identical. Then the store step's time (everything but labelling: tiling and both
passes' HDF5 reads and writes, of the one-process run) against a plain h5py write of the
final file's bytes from memory with the same chunks and checksums, flushed to the disk as
prepare flushes its output (the I/O floor, measured in this run, best of three).

    python benchmarks/prepare.py [--height 2700 --width 3600 --timepoints 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
from _common import RssSampler

from livedead.data.preparation import PrepareConfig, PrepareSummary, prepare
from livedead.data.synthetic import PlateSpec, generate_plate


def plain_write(path: Path, tiles: h5py.File) -> float:
    """Seconds for h5py to write the final file's arrays as they are, from memory: the same chunks and
    checksums, and flushed to the disk as prepare flushes its output (the I/O floor of the store)."""
    arrays = {k: tiles[k][:] for k in tiles}
    os.sync()  # start from no dirty pages, as each prepare run does
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        for k, a in arrays.items():
            f.create_dataset(k, data=a, chunks=tiles[k].chunks, fletcher32=tiles[k].fletcher32)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - start


def run(plate: Path, out: Path, workers: int) -> tuple[PrepareSummary, float, int, int]:
    """Prepare with ``workers`` processes: the summary, seconds, traced peak of this process, peak PSS of all."""
    os.sync()  # no dirty pages of an earlier run to write back during this one
    tracemalloc.start()
    with RssSampler(children=True) as sampler:
        start = time.perf_counter()
        summary = prepare(plate, out, PrepareConfig(progress=False, workers=workers))
        seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return summary, seconds, traced, sampler.peak


def identical(a: Path, b: Path) -> bool:
    with h5py.File(a) as x, h5py.File(b) as y:
        same = all(np.array_equal(x[k][:], y[k][:]) for k in x)
        return same and {k: str(v) for k, v in x.attrs.items()} == {k: str(v) for k, v in y.attrs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2700)
    parser.add_argument("--width", type=int, default=3600)
    parser.add_argument("--timepoints", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = PlateSpec(wells=2, timepoints=args.timepoints, height=args.height, width=args.width)
        plate = generate_plate(tmp / "plate.h5", spec, progress=False)
        runs = {w: run(plate, tmp / f"tiles{w}.h5", w) for w in (1, 2)}
        same = identical(tmp / "tiles1.h5", tmp / "tiles2.h5")
        with h5py.File(tmp / "tiles1.h5") as f:
            nbytes = sum(f[k].size * f[k].dtype.itemsize for k in f)
            floor = min(plain_write(tmp / f"plain{i}.h5", f) for i in range(3))
    summary, one, _, _ = runs[1]
    store = one - summary.labelling_seconds
    image_bytes = args.height * args.width * 2
    print(f"images:        {spec.wells * spec.timepoints} of {args.height}x{args.width} (2 wells), labels from stains")
    print(f"tiles seen:    {summary.tiles_seen:,}   kept: {summary.tiles_kept:,}")
    for w, (s, seconds, traced, rss) in runs.items():
        print(
            f"{w} process{'es' if w > 1 else '  '}:   {seconds:6.2f} s  {s.tiles_seen / seconds:6,.0f} tiles/s   "
            f"peak: traced {traced / 1e6:5,.0f} MB ({traced / image_bytes:.1f}x one uint16 image), "
            f"PSS of all processes {rss / 1e6:5,.0f} MB"
        )
    print(f"1 process:     labels from stains {summary.labelling_seconds:.2f} s, the store (the rest) {store:.2f} s")
    print(f"plain h5py:    {floor:.3f} s to write the same {nbytes / 1e6:,.0f} MB from memory")
    print(f"identical output with 1 and 2 processes: {same}")
    print(
        f"RESULT workers_2_vs_1={one / runs[2][1]:.2f} store_vs_plain_write={store / floor:.1f} "
        f"tiles_per_s={summary.tiles_seen / runs[2][1]:.0f} identical={int(same)} peak_mb={runs[1][2] / 1e6:.0f}"
    )


if __name__ == "__main__":
    main()
