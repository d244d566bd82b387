"""Prepare's worker pool: images labelled and tiled in parallel processes, their tiles handed back in shared memory.

:func:`labelled_tiles` runs a per-image function (prepare's labelling and tiling of one image) over
``workers`` processes and yields its results in order; the tiles come back through
:class:`ResultSlots`, one anonymous shared mapping made before the workers are forked.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from livedead.allocator import keep_freed_memory

Rows = dict[str, tuple[tuple[int, ...], np.dtype]]
"""Row shape and dtype of each tile dataset (:func:`livedead.data.tilefile.tile_rows`)."""
ImageTiles = tuple[dict[str, np.ndarray], float | None, float]
"""What the per-image function gives: the tile arrays by dataset, the nucleus diameter the image was
labelled with (None where none was measured), and the seconds labelling took."""
LabelImage = Callable[[tuple[int, int], dict[str, np.ndarray] | None], ImageTiles]
"""The per-image function: an image's (well, time point) and arrays to write its tiles into (their
first rows, where they fit; None: new arrays). It must pickle (a module-level function, or a
``functools.partial`` of one), as it goes to the workers."""


class ResultSlots:
    """Shared memory for the tiles of ``count`` images, mapped before the workers are forked: a
    worker writes an image's tiles into a slot, and this process stores them from there.

    Sending them back pickled instead (about 110 MB per 2700x3600 image) cost each worker 0.5 s
    per image on two cores, and this process as long again to receive them. The mapping is
    anonymous: it has no name to leave behind if the run is killed, and is not limited by the
    size of ``/dev/shm`` (64 MB in a default Docker container).
    """

    def __init__(self, rows: Rows, n: int, count: int) -> None:
        self.rows, self.n = rows, n
        self.offsets, size = {}, 0
        for k, (shape, dtype) in rows.items():
            self.offsets[k] = size
            size += -(-n * int(np.prod(shape)) * dtype.itemsize // 64) * 64  # cache-line aligned
        self.slot_bytes = size
        self.memory = mmap.mmap(-1, size * count)  # MAP_SHARED: a forked worker's writes are seen here

    def views(self, slot: int, n: int | None = None) -> dict[str, np.ndarray]:
        """The arrays of ``slot`` (the first ``n`` rows)."""
        base = slot * self.slot_bytes
        return {
            k: np.ndarray((self.n, *shape), dtype, self.memory, base + self.offsets[k])[:n]
            for k, (shape, dtype) in self.rows.items()
        }

    def close(self) -> None:
        with contextlib.suppress(BufferError):  # a view still held (by an error's traceback) unmaps it later
            self.memory.close()


_WORKER_SLOTS: ResultSlots | None = None


def _die_with_parent(parent: int) -> None:
    """Have Linux kill this process when the process that started it dies, ``kill -9`` included: a
    worker left behind would hold its memory and a CPU for good. Elsewhere nothing is done."""
    if sys.platform != "linux":
        return
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the request was made: nobody would kill this one
        os._exit(1)


def _start_worker(slots: ResultSlots | None, parent: int) -> None:
    """A prepare worker: dies with its parent, leaves Ctrl-C to it (the parent stops the pool and
    reports it in one line, instead of a traceback from every worker), one BLAS thread, freed
    memory kept for the next image (the process ends with the pool, so the caller's process keeps
    its own allocator settings), and the result slots it was forked with (None where workers are
    spawned: results then come back pickled)."""
    global _WORKER_SLOTS
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threadpool_limits(1)
    keep_freed_memory()
    _WORKER_SLOTS = slots


def _tiles_into_slot(
    label: LabelImage, index: tuple[int, int], slot: int
) -> tuple[int | dict[str, np.ndarray], float | None, float]:
    """``label`` of one image into result slot ``slot``: the number of tiles written there (or, for an
    image too large for a slot, or without slots, its arrays)."""
    out = _WORKER_SLOTS.views(slot) if _WORKER_SLOTS else None
    arrays, diameter, seconds = label(index, out)
    n = len(arrays["images"])
    return (n if _WORKER_SLOTS and n <= _WORKER_SLOTS.n else arrays), diameter, seconds


def worker_count(workers: int | None) -> int:
    """``workers``, or the CPUs this process may run on (its affinity, which a batch scheduler sets)."""
    if workers is not None:
        return workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def labelled_tiles(
    label: LabelImage, order: list[tuple[int, int]], workers: int, rows: Rows, n: int
) -> Iterator[ImageTiles]:
    """``label`` of the images of ``order``, in that order, over ``workers`` processes; ``rows`` and
    ``n`` are the tile rows and the tiles of one image (the size of a result slot).

    The workers read, label and tile, writing the tiles into shared memory (:class:`ResultSlots`);
    this process stores them. Each image's arrays are valid until the next one is asked for. At
    most one image per worker waits besides those being worked on, so memory stays at a few
    images per worker. On Linux the workers are forked, as DataLoader workers are: they use only
    h5py, numpy, SciPy and scikit-image, never a lock of this process's other threads (progress
    bar, torch), and a fork starts them without importing the calling script again, as spawn
    would (for ``train.py``, Lightning and torch: seconds per worker). Elsewhere: the platform's
    default. Each worker's BLAS runs one thread: two workers of two BLAS threads each on two
    cores took twice as long per image as one process. A caller that stops early (an error,
    Ctrl-C; close the iterator) kills the workers rather than waiting for their images, and a
    worker dies with this process, however it ends.
    """
    if workers == 1:
        for index in order:
            yield label(index, None)
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    slots = ResultSlots(rows, n, 2 * workers) if context.get_start_method() == "fork" else None
    free = list(range(2 * workers))
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(slots, os.getpid()))
    pending: deque[tuple[int, Future]] = deque()

    def received() -> ImageTiles:
        slot, future = pending[0]
        result, found, seconds = future.result()
        pending.popleft()  # only now: an image still awaited when the caller stops is pending
        free.append(slot)  # taken again only after the caller asks for the next image
        return (slots.views(slot, result) if slots and isinstance(result, int) else result), found, seconds

    try:
        for index in order:
            slot = free.pop()
            pending.append((slot, pool.submit(_tiles_into_slot, label, index, slot)))
            if not free:
                yield received()
        while pending:
            yield received()
    finally:
        if pending:  # stopped early (an error, Ctrl-C): the images still being labelled are not wanted
            for process in set(multiprocessing.active_children()) - others:
                process.kill()
        pool.shutdown(wait=True, cancel_futures=True)
        if slots:
            slots.close()
