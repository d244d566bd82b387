import json
import os
import subprocess
import sys

import h5py
import lightning as L
import numpy as np
import pytest
import torch

from livedead.data.datamodule import TileDataModule
from livedead.data.sampler import ChunkBatchSampler, batch_size_of, chunk_segments
from livedead.data.transforms import dihedral_augment
from livedead.errors import LivedeadError, one_line
from tests.helpers import ROOT, keeps_caller_frames


def write_tiles(path, n=400, size=32, chunk=50, dtype=np.uint16, compression=None, n_train=None, extra=True, seed=0):
    """A tile file in the study's layout; the label of a pixel can be read back from its value."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (n, size, size)).astype(np.uint8)
    images = (labels.astype(np.float64) * 1000 + rng.integers(0, 100, labels.shape))[:, None].astype(dtype)
    with h5py.File(path, "w") as f:
        opts = {"chunks": True if chunk is None else (chunk, 1, size, size), "compression": compression}
        f.create_dataset("images", data=images, **opts)
        opts["chunks"] = True if chunk is None else (chunk, size, size)
        f.create_dataset("labels", data=labels, **opts)
        if extra:
            f.create_dataset("class_counts", data=np.stack([(labels == c).sum((1, 2)) for c in range(3)], 1))
        if n_train is not None:
            f.attrs["n_train"] = n_train
    return path


def epoch_tiles(loader):
    out = []
    for batch in loader:
        out.extend(batch["index"].tolist())
    return out


@pytest.fixture
def tiles(tmp_path):
    return write_tiles(tmp_path / "t.h5", n_train=300)


def test_batches_never_cross_a_chunk_and_cover_each_tile_once(tiles):
    dm = TileDataModule(tiles, batch_size=20, num_workers=0, augment=False)
    dm.setup("fit")
    sampler = dm.train_dataloader().sampler
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 18  # 6 chunks of 50, ceil(50 / 20) batches each
        for b in batches:
            assert len({a // 50 for a, _ in b} | {(z - 1) // 50 for _, z in b}) == 1
            assert batch_size_of(b) <= 20
        seen = sorted(i for b in batches for a, z in b for i in range(a, z))
        assert seen == list(range(300))
    assert sorted(epoch_tiles(dm.train_dataloader())) == list(range(300))
    assert sorted(epoch_tiles(dm.val_dataloader())) == list(range(300, 400))


def test_batches_are_reshuffled_each_epoch_and_deterministic():
    def epoch(seed, e):
        s = ChunkBatchSampler(chunk_segments([(0, 300)], 50), 20, seed=seed)
        s.set_epoch(e)
        return list(s)

    assert epoch(0, 0) == epoch(0, 0)
    assert set(epoch(0, 0)) != set(epoch(0, 1)), "batch boundaries move between epochs"
    assert epoch(0, 1) != epoch(1, 1)
    # tiles are not shuffled within a batch: each batch is one or two contiguous slices
    assert all(len(b) in (1, 2) for b in epoch(0, 2))


def test_ranks_get_disjoint_equal_shares():
    segments = chunk_segments([(0, 330)], 50)
    shares = [list(ChunkBatchSampler(segments, 20, num_replicas=2, rank=r)) for r in range(2)]
    assert len(shares[0]) == len(shares[1])
    every = ChunkBatchSampler(segments, 20).epoch_batches(0)
    assert set(shares[0]) | set(shares[1]) == set(every)
    # padding repeats at most world_size - 1 batches
    assert len(shares[0]) + len(shares[1]) - len(every) <= 1


def test_declared_split_is_used(tiles):
    dm = TileDataModule(tiles, batch_size=20, num_workers=0)
    dm.setup()
    assert dm.info.train_ranges == [(0, 300)]
    assert dm.info.val_ranges == [(300, 400)]
    assert "declared" in dm.info.split_note


def test_batch_split_without_declaration_is_stable_and_disjoint(tmp_path):
    path = write_tiles(tmp_path / "study.h5", n=1000, chunk=100, extra=False)
    infos = []
    for seed in (0, 0, 1):
        dm = TileDataModule(path, batch_size=50, seed=seed, num_workers=0)
        dm.setup()
        infos.append(dm.info)
    train = {i for a, b in infos[0].train_ranges for i in range(a, b)}
    val = {i for a, b in infos[0].val_ranges for i in range(a, b)}
    assert train.isdisjoint(val)
    assert len(train | val) == 1000
    assert len(val) == 100, "about 90:10, in whole batches"
    assert infos[0].val_ranges == infos[1].val_ranges
    assert infos[0].val_ranges != infos[2].val_ranges
    assert "seed 0" in infos[0].split_note


def test_dataset_normalisation_is_cached_and_refreshed(tiles):
    dm = TileDataModule(tiles, batch_size=20, num_workers=0, augment=False)
    dm.setup()
    with h5py.File(tiles) as f:
        train = f["images"][:300].astype(np.float64)
    assert dm.mean == pytest.approx(train.mean(), rel=1e-6)
    assert dm.std == pytest.approx(train.std(), rel=1e-6)
    # batches live in reused buffers: keeping them past the next few batches needs a copy
    x = torch.cat([dm.on_after_batch_transfer(b, 0)["image"].clone() for b in dm.train_dataloader()])
    assert abs(float(x.mean())) < 1e-3
    assert float(x.std()) == pytest.approx(1.0, abs=1e-3)
    cache = tiles.with_name("t.h5.livedead-cache.npz")
    assert cache.exists()
    with h5py.File(tiles, "a") as f:  # a changed file invalidates the cache
        f["images"][0] = 60000
    dm2 = TileDataModule(tiles, batch_size=20, num_workers=0)
    dm2.setup()
    assert dm2.mean > dm.mean


def test_percentile_normalisation(tiles):
    dm = TileDataModule(tiles, batch_size=20, num_workers=0, normalize="percentile", percentiles=(1, 99))
    dm.setup()
    x = dm.on_after_batch_transfer(next(iter(dm.val_dataloader())), 0)["image"].flatten(1)
    assert torch.allclose(torch.quantile(x, 0.01, dim=1), torch.zeros(len(x)), atol=1e-4)
    assert torch.allclose(torch.quantile(x, 0.99, dim=1), torch.ones(len(x)), atol=1e-4)


def test_augmentation_keeps_image_and_label_aligned():
    labels = torch.randint(0, 3, (64, 16, 16), dtype=torch.uint8)
    images = labels[:, None].float() * 10 + torch.arange(256.0).view(1, 1, 16, 16) / 1000
    out_images, out_labels = dihedral_augment(images, labels, torch.Generator().manual_seed(0))
    assert torch.equal((out_images[:, 0] / 10).floor().to(torch.uint8), out_labels)
    # each tile is one of the 8 symmetries of its original, and they are not all the identity
    identity = [torch.equal(a, b) for a, b in zip(out_images, images, strict=True)]
    assert 0 < sum(identity) < 64
    for a, b in zip(out_images, images, strict=True):
        options = [torch.rot90(b, k, (-2, -1)) for k in range(4)] + [
            torch.rot90(b.flip(-1), k, (-2, -1)) for k in range(4)
        ]
        assert any(torch.equal(a, o) for o in options)


class Probe(L.LightningModule):
    """A one-weight module that records, per stage, what ``check(batch)`` says of each batch Lightning hands it."""

    def __init__(self, check):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.check = check
        self.same = {"train": [], "val": []}

    def training_step(self, batch, _):
        self.same["train"] += self.check(batch)
        return (self.w - 1).pow(2).sum()

    def validation_step(self, batch, _):
        self.same["val"] += self.check(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit_probe(probe: Probe, dm: TileDataModule, **limits) -> None:
    L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, **limits,
    ).fit(probe, datamodule=dm)  # fmt: skip


def test_augmentation_only_in_training(tiles):
    dm = TileDataModule(tiles, batch_size=20, num_workers=0)

    def unchanged(batch):
        labels_back = (batch["image"][:, 0] * dm.std + dm.mean).div(1000).floor().to(torch.uint8)
        return [torch.equal(labels_back, batch["label"])]

    probe = Probe(unchanged)
    fit_probe(probe, dm)
    assert all(probe.same["train"])
    assert all(probe.same["val"])


def test_intensity_augmentation_changes_training_tiles_only(tiles):
    """``data.intensity``: every training tile gets its own look (its pixels, in any order, are not the
    normalised file's), validation tiles are as the file holds them."""
    dm = TileDataModule(tiles, batch_size=20, num_workers=0, intensity={"contrast": 0.3, "gamma": 0.3, "blur": 1.0})
    dm.setup()
    with h5py.File(tiles) as f:
        raw = torch.from_numpy(f["images"][:].astype(np.float32))

    def unchanged(batch):
        expected = dm.normalize(raw[batch["index"]]).flatten(1).sort(1).values  # flips keep a tile's pixels
        return torch.isclose(batch["image"].flatten(1).sort(1).values, expected, atol=1e-4).all(1).tolist()

    probe = Probe(unchanged)
    fit_probe(probe, dm, limit_train_batches=3, limit_val_batches=2)
    assert len(probe.same["train"]) == 60
    assert not any(probe.same["train"])
    assert all(probe.same["val"])


def test_an_unknown_intensity_setting_is_one_line(tiles):
    with pytest.raises(LivedeadError, match=r"config key 'data.intensity': expected keys of .*, found \['sharpen'\]"):
        TileDataModule(tiles, intensity={"gamma": 0.2, "sharpen": 1.0})


def test_optional_datasets_absent_counts_computed_and_cached(tmp_path):
    path = write_tiles(tmp_path / "bare.h5", extra=False)
    dm = TileDataModule(path, batch_size=20, num_workers=0)
    dm.setup()
    with h5py.File(path) as f:
        labels = f["labels"][:]
    expected = np.stack([(labels == c).sum((1, 2)) for c in range(3)], 1)
    np.testing.assert_array_equal(dm.info.class_counts, expected)
    assert (tmp_path / "bare.h5.livedead-cache.npz").exists()
    with np.load(tmp_path / "bare.h5.livedead-cache.npz") as z:
        np.testing.assert_array_equal(z["class_counts_labels"], expected)
    train = sum(expected[a:b].sum(0) for a, b in dm.info.train_ranges)
    np.testing.assert_array_equal(dm.train_class_counts, train)


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
@pytest.mark.parametrize("workers", [0, 2])
def test_compressed_files_read_each_chunk_once(tmp_path, compression, workers):
    path = write_tiles(tmp_path / "c.h5", n=400, chunk=64, compression=compression, n_train=320)
    dm = TileDataModule(path, batch_size=20, num_workers=workers, augment=False, persistent_workers=False)
    dm.setup()
    assert dm.info.compressed
    assert dm.info.chunk == 64
    seen = epoch_tiles(dm.train_dataloader())
    assert sorted(seen) == list(range(320))
    with h5py.File(path) as f:
        batch = next(iter(dm.val_dataloader()))
        np.testing.assert_array_equal(batch["image"].numpy(), f["images"][batch["index"].numpy()])
        np.testing.assert_array_equal(batch["label"].numpy(), f["labels"][batch["index"].numpy()])
    if workers == 0:  # count decompressions in-process
        dataset = dm.train_dataloader().dataset
        loads = []
        original = dataset._load_chunk
        dataset._load_chunk = lambda c, *a: (loads.append(c) if c != dataset._chunk_id else None, original(c, *a))
        for b in dm.train_dataloader().sampler:
            dataset[b]
        assert sorted(loads) == sorted(set(loads)), "a chunk was decompressed twice"


def test_workers_write_into_rings_shared_once_and_batches_match_the_file(tmp_path):
    """Two persistent workers over two epochs: every batch is the file's tiles, normalised by the workers
    as the main process would, and every batch the main process sees is a view of a ring it shared
    before the workers started (nothing mapped per batch)."""
    path = write_tiles(tmp_path / "w.h5", n=400, chunk=64, n_train=320)
    dm = TileDataModule(path, batch_size=20, num_workers=2, augment=False, persistent_workers=True, pin_memory=False)
    dm.setup()
    loader = dm.train_dataloader()
    with h5py.File(path) as f:
        images, labels = f["images"][:], f["labels"][:]
    storages = set()
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        seen = []
        for batch in loader:
            idx = batch["index"].numpy()
            np.testing.assert_array_equal(batch["image"].numpy(), images[idx])
            np.testing.assert_array_equal(batch["label"].numpy(), labels[idx])
            storages.add(batch["image"].untyped_storage().data_ptr())
            seen.extend(idx.tolist())
            # for the CPU the workers normalised it too, as the main process would have
            assert batch["input"].dtype == torch.float32
            torch.testing.assert_close(dm.on_after_batch_transfer(batch, 0)["image"], dm.normalize(batch["image"]))
        assert sorted(seen) == list(range(320))
    rings = loader.dataset._shared
    assert len(rings) == 2
    shared = {slot["image"].untyped_storage().data_ptr() for ring in rings for slot in ring}
    assert storages <= shared


def test_a_split_that_starts_inside_a_chunk_of_a_chunk_read_file(tmp_path):
    """Setup checks the first batch of each split; in a file read a chunk at a time (compressed or
    checksummed, as prepare writes it), that batch must end at its chunk's end too."""
    path = write_tiles(tmp_path / "c.h5", n=400, chunk=64, compression="lzf", n_train=370)
    dm = TileDataModule(path, batch_size=20, num_workers=0, augment=False, persistent_workers=False)
    dm.setup()  # validation starts at tile 370; the chunk ends at 384
    assert sorted(epoch_tiles(dm.val_dataloader())) == list(range(370, 400))


def test_a_datamodule_keeps_no_frame_of_its_caller_alive(tmp_path):
    """Lightning's ``save_hyperparameters``, left to find the caller's frame itself, keeps its own frame in a
    reference cycle, and with it every frame above: a loader made there, and its workers, then lived on until a
    garbage collection, which closed their queues first and waited 5 s a worker to kill them."""
    path = write_tiles(tmp_path / "t.h5", n=100, chunk=50, n_train=50)
    assert not keeps_caller_frames(lambda: TileDataModule(path, num_workers=0))


def test_any_chunking_and_uint8_and_float32(tmp_path):
    for dtype in (np.uint8, np.float32):
        path = write_tiles(tmp_path / f"{np.dtype(dtype).name}.h5", chunk=None, dtype=np.uint16, n_train=300)
        with h5py.File(path, "a") as f:
            data = f["images"][:]
            del f["images"]
            f.create_dataset("images", data=(data // 10).astype(dtype), chunks=(33, 1, 32, 32))
        dm = TileDataModule(path, batch_size=20, num_workers=0)
        dm.setup()
        assert dm.info.chunk == 33
        assert sorted(epoch_tiles(dm.train_dataloader())) == list(range(300))


class Recorder(L.LightningModule):
    """Records which tiles each rank trains on, per epoch."""

    def __init__(self, out_dir: str):
        super().__init__()
        self.out_dir = out_dir
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def training_step(self, batch, _):
        self.seen.extend(batch["index"].tolist())
        return (self.w - batch["image"].mean()).pow(2).sum()

    def on_train_epoch_end(self):
        path = os.path.join(self.out_dir, f"rank{self.global_rank}_epoch{self.current_epoch}.json")
        with open(path, "w") as f:
            json.dump(self.seen, f)
        self.seen = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.slow
def test_ddp_two_cpu_processes_read_disjoint_equal_shares(tmp_path):
    """Two gloo processes under a real Trainer; a subprocess with a timeout, so a hang fails the test."""
    path = write_tiles(tmp_path / "ddp.h5", n=480, chunk=60, n_train=400)
    script = f"""
import lightning as L
from livedead.data.datamodule import TileDataModule
from tests.data.test_datamodule import Recorder
if __name__ == "__main__":
    dm = TileDataModule({str(path)!r}, batch_size=20, num_workers=1, augment=False)
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", max_epochs=2, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0)
    trainer.fit(Recorder({str(tmp_path)!r}), datamodule=dm)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for epoch in range(2):
        ranks = [json.loads((tmp_path / f"rank{r}_epoch{epoch}.json").read_text()) for r in range(2)]
        assert len(ranks[0]) == len(ranks[1]) == 200
        assert set(ranks[0]).isdisjoint(ranks[1])
        assert sorted(ranks[0] + ranks[1]) == list(range(400))
    assert json.loads((tmp_path / "rank0_epoch0.json").read_text()) != json.loads(
        (tmp_path / "rank0_epoch1.json").read_text()
    )


# --- bad input: found at setup() or first read, one line naming the file and dataset ---------


def _setup(path, **kw):
    dm = TileDataModule(path, num_workers=0, **{"batch_size": 20, **kw})
    dm.setup()
    return dm


def test_wrong_number_of_dimensions(tmp_path):
    path = tmp_path / "dims.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((40, 32, 32), np.uint16))
        f.create_dataset("labels", data=np.zeros((40, 32, 32), np.uint8))
    with pytest.raises(LivedeadError, match=r"dims.h5: dataset '/images': expected \(N, 1, H, W\), found shape"):
        _setup(path)


def test_images_and_labels_disagree(tmp_path):
    for shape in ((39, 32, 32), (40, 32, 30)):
        path = tmp_path / "mismatch.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("images", data=np.zeros((40, 1, 32, 32), np.uint16))
            f.create_dataset("labels", data=np.zeros(shape, np.uint8))
        with pytest.raises(LivedeadError, match="mismatch.h5: datasets '/images'.*'/labels'.*disagree"):
            _setup(path)


def test_label_values_outside_classes_at_first_read(tmp_path):
    path = write_tiles(tmp_path / "classes.h5", n_train=300)
    with h5py.File(path, "a") as f:
        f["labels"][150, 0, 0] = 7
    dm = _setup(path)  # tile 150 is not in the first batch of either split
    with pytest.raises(LivedeadError, match=r"classes.h5: dataset '/labels': expected classes 0..2, found 7"):
        epoch_tiles(dm.train_dataloader())


def test_label_error_from_a_worker_is_one_line(tmp_path):
    path = write_tiles(tmp_path / "classes.h5", n_train=300)
    with h5py.File(path, "a") as f:
        f["labels"][150, 0, 0] = 9
    dm = TileDataModule(path, batch_size=20, num_workers=2, persistent_workers=False)
    dm.setup()
    with pytest.raises(LivedeadError) as info:
        epoch_tiles(dm.train_dataloader())
    assert one_line(info.value).startswith(f"{path}: dataset '/labels': expected classes 0..2, found 9")


def test_nan_or_inf_in_float_images(tmp_path):
    path = write_tiles(tmp_path / "nan.h5", dtype=np.float32, n_train=300)
    with h5py.File(path, "a") as f:
        f["images"][310, 0, 3, 3] = np.inf
    with pytest.raises(LivedeadError, match="nan.h5: dataset '/images': expected finite values, found NaN or Inf"):
        _setup(path, normalize="none")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    h5py.File(path, "w").close()
    with pytest.raises(LivedeadError, match=r"empty.h5: dataset '/images' not found"):
        _setup(path)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", shape=(0, 1, 32, 32), dtype=np.uint16)
        f.create_dataset("labels", shape=(0, 32, 32), dtype=np.uint8)
    with pytest.raises(LivedeadError, match="empty.h5: dataset '/images': expected tiles, found an empty dataset"):
        _setup(path)


def test_fewer_tiles_than_one_batch(tmp_path):
    path = write_tiles(tmp_path / "few.h5", n=15, chunk=15)
    with pytest.raises(
        LivedeadError, match="few.h5: dataset '/images': expected at least one batch of 20 tiles, found 15"
    ):
        _setup(path)


def test_batch_larger_than_chunk(tiles):
    with pytest.raises(LivedeadError, match="'data.batch_size': expected <= the file's chunk of 50 tiles, found 80"):
        _setup(tiles, batch_size=80)


def test_all_tiles_one_class(tmp_path):
    path = write_tiles(tmp_path / "one.h5", extra=False)
    with h5py.File(path, "a") as f:
        f["labels"][:] = 0
    with pytest.raises(LivedeadError, match="one.h5: dataset '/labels': expected at least two classes"):
        _setup(path)


def test_missing_file(tmp_path):
    with pytest.raises(LivedeadError, match="nope.h5: tile file not found"):
        _setup(tmp_path / "nope.h5")
