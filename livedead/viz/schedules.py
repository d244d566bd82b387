"""Learning-rate schedules under one validation-loss sequence with plateaus.

The study's scheduler-comparison figure: cosine annealing with warm restarts, reduce-on-plateau
and cosine annealing with kicks, driven through the same epochs with the same metric, so
settings can be chosen before GPU hours are spent. The command line,
:mod:`livedead.plot_schedules`, builds the schedulers from ``conf/scheduler/*.yaml``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure


def metric_sequence(epochs: int, plateaus: list[list[int]], noise: float, seed: int) -> np.ndarray:
    """A validation loss that decays except during ``plateaus`` ([start, stop) epochs), plus noise.

    >>> loss = metric_sequence(8, [[3, 6]], noise=0.0, seed=0)
    >>> bool(loss[1] > loss[2]), bool(loss[2] == loss[3] == loss[5]), bool(loss[5] > loss[6])
    (True, True, True)
    """
    slope = np.full(epochs, 0.04)
    for a, b in plateaus:
        slope[a:b] = 0.0
    loss = 0.3 + 0.7 * np.exp(-np.cumsum(slope))
    return loss + np.random.default_rng(seed).normal(0, noise, epochs)


def trajectory(
    make_scheduler: Callable[..., Any] | None, with_metric: bool, lr: float, metric: np.ndarray
) -> np.ndarray:
    """Learning rate at the start of every epoch, stepping the scheduler as Lightning would.

    ``make_scheduler(optimizer=...)`` builds it (None: a constant rate); ``with_metric`` steps it
    with the metric, as Lightning does for ``reduce_on_plateau`` schedulers.
    """
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    if make_scheduler is None:
        return np.full(len(metric), lr)
    scheduler = make_scheduler(optimizer=optimizer)
    with_metric = with_metric or isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
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
