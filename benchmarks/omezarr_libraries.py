"""Benchmark: the maintained OME-Zarr libraries on livedead's job, reading an HCS plate (NGFF 0.4 and 0.5).

Which library livedead reads and writes plates with (:mod:`livedead.plates.omezarr`) was chosen on
these figures. ``make`` writes two plates (4 wells x 1 field, 5 time points x 3 channels of
1024x1024 uint16, one per NGFF version) with livedead; ``read`` then times, in an environment that
has one library installed (each pulls its own dependencies, so each gets its own venv):

* ``open_ms``: from the plate's path to the list of its wells and their first fields' arrays
  (metadata only, nothing read);
* ``read_s``: reading every pixel of every well, and ``vs_zarr`` the ratio of that time to plain
  ``zarr`` reading the same arrays in the same run (1.0: no overhead);
* ``region_ms``: one 256x256 region of one channel at one time point (lazy access: only its chunk);
* ``plate``: whether the library knows the HCS layout (plate and well metadata), or only images.

``livedead`` (run in livedead's environment) is the reader livedead uses: ome-zarr-models, which
ome-zarr-py depends on, for the metadata, and zarr for the pixels.

    python -m venv /tmp/v-ome-zarr && /tmp/v-ome-zarr/bin/pip install ome-zarr   # and ngff-zarr, bioio-ome-zarr
    python benchmarks/omezarr_libraries.py make /tmp/plates
    /tmp/v-ome-zarr/bin/python benchmarks/omezarr_libraries.py read /tmp/plates ome-zarr
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

WELLS = ("A1", "A2", "B1", "B2")
SHAPE = (5, 3, 1024, 1024)


def make(folder: Path) -> None:
    from livedead.plates.omezarr import write_hcs

    rng = np.random.default_rng(0)
    for version in ("0.4", "0.5"):
        wells = {w: [(rng.integers(0, 4000, SHAPE, dtype=np.uint16), (0.0, 0.0))] for w in WELLS}
        print(f"wrote {write_hcs(folder / f'plate-{version}.zarr', wells, ['BF', 'DAPI', 'Cy5'], version, 0.65)}")


def with_ome_zarr(plate: Path) -> tuple[list, bool]:
    """ome-zarr-py: the plate metadata through ome-zarr-models (its dependency), the arrays from its Reader."""
    import ome_zarr_models
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    hcs = ome_zarr_models.open_ome_zarr(zarr.open_group(plate, mode="r"))
    arrays = []
    for well in hcs.ome_attributes.plate.wells:
        first = ome_zarr_models.open_ome_zarr(zarr.open_group(plate / well.path, mode="r"))
        image = plate / well.path / first.ome_attributes.well.images[0].path
        arrays.append(next(iter(Reader(parse_url(str(image)))())).data[0])  # dask
    return arrays, True


def with_ngff_zarr(plate: Path) -> tuple[list, bool]:
    import ngff_zarr

    hcs = ngff_zarr.from_hcs_zarr(str(plate))
    arrays = []
    for well in hcs.wells:
        row, col = well.path.split("/")
        arrays.append(hcs.get_well(row, col).get_image(0).images[0].data)  # dask
    return arrays, True


def with_bioio(plate: Path) -> tuple[list, bool]:
    """bioio-ome-zarr reads images, not plates: the wells' image paths must come from elsewhere (here, known)."""
    from bioio_ome_zarr import Reader

    arrays = []
    for w in WELLS:
        reader = Reader(str(plate / w[0] / w[1:] / "0"))
        arrays.append(reader.dask_data)  # dims of bioio (TCZYX)
    return arrays, False


def with_livedead(plate: Path) -> tuple[list, bool]:
    """livedead's reader: ome-zarr-models for the metadata (ome-zarr-py's dependency), zarr for the pixels."""
    import zarr

    from livedead.plates.omezarr import open_zarr_plate

    return [zarr.open_array(f[0].array, mode="r") for f in open_zarr_plate(plate).fields], True


def plain_zarr(plate: Path) -> list:
    import zarr

    return [zarr.open_array(plate / w[0] / w[1:] / "0" / "0", mode="r") for w in WELLS]


LIBRARIES: dict[str, Callable[[Path], tuple[list, bool]]] = {
    "ome-zarr": with_ome_zarr,
    "ngff-zarr": with_ngff_zarr,
    "bioio-ome-zarr": with_bioio,
    "livedead": with_livedead,
}


def timed(fn: Callable[[], object], repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def region(array: object) -> np.ndarray:
    index = (1, 0) + ((0,) if len(array.shape) == 5 else ()) + (slice(256, 512), slice(256, 512))
    data = array[index]
    return np.asarray(data.compute() if hasattr(data, "compute") else data)


def read(folder: Path, library: str) -> None:
    for version in ("0.4", "0.5"):
        plate = folder / f"plate-{version}.zarr"
        try:
            open_s, (arrays, knows_plate) = timed(lambda plate=plate: LIBRARIES[library](plate))
        except Exception as err:  # a library that cannot read this version: say so
            print(f"RESULT library={library} ngff={version} reads=no ({type(err).__name__}: {str(err)[:120]})")
            continue
        base = plain_zarr(plate)
        zarr_s, _ = timed(lambda base=base: [np.asarray(a[...]) for a in base])

        def everything(arrays: list = arrays) -> list:
            return [np.asarray(a.compute() if hasattr(a, "compute") else a) for a in arrays]

        read_s, data = timed(everything)
        assert all(np.array_equal(d.reshape(SHAPE), np.asarray(b[...])) for d, b in zip(data, base, strict=True))
        region_s, _ = timed(lambda arrays=arrays: region(arrays[0]), repeat=5)
        print(
            f"RESULT library={library} ngff={version} reads=yes plate={'yes' if knows_plate else 'no'} "
            f"open_ms={open_s * 1e3:.1f} read_s={read_s:.3f} zarr_read_s={zarr_s:.3f} vs_zarr={read_s / zarr_s:.2f} "
            f"region_ms={region_s * 1e3:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("make", "read"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("library", nargs="?", choices=sorted(LIBRARIES))
    args = parser.parse_args()
    if args.mode == "make":
        make(args.folder)
    else:
        read(args.folder, args.library)


if __name__ == "__main__":
    main()
