"""Benchmark: prepare one full 2700x3600 synthetic well image into a tile file.

Prints tiles per second, the ratio of the whole prepare step's time to a plain h5py write of
the same bytes (the I/O floor, measured in this run), and the peak memory of the prepare step.

    python benchmarks/prepare.py [--height 2700 --width 3600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
from _common import RssSampler

from livedead.data.labels import labels_from_stains
from livedead.data.preparation import PrepareConfig, prepare
from livedead.data.synthetic import PlateSpec, generate_plate


def plain_write(path: Path, tiles: h5py.File) -> float:
    """Seconds for h5py to write the final file's arrays as they are, from memory, same chunks."""
    arrays = {k: tiles[k][:] for k in tiles}
    start = time.perf_counter()
    with h5py.File(path, "w") as f:
        for k, a in arrays.items():
            f.create_dataset(k, data=a, chunks=tiles[k].chunks)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2700)
    parser.add_argument("--width", type=int, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        plate = generate_plate(
            tmp / "plate.h5",
            PlateSpec(wells=2, timepoints=1, height=args.height, width=args.width),
            progress=False,
        )
        out = tmp / "tiles.h5"
        cfg = PrepareConfig(progress=False)
        tracemalloc.start()
        with RssSampler() as sampler:
            start = time.perf_counter()
            summary = prepare(plate, out, cfg)
            seconds = time.perf_counter() - start
        traced = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        with h5py.File(out) as f:
            nbytes = sum(f[k].size * f[k].dtype.itemsize for k in f)
            floor = min(plain_write(tmp / f"plain{i}.h5", f) for i in range(3))
        with h5py.File(plate) as p:
            start = time.perf_counter()
            for w in range(2):
                labels_from_stains(p["images"][w, 0, 1], p["images"][w, 0, 2])
            labelling = time.perf_counter() - start
        image_bytes = args.height * args.width * 2
        print(f"images:        2 wells of {args.height}x{args.width} (a by-well split needs two), labels from stains")
        print(f"tiles seen:    {summary.tiles_seen:,}   kept: {summary.tiles_kept:,}")
        print(f"prepare:       {seconds:.2f} s   {summary.tiles_seen / seconds:,.0f} tiles/s")
        print(
            f"               of which labels from stains {labelling:.2f} s, tiling and HDF5 {seconds - labelling:.2f} s"
        )
        print(f"plain h5py:    {floor:.3f} s to write the same {nbytes / 1e6:,.0f} MB from memory")
        print(
            f"peak memory:   {traced / 1e6:,.0f} MB traced ({traced / image_bytes:.1f}x one uint16 image), "
            f"RSS {sampler.peak / 1e6:,.0f} MB"
        )
        print(
            f"RESULT tiles_per_s={summary.tiles_seen / seconds:.0f} prepare_vs_plain_write={seconds / floor:.1f} "
            f"store_vs_plain_write={(seconds - labelling) / floor:.1f} peak_mb={traced / 1e6:.0f}"
        )


if __name__ == "__main__":
    main()
