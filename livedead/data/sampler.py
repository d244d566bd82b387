"""Chunk-aligned batches of contiguous tiles, reshuffled every epoch, split across DDP ranks.

A batch is one or two slices of tiles inside a single HDF5 chunk, so reading it is one or two
``read_direct`` calls and never touches a second chunk. The tiles of a training split form
*segments* (a split range cut at chunk boundaries). Each epoch, every segment is treated as a
ring and cut into batches starting at a random offset, so the batch boundaries move from epoch
to epoch while every tile is still seen exactly once; the batch that wraps around the end of
the ring is two slices of the same chunk. The batches are then shuffled. Tiles are never
shuffled within a batch: that would not change the gradient, and it costs a copy.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import DistributedSampler

Slice = tuple[int, int]
Batch = tuple[Slice, ...]


def chunk_segments(ranges: Sequence[Slice], chunk: int) -> list[Slice]:
    """Cut half-open tile ranges at chunk boundaries."""
    out = []
    for start, stop in ranges:
        pos = start
        while pos < stop:
            end = min(stop, (pos // chunk + 1) * chunk)
            out.append((pos, end))
            pos = end
    return out


def segment_batches(segment: Slice, batch_size: int, offset: int = 0) -> list[Batch]:
    """Cut one segment into batches whose boundaries start ``offset`` tiles in, wrapping around.

    Gives ``ceil(L / batch_size)`` batches whatever the offset: ``L // batch_size`` full ones and
    one of ``L % batch_size`` tiles, if any.
    """
    start, stop = segment
    length = stop - start
    if length <= batch_size:
        return [((start, stop),)]
    offset %= length
    batches = []
    for k in range(math.ceil(length / batch_size)):
        a = offset + k * batch_size
        b = min(a + batch_size, offset + length)
        if b <= length:
            batches.append(((start + a, start + b),))
        elif a >= length:
            batches.append(((start + a - length, start + b - length),))
        else:  # wraps: the tail of the segment and its head, both in the same chunk
            batches.append(((start, start + b - length), (start + a, stop)))
    return batches


def batch_size_of(batch: Batch) -> int:
    return sum(b - a for a, b in batch)


class ChunkBatchSampler(DistributedSampler):
    """Yields whole batches (tuples of slices) for ``DataLoader(batch_size=None, sampler=...)``.

    It is a ``DistributedSampler`` so that Lightning keeps it under DDP instead of wrapping it,
    and calls :meth:`set_epoch` every epoch. The rank and world size are read when iterating,
    from the initialised process group (or given explicitly), so one object works in a plain
    process, under ``ddp`` and under ``ddp_spawn``. Each rank gets an equal, contiguous share of
    the epoch's batch list; the list is padded by repeating its first batches, so no rank waits
    for another and every tile is seen at least once per epoch across all ranks.

    ``chunk_major`` (for compressed files) keeps the batches of one chunk together, so each
    chunk is decompressed once; with several workers the chunks are dealt to the workers so
    that each worker reads whole chunks (DataLoader hands out indices round-robin).
    """

    def __init__(  # DistributedSampler.__init__ is not called: it needs an initialised group
        self,
        segments: Sequence[Slice],
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        chunk_major: bool = False,
        num_workers: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        self.segments = list(segments)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.chunk_major = chunk_major
        self.num_workers = num_workers
        self._num_replicas = num_replicas
        self._rank = rank
        self.epoch = 0
        self.drop_last = False
        self.batches_done = 0
        """Batches of ``epoch`` this rank has used: an iteration over that epoch starts after them (a
        resumed run goes on with the next batch). The loader that hands the batches out counts them
        (:class:`livedead.data.datamodule.TrainLoader`): its workers draw from the sampler ahead."""
        self.n_batches = sum(math.ceil((b - a) / batch_size) for a, b in self.segments)

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        if self._num_replicas is not None:
            return self._num_replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:  # type: ignore[override]
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this before every epoch: a new epoch starts at its first batch."""
        if epoch != self.epoch:
            self.batches_done = 0
        self.epoch = epoch

    def state_dict(self) -> dict[str, int]:
        """Where in which epoch this rank is: with the seed, all a resumed run needs to go on with the next batch."""
        return {"epoch": self.epoch, "batches_done": self.batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration over ``state["epoch"]`` skips its done batches, one over a later epoch none."""
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])

    def epoch_batches(self, epoch: int) -> list[Batch]:
        """Every batch of an epoch, in the order the ranks will share it (before padding)."""
        if not self.shuffle:
            return [b for seg in self.segments for b in segment_batches(seg, self.batch_size)]
        rng = np.random.default_rng([self.seed, epoch])
        offsets = rng.integers(0, self.batch_size, len(self.segments))
        per_segment = [segment_batches(s, self.batch_size, int(o)) for s, o in zip(self.segments, offsets, strict=True)]
        if self.chunk_major:
            out = []
            for i in rng.permutation(len(per_segment)):
                group = per_segment[i]
                out.extend(group[j] for j in rng.permutation(len(group)))
            return out
        flat = [b for group in per_segment for b in group]
        return [flat[i] for i in rng.permutation(len(flat))]

    def __len__(self) -> int:
        return math.ceil(self.n_batches / self.num_replicas)

    def __iter__(self) -> Iterator[Batch]:
        # A generator: the epoch is read at the first batch, not when the iterator is made (Lightning
        # makes it before it sets the epoch when a run resumes from an epoch's end).
        batches = self.epoch_batches(self.epoch)
        per_rank = len(self)
        total = per_rank * self.num_replicas
        batches = (batches * math.ceil(total / max(len(batches), 1)))[:total]
        mine = batches[self.rank * per_rank : (self.rank + 1) * per_rank]
        if self.chunk_major and self.num_workers > 1:
            mine = self.deal_to_workers(mine)
        if self.batches_done >= len(mine):  # all done: the epoch again, from its first batch
            self.batches_done = 0
        yield from mine[self.batches_done :]

    def deal_to_workers(self, batches: list[Batch]) -> list[Batch]:
        """Reorder chunk-major batches so that DataLoader's round-robin gives each worker whole chunks.

        Runs of batches from one segment (one chunk) go to the worker with the least work so far;
        the workers' streams are then interleaved in DataLoader's order. Only the last few
        batches, where streams end unevenly, can land on another worker.
        """
        starts = [a for a, _ in self.segments]
        runs: list[list[Batch]] = []
        last = None
        for b in batches:
            seg = bisect.bisect_right(starts, b[0][0]) - 1
            if seg != last:
                runs.append([])
                last = seg
            runs[-1].append(b)
        streams: list[list[Batch]] = [[] for _ in range(self.num_workers)]
        for run in runs:
            min(streams, key=lambda s: sum(map(batch_size_of, s))).extend(run)
        out = []
        for k in range(max(len(s) for s in streams)):
            out.extend(s[k] for s in streams if k < len(s))
        return out
