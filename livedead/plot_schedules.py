"""Draw the configured learning-rate schedules under one validation-loss sequence with plateaus.

The study's scheduler-comparison figure: cosine annealing with warm restarts, reduce-on-plateau
and cosine annealing with kicks, each built from its ``conf/scheduler/*.yaml`` and driven through
the same epochs with the same metric, so settings can be chosen before GPU hours are spent.

CLI (Hydra, config ``conf/plot_schedules.yaml``)::

    python -m livedead.plot_schedules [epochs=100 lr=0.05 output=docs/schedules.png]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from livedead.errors import LivedeadError, atomic_path, cli_errors


def metric_sequence(epochs: int, plateaus: list[list[int]], noise: float, seed: int) -> np.ndarray:
    """A validation loss that decays except during ``plateaus`` ([start, stop) epochs), plus noise."""
    slope = np.full(epochs, 0.04)
    for a, b in plateaus:
        slope[a:b] = 0.0
    loss = 0.3 + 0.7 * np.exp(-np.cumsum(slope))
    return loss + np.random.default_rng(seed).normal(0, noise, epochs)


def trajectory(spec: DictConfig, lr: float, metric: np.ndarray) -> np.ndarray:
    """Learning rate at the start of every epoch, stepping the scheduler as Lightning would."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    if spec.get("scheduler") is None:
        return np.full(len(metric), lr)
    scheduler = hydra.utils.instantiate(spec.scheduler)(optimizer=optimizer)
    settings = spec.get("scheduler_config") or {}
    with_metric = settings.get("reduce_on_plateau") or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    lrs = []
    for value in metric:
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step(float(value)) if with_metric else scheduler.step()
    return np.asarray(lrs)


def plot(schedules: dict[str, np.ndarray], metric: np.ndarray, title: str) -> Figure:
    fig = Figure(figsize=(8, 5.5), dpi=110)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    epochs = np.arange(len(metric))
    for name, lrs in schedules.items():
        top.plot(epochs, lrs, label=name, lw=1.8)
    top.set_ylabel("learning rate")
    top.set_title(title)
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(epochs, metric, color="black", lw=1.2)
    bottom.set_ylabel("val/loss")
    bottom.set_xlabel("epoch")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def draw(cfg: DictConfig) -> Path:
    if cfg.epochs < 2:
        raise LivedeadError(f"config key 'epochs': expected >= 2, found {cfg.epochs}")
    metric = metric_sequence(cfg.epochs, OmegaConf.to_container(cfg.metric.plateaus), cfg.metric.noise, cfg.metric.seed)
    schedules: dict[str, Any] = {name: trajectory(spec, cfg.lr, metric) for name, spec in cfg.schedulers.items()}
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = plot(schedules, metric, f"learning-rate schedules, initial lr {cfg.lr}, same validation loss")
    with atomic_path(out) as tmp:
        fig.savefig(tmp)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="plot_schedules")
@cli_errors("livedead.plot_schedules")
def main(cfg: DictConfig) -> None:
    print(f"wrote {draw(cfg)}")


if __name__ == "__main__":
    main()
