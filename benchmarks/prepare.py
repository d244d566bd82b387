"""Benchmark: prepare full-size 2700x3600 synthetic well images into a tile file, in 1 and 2 processes.

Prepares the same plate (4 wells x 2 time points, split by well: one well's images go to
validation, as a tenth of a 24-well plate's would; with 2 wells half the plate would, and the
last group, stored once every image is labelled, would be half the tiles) with
``workers=1`` and ``workers=2``, alternately, twice each, and prints for each the best time and
tiles per second; then, in one more run each that is not timed, the peak memory (of this process
traced, and the proportional set size of it and its workers together: reading that every 20 ms
slowed the timed runs, and a noisy shared machine needs the best of two), and whether the two
files are identical. Then the store step's time (everything but labelling: tiling and both
passes' HDF5 reads and writes, of the one-process run) against a plain h5py write of the
final file's bytes from memory with the same chunks and checksums, flushed to the disk as
prepare flushes its output (the I/O floor, measured in this run, best of three).

    python benchmarks/prepare.py [--wells 4 --timepoints 2 --height 2700 --width 3600]
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
from livedead.plates.synthetic import PlateSpec, generate_plate


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


def timed(plate: Path, out: Path, workers: int) -> tuple[PrepareSummary, float]:
    """Prepare with ``workers`` processes: the summary and the seconds."""
    os.sync()  # no dirty pages of an earlier run to write back during this one
    start = time.perf_counter()
    summary = prepare(plate, out, PrepareConfig(progress=False, workers=workers))
    return summary, time.perf_counter() - start


def peak_memory(plate: Path, out: Path, workers: int) -> tuple[int, int]:
    """Prepare with ``workers`` processes: the traced peak of this process, and the peak PSS of all."""
    tracemalloc.start()
    with RssSampler(children=True) as sampler:
        prepare(plate, out, PrepareConfig(progress=False, workers=workers))
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return traced, sampler.peak


def identical(a: Path, b: Path) -> bool:
    with h5py.File(a) as x, h5py.File(b) as y:
        same = all(np.array_equal(x[k][:], y[k][:]) for k in x)
        return same and {k: str(v) for k, v in x.attrs.items()} == {k: str(v) for k, v in y.attrs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2700)
    parser.add_argument("--width", type=int, default=3600)
    parser.add_argument("--wells", type=int, default=4)
    parser.add_argument("--timepoints", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        spec = PlateSpec(wells=args.wells, timepoints=args.timepoints, height=args.height, width=args.width)
        plate = generate_plate(tmp / "plate.h5", spec, progress=False)
        runs: dict[int, list[tuple[PrepareSummary, float]]] = {1: [], 2: []}
        for _ in range(2):
            for w in (1, 2):
                runs[w].append(timed(plate, tmp / f"tiles{w}.h5", w))
        same = identical(tmp / "tiles1.h5", tmp / "tiles2.h5")
        memory = {w: peak_memory(plate, tmp / f"memory{w}.h5", w) for w in (1, 2)}
        with h5py.File(tmp / "tiles1.h5") as f:
            nbytes = sum(f[k].size * f[k].dtype.itemsize for k in f)
            floor = min(plain_write(tmp / f"plain{i}.h5", f) for i in range(3))
    (summary, one), (_, two) = (min(runs[w], key=lambda r: r[1]) for w in (1, 2))
    store = one - summary.labelling_seconds
    image_bytes = args.height * args.width * 2
    n_images = spec.wells * spec.timepoints
    print(f"images:        {n_images} of {args.height}x{args.width} ({spec.wells} wells), labels from stains")
    print(f"tiles seen:    {summary.tiles_seen:,}   kept: {summary.tiles_kept:,}")
    for w, (traced, pss) in memory.items():
        seconds = min(t for _, t in runs[w])
        each = ", ".join(f"{t:.2f}" for _, t in runs[w])
        print(
            f"{w} process{'es' if w > 1 else '  '}:   {seconds:6.2f} s (best of {each}) "
            f"{summary.tiles_seen / seconds:6,.0f} tiles/s   peak: traced {traced / 1e6:5,.0f} MB "
            f"({traced / image_bytes:.1f}x one uint16 image), PSS of all processes {pss / 1e6:5,.0f} MB"
        )
    print(f"1 process:     labels from stains {summary.labelling_seconds:.2f} s, the store (the rest) {store:.2f} s")
    print(f"plain h5py:    {floor:.3f} s to write the same {nbytes / 1e6:,.0f} MB from memory")
    print(f"identical output with 1 and 2 processes: {same}")
    print(
        f"RESULT workers_2_vs_1={one / two:.2f} store_vs_plain_write={store / floor:.1f} "
        f"tiles_per_s={summary.tiles_seen / two:.0f} identical={int(same)} peak_mb={memory[1][0] / 1e6:.0f}"
    )


if __name__ == "__main__":
    main()
