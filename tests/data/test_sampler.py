"""The per-epoch batch order of :mod:`livedead.data.sampler`, and where in it a resumed run goes on."""

from __future__ import annotations

from livedead.data.datamodule import TileDataModule, TrainLoader
from livedead.data.sampler import ChunkBatchSampler, chunk_segments


def sampler(**kw) -> ChunkBatchSampler:
    return ChunkBatchSampler(chunk_segments([(0, 230)], 50), batch_size=20, seed=3, **kw)


def test_every_tile_once_an_epoch_in_an_order_of_the_seed_and_the_epoch():
    s = sampler()
    first = list(s)
    assert sorted(i for batch in first for a, b in batch for i in range(a, b)) == list(range(230))
    assert list(s) == first
    s.set_epoch(1)
    assert list(s) != first
    assert list(sampler()) == first


def test_state_dict_round_trip_resumes_with_the_next_batch_of_the_same_epoch_only():
    run = sampler()
    run.set_epoch(2)
    epoch = list(run)
    run.batches_done = 5  # as the loader counts the batches it hands out
    state = run.state_dict()
    assert state == {"epoch": 2, "batches_done": 5}
    resumed = sampler()
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    resumed.set_epoch(2)  # Lightning sets the epoch again when it resumes mid-epoch
    assert list(resumed) == epoch[5:]
    later = sampler()
    later.load_state_dict(state)
    later.set_epoch(3)  # a checkpoint of an epoch's end (limit_train_batches cut it short): a new epoch, whole
    expected = sampler()
    expected.set_epoch(3)
    assert list(later) == list(expected)
    assert later.state_dict() == {"epoch": 3, "batches_done": 0}


def test_the_train_loader_counts_the_batches_it_hands_out_with_workers_drawing_ahead(tiles_path):
    dm = TileDataModule(tiles_path, batch_size=5, num_workers=2, persistent_workers=False, normalize="none")
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader, TrainLoader)
    whole = [b["index"].tolist() for b in loader]
    it = iter(loader)
    taken = [next(it)["index"].tolist() for _ in range(4)]
    state = loader.state_dict()
    assert state == {"epoch": 0, "batches_done": 4}, "the batches handed out, not those the workers drew"
    del it
    again = dm.train_dataloader()
    again.load_state_dict(state)
    assert [*taken, *(b["index"].tolist() for b in again)] == whole
