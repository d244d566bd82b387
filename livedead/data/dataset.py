"""The batch reader: a map-style dataset whose index is a whole chunk-aligned batch.

A batch is one or two slices inside one chunk (:mod:`livedead.data.sampler`), read with
``read_direct`` into a small ring of reused buffers: no fancy indexing, no per-sample collate,
no fresh allocation (and its page faults) per batch. A compressed file is read a whole chunk at
a time and the chunk serves all of its batches, so no chunk is decompressed twice. Each worker
opens the file lazily; no handle is open when workers fork. Labels stay uint8 and images in
their source dtype: normalisation runs later, on the device (:mod:`livedead.data.transforms`).

With DataLoader workers, the rings are shared memory made once, in the main process, before the
workers start (:meth:`TileBatches.share_rings`). A worker writes a batch into its own ring and
sends only where it put it (:data:`RING_REF`); :class:`TileLoader` turns that back into tensors
on the main process's mapping. Sending the tensors themselves would map each batch's memory
afresh in the main process, page by page: that halved the loader's rate with two workers.
When the batches are for the CPU (:attr:`TileBatches.normalization` set), the workers also turn
them into network input (:func:`livedead.data.transforms.normalize_`, as ``input``): the main
process then only passes them on, where converting them itself, from memory another core had just
written, cost it more than the workers' reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from livedead.data.sampler import Batch
from livedead.data.tilefile import DamagedChunk, TileFileInfo, check_classes, open_tile_file
from livedead.data.transforms import Normalization, normalize_
from livedead.errors import LivedeadError

ON_BAD_CHUNK = ("error", "skip")
RING_REF = "ring"
"""A worker's batch as it crosses to the main process: (worker, slot, tiles) in its shared ring."""


