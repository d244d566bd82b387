"""Resuming a run folder: its saved config, its latest checkpoint, and the TensorBoard files it goes on in.

``resume=<run folder>`` (and a rerun sweep job) continues a run in its own folder from its
checkpoint that got furthest and loads, with the config it started with. What a resumed run needs of the
training itself, besides Lightning's own restore, is :class:`livedead.model.callbacks.ExactResume`'s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from livedead.errors import LivedeadError
from livedead.files import remove_stale_temporaries
from livedead.model.callbacks import first_unsaved_step

RESUMABLE_KEYS = ("trainer.max_epochs", "trainer.min_epochs", "validate_best")


def saved_config(run: Path) -> DictConfig:
    """The config a run folder's latest session ran with: its latest resumed record, else its first.

    Hydra records every session of a folder (``livedead.config.resolvers.hydra_subdir``): the first
    in ``.hydra/``, each later one in ``.hydra/resume-<time>-<pid>/``, where ``resumed_config.yaml`` is
    what that session actually ran (the first session's config with the changes it was allowed).
    """
    resumed = sorted(run.glob(".hydra/resume-*/resumed_config.yaml"))
    return OmegaConf.load(resumed[-1] if resumed else run / ".hydra" / "config.yaml")


def checkpoints(run: Path) -> tuple[list[Path], list[Path]]:
    """A run folder's checkpoints that load, the furthest first, and those that do not.

    Furthest by global step; of one step, ``last.ckpt`` (the end of the last validated epoch), then
    the periodic ``step_*.ckpt`` (mid-epoch), then the best-so-far ``epoch_*.ckpt``, each a full
    state to resume from. A checkpoint that cannot be read (truncated by a broken copy, a full
    disk outside the package's own atomic saves) is set aside, so a resume falls back to the next.
    """
    whole, unreadable = [], []
    for path in (run / "checkpoints").glob("*.ckpt"):
        if ".tmp-" in path.name:  # a save cut off: never under a final name
            continue
        try:
            whole.append((checkpoint_step(str(path)), path.name == "last.ckpt", path.name.startswith("step_"), path))
        except (RuntimeError, OSError, EOFError, ValueError):
            unreadable.append(path)
    return [w[-1] for w in sorted(whole, key=lambda w: w[:3], reverse=True)], sorted(unreadable)


def latest_checkpoint(run: Path) -> Path | None:
    """The checkpoint of a run folder that got furthest and loads (:func:`checkpoints`)."""
    whole, _ = checkpoints(run)
    return whole[0] if whole else None


def check_run_folder(run: Path) -> tuple[Path, list[Path]]:
    """The checkpoint to resume the run folder ``run`` from, and its checkpoints that do not load; one line
    for a folder that is no run to resume.

    Called by the command before Hydra writes its record into the folder, so a refused
    ``resume=`` leaves the folder as it was.
    """
    if not run.is_dir():
        found = "a file" if run.exists() else "nothing"
        raise LivedeadError(f"config key 'resume': expected a run folder, found {found} at {run}")
    if not (run / ".hydra" / "config.yaml").exists():
        raise LivedeadError(f"config key 'resume': expected a run folder with .hydra/config.yaml, found none in {run}")
    whole, unreadable = checkpoints(run)
    if not whole:
        found = f"only unreadable ones ({', '.join(p.name for p in unreadable)})" if unreadable else "none"
        folder = run / "checkpoints"
        raise LivedeadError(f"config key 'resume': expected a checkpoint that loads in {folder}, found {found}")
    return whole[0], unreadable


def resume_config(run: Path) -> DictConfig:
    """The saved config of the run in folder ``run``, to continue from its latest checkpoint.

    Overrides that repeat the run's own settings are accepted (``++key=value`` as ``key=value``);
    of the rest, only ``RESUMABLE_KEYS`` may change (to train longer, say). The result is recorded
    beside this session's Hydra record.
    """
    hydra_saved = run / ".hydra" / "hydra.yaml"
    last, unreadable = check_run_folder(run)
    resumed = saved_config(run)
    choices = OmegaConf.load(hydra_saved).hydra.runtime.choices if hydra_saved.exists() else {}
    hc = HydraConfig.get()
    for override in hc.overrides.task:
        key, _, text = override.partition("=")
        key = key.lstrip("+~")  # ++key=value forces a key that exists: the same key for comparison
        if key in ("resume", "resume_sweep", "ckpt_path"):
            continue
        value = yaml.safe_load(text) if text else None  # Hydra override values are YAML scalars
        if key in RESUMABLE_KEYS:
            OmegaConf.update(resumed, key, value, force_add=True)
            continue
        old = choices.get(key) if key in choices else OmegaConf.select(resumed, key)
        old = OmegaConf.to_container(old) if OmegaConf.is_config(old) else old
        if old != value:
            raise LivedeadError(
                f"config key '{key}': a resumed run keeps its config ({key}={old}); "
                f"only {', '.join(RESUMABLE_KEYS)} may change, found {key}={text}"
            )
    remove_stale_temporaries(run / "checkpoints")  # saves the kill cut off; only once the resume is accepted
    if unreadable:  # set aside: Lightning would save the new last.ckpt beside it, as last-v1.ckpt
        for path in unreadable:
            path.rename(path.with_name(path.name + ".unreadable"))
        names = ", ".join(p.name for p in unreadable)
        print(
            f"train.py: {names} in {run / 'checkpoints'} cannot be read (kept as *.unreadable): "
            f"resuming from {last.name} (step {checkpoint_step(str(last))}), the furthest that loads",
            file=sys.stderr,
        )
    with open_dict(resumed):
        resumed.resume = str(run)
        resumed.ckpt_path = str(last)
    record = Path(hc.runtime.output_dir) / str(hc.output_subdir)
    if record.name != ".hydra":  # this session's own record, beside Hydra's
        record.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(resumed, record / "resumed_config.yaml")
    return resumed


def checkpoint_step(path: str) -> int:
    """The global step a checkpoint was saved at (memory-mapped: the weights are not read)."""
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0))


def purge_step(path: str) -> int:
    """The TensorBoard step a run resumed from this checkpoint purges from: what it logs again."""
    return first_unsaved_step(torch.load(path, map_location="cpu", weights_only=True, mmap=True))


def after_earlier_event_files(folder: Path) -> None:
    """Wait, at most a second, until an event file made now sorts after the folder's others.

    TensorBoard reads a folder's event files in name order, and a name begins with the second it
    was made in, then the host and the process id: a session resumed within the second its killed
    run started in could sort first, and its steps would be read before the ones it continues.
    """
    stamps = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*") if p.name.split(".")[3].isdigit()]
    while stamps and time.time() < max(stamps) + 1:
        time.sleep(0.05)
