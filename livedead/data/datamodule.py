"""The LightningDataModule that streams chunk-aligned batches from an HDF5 tile file.

It puts the data package's parts together: the file's checks and split
(:mod:`livedead.data.tilefile`), the per-epoch batch order (:mod:`livedead.data.sampler`), the
batch reader (:mod:`livedead.data.dataset`) and, on the device, normalisation and augmentation
(:mod:`livedead.data.transforms`) in :meth:`TileDataModule.on_after_batch_transfer`.

The tensors of a batch live in reused buffers (that reuse is what keeps page faults out of the
read path): code that keeps a batch beyond the next few must ``clone()`` it.

Everything that can be checked before training is checked in :meth:`TileDataModule.setup`, and
value checks run on every batch read; both fail with one line naming the file and dataset.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info

from livedead.data.dataset import ON_BAD_CHUNK, TileBatches, TileLoader
from livedead.data.preparation import prepare_synthetic
from livedead.data.sampler import ChunkBatchSampler, Slice, chunk_segments
from livedead.data.tilefile import TileFileInfo, fingerprint, image_statistics, inspect_tile_file
from livedead.data.transforms import (
    NORMALIZE_MODES,
    IntensityAugment,
    Normalization,
    dihedral_augment,
    intensity_augment,
    normalize_,
)
from livedead.errors import LivedeadError

OUTPUT_RING = 3  # normalised batches alive at once: the one in use, its backward, one spare


class TrainLoader(TileLoader):
    """The training loader, which resumes mid-epoch through Lightning's own interface.

    Lightning's fit loop saves the ``state_dict()`` of a train dataloader that has one in every
    checkpoint (``loops.fit_loop.state_dict.combined_loader``) and hands it to ``load_state_dict()``
    when a run resumes. The state is the sampler's (:meth:`ChunkBatchSampler.state_dict`: the epoch
    and the batches done), counted here as the batches are handed out: the workers draw from the
    sampler ahead of training.
    """

    sampler: ChunkBatchSampler

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in super().__iter__():
            self.sampler.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.load_state_dict(state)


def intensity_settings(intensity: dict[str, float] | None) -> IntensityAugment | None:
    """The ``data.intensity`` settings, or one line naming the key that is not one of them."""
    if not intensity:
        return None
    known = IntensityAugment.__dataclass_fields__
    unknown = sorted(set(intensity) - set(known))
    if unknown:
        raise LivedeadError(f"config key 'data.intensity': expected keys of {sorted(known)}, found {unknown}")
    return IntensityAugment(**intensity)


class TileDataModule(L.LightningDataModule):
    """Chunk-aligned HDF5 batches for training and validation (see the module docstring).

    Args:
        path: the tile file.
        batch_size: tiles per batch; at most the file's chunk length.
        images_key, labels_key, class_counts_key: dataset names.
        num_classes: label classes (0 background, 1 DAPI, 2 Cy5).
        val_fraction, seed: the split for files that do not declare ``attrs["n_train"]``, and the
            seed of the per-epoch batch order.
        normalize: ``dataset`` (mean and std of the training split, cached beside the file),
            ``percentile`` (each tile scaled between its own low and high percentiles) or ``none``.
        percentiles: the low and high percentiles of ``percentile`` mode.
        stats_tiles: at most this many training tiles, in whole chunks spread over the split,
            estimate the ``dataset`` statistics.
        augment: random flips and 90-degree rotations of training batches.
        intensity: :class:`~livedead.data.transforms.IntensityAugment` settings as a dict (contrast,
            brightness, gamma, blur, blur_p) for training batches, after normalisation (with ``augment``);
            None: none.
        num_workers, prefetch_factor, persistent_workers, pin_memory: DataLoader settings;
            ``pin_memory=None`` pins only when CUDA is available.
        synthetic: a :class:`livedead.plates.synthetic.PlateSpec` as a dict: if ``path`` does not exist,
            :meth:`prepare_data` generates that plate and prepares it into ``path`` (cached).
        prepare_workers: processes that prepare the synthetic plate (None: one per CPU).
        on_bad_chunk: a chunk that fails its checksum (or cannot be decoded) is ``error`` (one line
            naming the file, dataset and tiles) or ``skip``: its batches are left out and counted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        batch_size: int = 100,
        images_key: str = "images",
        labels_key: str = "labels",
        class_counts_key: str = "class_counts",
        num_classes: int = 3,
        val_fraction: float = 0.1,
        seed: int = 0,
        normalize: str = "dataset",
        percentiles: tuple[float, float] = (1.0, 99.0),
        stats_tiles: int = 20_000,
        augment: bool = True,
        intensity: dict[str, float] | None = None,
        num_workers: int = 2,
        prefetch_factor: int = 4,
        persistent_workers: bool = True,
        pin_memory: bool | None = None,
        synthetic: dict[str, Any] | None = None,
        prepare_workers: int | None = None,
        on_bad_chunk: str = "error",
    ) -> None:
        super().__init__()
        if on_bad_chunk not in ON_BAD_CHUNK:
            raise LivedeadError(
                f"config key 'data.on_bad_chunk': expected one of {ON_BAD_CHUNK}, found {on_bad_chunk!r}"
            )
        if normalize not in NORMALIZE_MODES:
            raise LivedeadError(f"config key 'data.normalize': expected one of {NORMALIZE_MODES}, found {normalize!r}")
        if batch_size < 1:
            raise LivedeadError(f"config key 'data.batch_size': expected >= 1, found {batch_size}")
        # our own frame, passed in: Lightning's lookup of it keeps its own frame in a reference cycle, and with it
        # the caller's (its loaders, their workers) until a garbage collection, which then waited 5 s a worker
        self.save_hyperparameters(logger=False, frame=inspect.currentframe())
        self.hparams.path = str(path)  # plain types only: checkpoints load with weights_only=True
        self.hparams.percentiles = list(percentiles)
        self.path = Path(path)
        self.hparams.intensity = {str(k): float(v) for k, v in intensity.items()} if intensity else None
        self.intensity = intensity_settings(self.hparams.intensity)
        self.info: TileFileInfo | None = None
        self.mean = 0.0
        self.std = 1.0
        self._outputs: dict[tuple[torch.device, torch.Size], list[torch.Tensor]] = {}  # see normalize()
        self._output_slot = 0

    # -- setup ---------------------------------------------------------------------------
    def prepare_data(self) -> None:
        if self.hparams.synthetic is not None and not self.path.exists():
            rank_zero_info(f"livedead: generating the synthetic plate for {self.path} (first use; cached)")
            prepare_synthetic(self.path, dict(self.hparams.synthetic), workers=self.hparams.prepare_workers)

    def setup(self, stage: str | None = None) -> None:
        if self.info is not None:
            return
        hp = self.hparams
        self.info = inspect_tile_file(
            self.path,
            hp.images_key,
            hp.labels_key,
            hp.class_counts_key,
            hp.num_classes,
            hp.batch_size,
            hp.val_fraction,
            hp.seed,
            on_count=rank_zero_info,
            on_bad_chunk=hp.on_bad_chunk,
        )
        if hp.normalize == "dataset":
            self.mean, self.std = image_statistics(
                self.path, hp.images_key, self.info.train_ranges, self.info.chunk, hp.stats_tiles, hp.on_bad_chunk
            )
        dataset = self._dataset()
        for ranges in (self.info.train_ranges, self.info.val_ranges):
            first = ranges[0][0]
            last = min(first + hp.batch_size, ranges[0][1], (first // self.info.chunk + 1) * self.info.chunk)
            dataset[((first, last),)]  # value checks before any worker starts (a batch, inside one chunk)
        dataset.close()  # no handle may be open when the workers fork
        rank_zero_info(
            f"livedead: {self.path}: {self.info.n:,} tiles of {self.info.height}x{self.info.width} "
            f"{self.info.dtype}, chunks of {self.info.chunk}{' (compressed)' if self.info.compressed else ''}; "
            f"split {self.info.split_note}"
        )

    def _dataset(self) -> TileBatches:
        assert self.info is not None
        hp = self.hparams
        ring = (hp.prefetch_factor if hp.num_workers > 0 else 0) + 4
        return TileBatches(
            self.info, hp.images_key, hp.labels_key, hp.num_classes, hp.batch_size, ring, hp.on_bad_chunk
        )

    # -- loaders -------------------------------------------------------------------------
    @property
    def train_class_counts(self) -> np.ndarray:
        """Pixels of each class over the training split (for class weights)."""
        assert self.info is not None, "call setup() first"
        return sum((self.info.class_counts[a:b].sum(axis=0) for a, b in self.info.train_ranges), 0)

    def normalization(self) -> Normalization:
        """How raw pixels become network input; stored in checkpoints so inference does the same."""
        lo, hi = self.hparams.percentiles
        return Normalization(self.hparams.normalize, float(self.mean), float(self.std), (float(lo), float(hi)))

    def overlay_tiles(self, k: int) -> dict[str, torch.Tensor]:
        """``k`` fixed validation tiles that hold both stains, spread over the split, normalised.

        The same tiles every epoch, so that the overlays show the model learning on them. They are
        spread evenly over the two-stain tiles rather than the richest ones, which would be the
        same place at neighbouring time points.
        """
        assert self.info is not None, "call setup() first"
        val = np.concatenate([np.arange(a, b) for a, b in self.info.val_ranges])
        counts = self.info.class_counts[val]
        both = np.minimum(counts[:, 1], counts[:, 2]) if counts.shape[1] > 2 else counts[:, 1:].sum(1)
        candidates = val[both > 0] if (both > 0).sum() >= k else val[np.argsort(-both, kind="stable")[:k]]
        picked = np.unique(candidates[np.linspace(0, len(candidates) - 1, min(k, len(candidates))).astype(int)])
        dataset = self._dataset()
        parts = [dataset[((int(i), int(i) + 1),)] for i in picked]
        dataset.close()
        image = torch.cat([p["image"] for p in parts])
        return {"image": self.normalize(image), "label": torch.cat([p["label"] for p in parts]).clone()}

    def _loader(self, ranges: list[Slice], shuffle: bool) -> TileLoader:
        """The training split's loader (``shuffle``) is a :class:`TrainLoader`, resumable mid-epoch."""
        assert self.info is not None
        hp = self.hparams
        sampler = ChunkBatchSampler(
            chunk_segments(ranges, self.info.chunk),
            hp.batch_size,
            shuffle=shuffle,
            seed=hp.seed,
            chunk_major=self.info.compressed,
            num_workers=hp.num_workers,
        )
        workers = hp.num_workers > 0
        dataset = self._dataset()
        if workers and self._for_cpu():
            dataset.normalization = self.normalization()
        return (TrainLoader if shuffle else TileLoader)(
            dataset,
            batch_size=None,
            sampler=sampler,
            num_workers=hp.num_workers,
            persistent_workers=hp.persistent_workers and workers,
            prefetch_factor=hp.prefetch_factor if workers else None,
            pin_memory=torch.cuda.is_available() if hp.pin_memory is None else hp.pin_memory,
        )

    def _for_cpu(self) -> bool:
        """Whether the batches are for the CPU: the trainer's device, or without a trainer, no CUDA."""
        if self.trainer is not None:
            return self.trainer.strategy.root_device.type == "cpu"
        return not torch.cuda.is_available()

    def train_dataloader(self) -> TrainLoader:
        assert self.info is not None, "call setup() first"
        return self._loader(self.info.train_ranges, shuffle=True)

    # -- checkpoints: which file the run read (where in its epoch it is, the train loader records) ----
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint records of the data: the tile file's fingerprint."""
        return {"tile_file": fingerprint(self.path)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume: only on the tile file the checkpoint was trained on."""
        saved, now = state.get("tile_file"), fingerprint(self.path)
        if saved and saved != now:
            changed = ", ".join(k for k in now if now[k] != saved.get(k))
            raise LivedeadError(
                f"{self.path}: expected the tile file the checkpoint was trained on, found another ({changed} "
                "differ): restore that file, or start a new run"
            )

    def val_dataloader(self) -> TileLoader:
        assert self.info is not None, "call setup() first"
        return self._loader(self.info.val_ranges, shuffle=False)

    # -- on the device -------------------------------------------------------------------
    def normalize(self, image: torch.Tensor, reuse: bool = False) -> torch.Tensor:
        """Raw pixels to float32 network input, on whatever device the batch is on.

        ``reuse`` writes into a small ring of preallocated outputs instead of a fresh tensor: on
        the CPU the page faults of a fresh 10 MB allocation cost ten times the arithmetic. Only
        the per-batch path uses it; a batch is consumed long before its slot comes round again.
        """
        return normalize_(self._output(image) if reuse else image.to(torch.float32), self.normalization())

    def _output(self, image: torch.Tensor) -> torch.Tensor:
        key = (image.device, image.shape[1:])
        if key not in self._outputs:
            shape = (self.hparams.batch_size, *image.shape[1:])
            self._outputs[key] = [torch.empty(shape, device=image.device) for _ in range(OUTPUT_RING)]
        self._output_slot = (self._output_slot + 1) % OUTPUT_RING
        return self._outputs[key][self._output_slot][: image.shape[0]].copy_(image)

    def _augment_generator(self, batch: dict[str, torch.Tensor], epoch: int) -> torch.Generator:
        """A batch's augmentations are a function of the seed, the epoch and the batch's first tile, so a
        resumed run draws the same ones as an uninterrupted run, whatever else used the global RNG."""
        first = int(batch["index"][0]) if len(batch["index"]) else 0
        seed = int(np.random.SeedSequence([self.hparams.seed, epoch, first]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        image = batch["input"] if "input" in batch else self.normalize(batch["image"], reuse=True)
        label = batch["label"]
        trainer = self.trainer
        if self.hparams.augment and trainer is not None and trainer.training:
            generator = self._augment_generator(batch, trainer.current_epoch)
            image, label = dihedral_augment(image, label, generator)
            if self.intensity is not None:
                image = intensity_augment(image, self.intensity, generator)
        out = {"image": image, "label": label, "index": batch["index"]}
        if "skipped" in batch:  # a damaged chunk's batch, left out (on_bad_chunk=skip)
            out["skipped"] = batch["skipped"]
        return out
