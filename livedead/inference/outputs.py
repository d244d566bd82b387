"""What ``predict`` writes of one image, written band by band: memory is bounded by a band, not the image.

Per image, by config key ``save``: the class map of the counted nuclei (``tiff``, a zlib TIFF);
the class probabilities and the class map with the counted instances (``ome-tiff``, OME-TIFF with
channel names and pixel size); the probabilities (float16) and the class map (``hdf5``); and
with ``overlays`` an RGB PNG of the image with each counted nucleus outlined, live green, dead red.

Probability bands come from :func:`livedead.inference.sliding_window.predict_bands`, label bands
from :class:`livedead.nuclei.counting.BandCounter`; an image of one band is one call of each, and
the files are the same either way. Every file is written under a temporary name and renamed into
place only when the whole image has succeeded (:func:`livedead.files.atomic_path`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import png

from livedead.files import atomic_path
from livedead.plates.images import TiffBands
from livedead.viz.overlays import grey_levels, outlined, outlines


class ImageOutputs:
    """The files of one image, fed bands of probabilities (:meth:`probs`) and of counted labels (:meth:`labels`).

    Use as a context manager: leaving it normally writes the files; an exception leaves none.
    ``image`` (the raw channel, anything that slices by rows) is read again for the overlay.
    """

    def __init__(
        self,
        out: Path,
        name: str,
        image: Any,
        save: str,
        overlays: bool,
        class_names: Sequence[str],
        pixel_size_um: float | None = None,
        rows: int | None = None,
    ) -> None:
        h, w = image.shape
        self.prob_sinks: list[TiffBands | _Hdf5Rows] = []
        self.label_sinks: list[Any] = []
        c = len(class_names)
        with ExitStack() as stack:  # files are renamed into place in the reverse order: the overlay last, as before
            overlay = stack.enter_context(atomic_path(out / f"{name}_overlay.png")) if overlays else None
            if save == "ome-tiff":
                path = stack.enter_context(atomic_path(out / f"{name}_probs.ome.tif"))
                probs = TiffBands(path, (c, h, w), np.float32, [f"P({n})" for n in class_names], pixel_size_um)
                path = stack.enter_context(atomic_path(out / f"{name}_nuclei.ome.tif"))
                maps = TiffBands(path, (2, h, w), np.uint32, ["classes", "instances"], pixel_size_um)
                self.prob_sinks.append(stack.enter_context(probs))
                self.label_sinks.append(_Stacked(stack.enter_context(maps)))
            elif save == "tiff":
                path = stack.enter_context(atomic_path(out / f"{name}_classes.tif"))
                self.label_sinks.append(_ClassesOnly(stack.enter_context(TiffBands(path, (1, h, w), np.uint8))))
            elif save == "hdf5":
                path = stack.enter_context(atomic_path(out / f"{name}_probs.h5"))
                hdf5 = stack.enter_context(_Hdf5Rows(path, (c, h, w)))
                self.prob_sinks.append(hdf5)
                self.label_sinks.append(_ClassesOnly(hdf5.classes))
            if overlay is not None:
                self.label_sinks.append(stack.enter_context(_Overlay(overlay, image, rows or h)))
            self.stack = stack.pop_all()

    def __enter__(self) -> ImageOutputs:
        return self

    def __exit__(self, *exc: Any) -> bool | None:
        return self.stack.__exit__(*exc)

    def probs(self, start: int, probs: np.ndarray) -> None:
        """Class probabilities (C, rows, W) of rows from ``start``."""
        for sink in self.prob_sinks:
            sink.write(start, probs)

    def labels(self, start: int, instances: np.ndarray, classes: np.ndarray) -> None:
        """Instance labels and the class map (rows, W) of the counted nuclei, rows from ``start``."""
        for sink in self.label_sinks:
            sink.write(start, instances, classes)


class _Stacked:
    """The class map and the instances as the two channels of one file."""

    def __init__(self, tiff: TiffBands) -> None:
        self.tiff = tiff

    def write(self, start: int, instances: np.ndarray, classes: np.ndarray) -> None:
        self.tiff.write(start, np.stack([classes.astype(np.uint32), instances.astype(np.uint32)]))


class _ClassesOnly:
    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def write(self, start: int, instances: np.ndarray, classes: np.ndarray) -> None:
        self.sink.write(start, classes)


class _Hdf5Rows:
    """``probs`` (float16, C x H x W) and ``classes`` (uint8, H x W), gzip, chunked: each band written into place."""

    def __init__(self, path: Path, shape: tuple[int, int, int]) -> None:
        self.file = h5py.File(path, "w")
        self.probs = self.file.create_dataset("probs", shape, np.float16, compression="gzip", chunks=True)
        self.classes = _Rows2d(
            self.file.create_dataset("classes", shape[1:], np.uint8, compression="gzip", chunks=True)
        )

    def __enter__(self) -> _Hdf5Rows:
        return self

    def __exit__(self, *_: Any) -> None:
        self.file.close()

    def write(self, start: int, probs: np.ndarray) -> None:
        self.probs[:, start : start + probs.shape[1]] = probs.astype(np.float16)


class _Rows2d:
    def __init__(self, dataset: h5py.Dataset) -> None:
        self.dataset = dataset

    def write(self, start: int, rows: np.ndarray) -> None:
        self.dataset[start : start + rows.shape[0]] = rows


class _Overlay:
    """The RGB overlay PNG, streamed row by row (pypng): the image in grey between its 1st and 99th
    percentiles (read again, a band at a time, once the outlines are done), each nucleus outlined.

    A band's outlines need the labels of the row below it, so each band's last row waits for the next
    band; the outlines wait in a scratch file (one byte a pixel) until the grey levels are known."""

    def __init__(self, path: Path, image: Any, rows: int) -> None:
        self.path, self.image, self.rows = path, image, rows
        self.scratch = path.with_name(f"{path.name}.tmp-{os.getpid()}.outlines")
        self.held: tuple[np.ndarray, np.ndarray] | None = None
        """The last rows given (instances, classes), whose last row waits for the next band."""
        self.above: np.ndarray | None = None
        """The instance labels of the row above the held rows."""
        self.done = 0

    def __enter__(self) -> _Overlay:
        return self

    def __exit__(self, kind: type | None, *_: Any) -> None:
        try:
            if kind is None:
                self._flush(final=True)
                self._write_png()
        finally:
            self.scratch.unlink(missing_ok=True)

    def write(self, start: int, instances: np.ndarray, classes: np.ndarray) -> None:
        if self.held is not None:
            instances = np.concatenate([self.held[0], instances])
            classes = np.concatenate([self.held[1], classes])
        self.held = (instances, classes)
        self._flush(final=False)

    def _flush(self, final: bool) -> None:
        """Outline the held rows but the last (all of them when ``final``)."""
        if self.held is None:
            return
        instances, classes = self.held
        n = instances.shape[0] if final else instances.shape[0] - 1
        if n <= 0:
            return
        top = 0 if self.above is None else 1
        stack = instances if self.above is None else np.concatenate([self.above[None], instances])
        edges = outlines(stack, np.concatenate([np.zeros_like(classes[:top]), classes]) if top else classes)
        with open(self.scratch, "ab") as f:
            f.write(edges[top : top + n].tobytes())
        self.above = instances[n - 1]
        self.held = (instances[n:], classes[n:])
        self.done += n

    def _write_png(self) -> None:
        h, w = self.image.shape
        levels = grey_levels((np.asarray(self.image[y : y + self.rows]) for y in range(0, h, self.rows)), h * w)
        with open(self.path, "wb") as f:
            png.Writer(w, h, greyscale=False, bitdepth=8).write(f, self._png_rows(levels))

    def _png_rows(self, levels: tuple[float, float]) -> Iterator[np.ndarray]:
        h, w = self.image.shape
        for y in range(0, h, self.rows):
            n = min(self.rows, h - y)
            edges = np.fromfile(self.scratch, np.uint8, n * w, offset=y * w).reshape(n, w)
            rgb = outlined(np.asarray(self.image[y : y + n]), edges, levels)
            yield from rgb.reshape(n, w * 3)