class TileBatches(Dataset):
    """Map-style dataset whose index is a whole batch (a tuple of slices); returns a dict of tensors.

    The returned tensors live in a small ring of reused buffers. The ring is longer than the
    number of batches that can be in flight (DataLoader's prefetch, Lightning's one-batch
    look-ahead, the batch in use), so a batch is never overwritten while still in use.
    """

    def __init__(
        self,
        info: TileFileInfo,
        images_key: str,
        labels_key: str,
        num_classes: int,
        max_batch: int,
        ring: int,
        on_bad_chunk: str = "error",
    ) -> None:
        self.path = info.path
        self.images_key, self.labels_key = images_key, labels_key
        self.num_classes = num_classes
        self.max_batch = max_batch
        self.ring = ring
        self.chunk = info.chunk
        self.compressed = info.compressed
        self.on_bad_chunk = on_bad_chunk
        self.float_images = info.dtype == np.float32
        self.dtype, self.tile_shape = info.dtype, (info.height, info.width)
        self.n = info.n
        self.normalization: Normalization | None = None
        """Set (a normalisation record) for batches bound for the CPU: workers then add the network input."""
        self._worker: int | None = None
        self._file: h5py.File | None = None
        self._datasets: tuple[h5py.Dataset, h5py.Dataset] | None = None
        self._buffers: list[dict[str, np.ndarray]] = []
        self._tensors: list[dict[str, torch.Tensor]] = []
        self._shared: list[list[dict[str, torch.Tensor]]] = []  # per worker, its ring (share_rings)
        self._next = 0
        self._chunk_id = -1
        self._chunk_data: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # the shared rings go along: a worker gets the main process's memory
        state.update(_file=None, _datasets=None, _buffers=[], _tensors=[], _chunk_data={}, _chunk_id=-1)
        return state

    def _ring(self, shared: bool) -> list[dict[str, torch.Tensor]]:
        shapes = {
            "image": ((self.max_batch, 1, *self.tile_shape), self.dtype),
            "label": ((self.max_batch, *self.tile_shape), np.dtype(np.uint8)),
            "index": ((self.max_batch,), np.dtype(np.int64)),
        }
        if shared and self.normalization is not None:
            shapes["input"] = ((self.max_batch, 1, *self.tile_shape), np.dtype(np.float32))
        ring = []
        for _ in range(self.ring):
            entry = {k: torch.from_numpy(np.empty(shape, dtype)) for k, (shape, dtype) in shapes.items()}
            ring.append({k: t.share_memory_() if shared else t for k, t in entry.items()})
        return ring

    def share_rings(self, workers: int) -> None:
        """Make each of ``workers`` DataLoader workers its ring in shared memory, here, before they start."""
        if len(self._shared) != workers:
            self._shared = [self._ring(shared=True) for _ in range(workers)]

    def resolve(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A worker's :data:`RING_REF` as the tensors it points to in this process (other batches as they are)."""
        if RING_REF not in batch:
            return batch
        worker, slot, n = batch.pop(RING_REF)
        return {**{k: t[:n] for k, t in self._shared[worker][slot].items()}, **batch}

    def _open(self) -> None:
        self._file = open_tile_file(self.path)
        images, labels = self._file[self.images_key], self._file[self.labels_key]
        self._datasets = (images, labels)  # looked up once: a lookup per batch costs as much as a read
        worker = get_worker_info()
        if worker is not None and len(self._shared) > worker.id:
            self._tensors = self._shared[worker.id]
            self._worker = worker.id
        else:  # in the main process; or a worker whose batches go to the pinning thread, as handles
            self._tensors = self._ring(shared=worker is not None)
            self._worker = None
        self._buffers = [{k: t.numpy() for k, t in entry.items()} for entry in self._tensors]
        if self.compressed:
            self._chunk_data = {
                "image": np.empty((self.chunk, *images.shape[1:]), images.dtype),
                "label": np.empty((self.chunk, *labels.shape[1:]), labels.dtype),
            }

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._datasets = None

    def __getitem__(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self._file is None:
            self._open()
        assert self._file is not None
        slot = self._next
        buf = self._buffers[slot]
        self._next = (slot + 1) % self.ring
        n = 0
        try:
            for a, b in batch:
                self._read(buf, n, a, b)
                buf["index"][n : n + b - a] = np.arange(a, b)
                n += b - a
        except DamagedChunk as err:
            if self.on_bad_chunk != "skip":
                raise err.one_line() from None
            skipped = torch.tensor([sum(b - a for a, b in batch)])  # no tiles: the step is skipped
            return {**self._batch(slot, 0), "skipped": skipped}
        self._check_values(buf, n, batch)
        if "input" in buf:
            entry = self._tensors[slot]
            normalize_(entry["input"][:n].copy_(entry["image"][:n]), self.normalization)
        return self._batch(slot, n)

    def _batch(self, slot: int, n: int) -> dict[str, Any]:
        if self._worker is not None:
            return {RING_REF: (self._worker, slot, n)}  # plain ints: a tensor would cross in shared memory of its own
        return {k: t[:n] for k, t in self._tensors[slot].items()}

    def _read(self, buf: dict[str, np.ndarray], n: int, a: int, b: int) -> None:
        """Tiles ``[a, b)`` into the buffers from row ``n``; a read that fails raises :class:`DamagedChunk`."""
        assert self._datasets is not None
        images, labels = self._datasets
        dest = np.s_[n : n + b - a]
        if self.compressed:
            self._load_chunk(a // self.chunk, images, labels)
            base = self._chunk_id * self.chunk
            buf["image"][dest] = self._chunk_data["image"][a - base : b - base]
            buf["label"][dest] = self._chunk_data["label"][a - base : b - base]
            return
        # into a contiguous view of the buffer: no destination selection to build
        for ds, out in ((images, buf["image"][dest]), (labels, buf["label"][dest])):
            try:
                if ds.dtype == out.dtype:
                    ds.read_direct(out, np.s_[a:b])
                else:
                    out[...] = ds[a:b]
            except OSError as err:
                raise DamagedChunk(self.path, ds.name, a, b, err) from None

    def _load_chunk(self, chunk_id: int, images: h5py.Dataset, labels: h5py.Dataset) -> None:
        if chunk_id == self._chunk_id:
            return
        a = chunk_id * self.chunk
        b = min(a + self.chunk, self.n)
        self._chunk_id = -1  # until the whole chunk has been read
        for ds, name in ((images, "image"), (labels, "label")):
            try:
                ds.read_direct(self._chunk_data[name], np.s_[a:b], np.s_[: b - a])
            except OSError as err:
                raise DamagedChunk(self.path, ds.name, a, b, err) from None
        self._chunk_id = chunk_id

    def _check_values(self, buf: dict[str, np.ndarray], n: int, batch: Batch) -> None:
        a, b = batch[0][0], batch[-1][1]
        check_classes(buf["label"][:n], self.num_classes, f"{self.path}: dataset '/{self.labels_key}'", (a, b))
        if self.float_images and not np.isfinite(buf["image"][:n]).all():
            raise LivedeadError(
                f"{self.path}: dataset '/{self.images_key}': expected finite values, "
                f"found NaN or Inf in tiles {a}..{b - 1}"
            )


class TileLoader(DataLoader):
    """A ``DataLoader`` of :class:`TileBatches` whose workers write into rings shared once, at the start.

    Iterating it yields what the dataset returns in the main process: tensors in the dataset's
    rings (see the module docstring), valid until the ring comes round again. With ``pin_memory``
    the workers send their tensors instead: the pinning thread copies each batch into pinned
    memory anyway, off the main thread.
    """

    dataset: TileBatches

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.num_workers > 0 and not self.pin_memory:
            self.dataset.share_rings(self.num_workers)
        return self._resolved(super().__iter__())

    def _resolved(self, batches: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The batches in this process's rings; an error stops the workers at once, then propagates.

        The error's traceback would otherwise hold the iterator, and its workers, until a later
        garbage collection, which may close their queues first: each worker then waited out its
        5 s join timeout before being killed (measured: 10.3 s for two workers after a damaged chunk).
        """
        resolve = self.dataset.resolve
        try:
            for batch in batches:
                yield resolve(batch)
        except BaseException as err:
            del batches  # the last reference: the iterator shuts its workers down here
            raise err.with_traceback(None) from err.__cause__
