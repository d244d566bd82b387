"""The batch reader on its own: what a batch of slices reads, its reused ring, compressed chunks, bad values."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from livedead.data.dataset import TileBatches, TileLoader
from livedead.data.tilefile import TileFileInfo, inspect_tile_file
from livedead.errors import LivedeadError

CHUNK = 20


def write(path: Path, n: int = 100, dtype: type = np.uint16, compression: str | None = None) -> Path:
    """A tile file whose tile ``i`` holds the value ``i`` in every image pixel and ``i % 3`` in every label."""
    images = np.broadcast_to(np.arange(n, dtype=dtype)[:, None, None, None], (n, 1, 16, 16)).copy()
    labels = np.broadcast_to((np.arange(n) % 3).astype(np.uint8)[:, None, None], (n, 16, 16)).copy()
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(CHUNK, 1, 16, 16), compression=compression)
        f.create_dataset("labels", data=labels, chunks=(CHUNK, 16, 16), compression=compression)
        f.create_dataset("class_counts", data=np.stack([(labels == c).sum((1, 2)) for c in range(3)], 1))
    return path


def info(path: Path) -> TileFileInfo:
    return inspect_tile_file(path, "images", "labels", "class_counts", 3, 10, 0.2, 0, on_count=lambda _: None)


def batches(path: Path, ring: int = 3) -> TileBatches:
    return TileBatches(info(path), "images", "labels", 3, max_batch=10, ring=ring)


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_a_batch_of_two_slices_reads_those_tiles_in_order(tmp_path, compression):
    dataset = batches(write(tmp_path / "t.h5", compression=compression))
    assert dataset.compressed == (compression is not None)
    batch = dataset[((5, 8), (12, 15))]
    assert batch["index"].tolist() == [5, 6, 7, 12, 13, 14]
    assert batch["image"].shape == (6, 1, 16, 16)
    assert batch["image"].dtype == torch.uint16
    assert batch["image"][:, 0, 0, 0].tolist() == [5, 6, 7, 12, 13, 14]
    assert (batch["image"].long() == batch["index"].view(-1, 1, 1, 1)).all()
    assert (batch["label"] == (batch["index"] % 3).view(-1, 1, 1).to(torch.uint8)).all()
    assert batch["label"].dtype == torch.uint8
    later = dataset[((40, 50),)]  # another chunk of a compressed file is read in turn
    assert later["index"].tolist() == list(range(40, 50))
    assert (later["image"][:, 0, 0, 0].long() == later["index"]).all()


def test_the_ring_is_reused_after_ring_batches(tmp_path):
    """A batch stays valid while ``ring - 1`` more are read; the next one overwrites it (no allocation per batch)."""
    dataset = batches(write(tmp_path / "t.h5"), ring=3)
    first = dataset[((0, 4),)]
    second, third = dataset[((4, 8),)], dataset[((8, 12),)]
    assert first["index"].tolist() == [0, 1, 2, 3], "still intact after two more batches"
    assert second["image"].data_ptr() != first["image"].data_ptr() != third["image"].data_ptr()
    fourth = dataset[((20, 24),)]
    assert fourth["image"].data_ptr() == first["image"].data_ptr()
    assert first["index"].tolist() == [20, 21, 22, 23], "the ring came round: the first batch's memory was reused"


def test_labels_beyond_the_classes_and_non_finite_images_are_one_line(tmp_path):
    path = write(tmp_path / "t.h5", dtype=np.float32)
    with h5py.File(path, "a") as f:
        f["labels"][33] = 7
        f["images"][61, 0, 3, 3] = np.nan
    dataset = batches(path)
    assert dataset[((0, 10),)]["image"].dtype == torch.float32
    with pytest.raises(LivedeadError, match=r"labels.*7") as err:
        dataset[((30, 40),)]
    assert "\n" not in str(err.value)
    with pytest.raises(LivedeadError, match=r"expected finite values, found NaN or Inf in tiles 60..69"):
        dataset[((60, 70),)]


def test_a_pickled_reader_opens_the_file_itself(tmp_path):
    """What a DataLoader worker receives: an h5py handle cannot be pickled, so none may go along."""
    dataset = batches(write(tmp_path / "t.h5"))
    dataset[((0, 5),)]
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy[((5, 10),)]["index"].tolist() == [5, 6, 7, 8, 9]
    dataset.close()
    copy.close()


@pytest.mark.slow
def test_the_loader_with_workers_yields_what_the_main_process_reads(tmp_path):
    """Two real worker processes write into rings shared once at the start; the batches come back whole."""
    path = write(tmp_path / "t.h5")
    order = [((a, a + 10),) for a in range(0, 100, 10)]
    loader = TileLoader(batches(path, ring=8), batch_size=None, sampler=order, num_workers=2, prefetch_factor=2)
    seen = [batch["index"].tolist() for batch in loader]
    assert seen == [list(range(a, a + 10)) for a in range(0, 100, 10)]
    assert len(loader.dataset._shared) == 2
