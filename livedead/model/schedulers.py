"""Learning-rate schedulers, and the study's own: cosine annealing with kicks.

:class:`CosineAnnealingWithKicks` is a hybrid of cosine annealing with warm restarts and
reduce-on-plateau. The learning rate follows a cosine from a *peak* down to a *floor*; when the
monitored metric has not improved for ``patience`` epochs, the rate is *kicked*: part of the way
back up towards the previous peak, from where a new cosine descends to a new, lower floor.

Per parameter group it keeps ``peak`` (initially the group's lr), ``floor`` (``eta_min``), the
cycle length ``T`` (``T_0``) and the position ``t`` (0); shared are ``best``, ``num_bad_epochs``
and ``cooldown_counter``, with the meaning and the ``is_better`` test of ``ReduceLROnPlateau``.
Each ``step(metric)``:

1. ``t += 1``; update ``best`` and ``num_bad_epochs`` as ``ReduceLROnPlateau`` does; in cooldown,
   decrement ``cooldown_counter`` and reset ``num_bad_epochs``.
2. If ``num_bad_epochs > patience``, kick every group, with ``x`` its current lr:
   ``peak = x + kick * (peak - x)``, ``floor = max(eta_min, factor * x)``,
   ``T = max(1, round(T * T_mult))``, ``t = 0``; then ``cooldown_counter = cooldown`` and
   ``num_bad_epochs = 0``.
3. ``lr = floor + (peak - floor) * (1 + cos(pi * min(t, T) / T)) / 2``: after a cycle the rate
   stays at ``floor`` until the next kick.
"""

from __future__ import annotations

import math
from typing import Any

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from livedead.errors import LivedeadError


class CosineAnnealingWithKicks(LRScheduler):
    """Cosine annealing whose rate is kicked back up when the monitored metric plateaus.

    Step it once per epoch with the monitored metric: ``scheduler.step(val_loss)``. In Lightning,
    configure it with ``monitor`` and ``reduce_on_plateau: true`` so the metric is passed.

    Args:
        optimizer: the wrapped optimizer.
        T_0: epochs of the first cosine cycle (>= 1).
        T_mult: each kick multiplies the cycle length by this (rounded, at least 1 epoch).
        eta_min: the lowest floor.
        kick: how far back towards the previous peak a kick goes, in [0, 1] (1: all the way).
        factor: the new floor is ``factor`` times the rate at the kick, in (0, 1].
        patience, threshold, threshold_mode, mode, cooldown: as in ``ReduceLROnPlateau``.

    Example: a two-epoch cosine from 1.0, kicked half-way back up once the loss stalls.
        >>> import torch
        >>> optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> scheduler = CosineAnnealingWithKicks(optimizer, T_0=2, kick=0.5, patience=1)
        >>> lrs = []
        >>> for loss in (1.0, 0.9, 0.9, 0.9, 0.9):
        ...     scheduler.step(loss)
        ...     lrs.append(round(optimizer.param_groups[0]["lr"], 3))
        >>> lrs  # down the cosine, at the floor, a plateau, kicked to 0.5, down again
        [0.5, 0.0, 0.0, 0.5, 0.25]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        T_0: int,
        T_mult: float = 1.0,
        eta_min: float = 0.0,
        kick: float = 0.5,
        factor: float = 0.5,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        mode: str = "min",
        cooldown: int = 0,
    ) -> None:
        checks = [
            (T_0 >= 1, "T_0", "an integer >= 1", T_0),
            (T_mult > 0, "T_mult", "> 0", T_mult),
            (0.0 <= kick <= 1.0, "kick", "in [0, 1]", kick),
            (0.0 < factor <= 1.0, "factor", "in (0, 1]", factor),
            (mode in ("min", "max"), "mode", "'min' or 'max'", mode),
            (threshold_mode in ("rel", "abs"), "threshold_mode", "'rel' or 'abs'", threshold_mode),
            (patience >= 0, "patience", ">= 0", patience),
            (cooldown >= 0, "cooldown", ">= 0", cooldown),
            (eta_min >= 0, "eta_min", ">= 0", eta_min),
        ]
        for ok, key, expected, found in checks:
            if not ok:
                raise LivedeadError(
                    f"CosineAnnealingWithKicks: config key '{key}': expected {expected}, found {found!r}"
                )
        # Like ReduceLROnPlateau, LRScheduler.__init__ is not called: it would take a first step
        # without a metric.
        self.optimizer = optimizer
        self.T_0, self.T_mult, self.eta_min = int(T_0), float(T_mult), float(eta_min)
        self.kick, self.factor = float(kick), float(factor)
        self.patience, self.cooldown = int(patience), int(cooldown)
        self.threshold, self.threshold_mode, self.mode = float(threshold), threshold_mode, mode
        lrs = [float(g["lr"]) for g in optimizer.param_groups]
        self.base_lrs = list(lrs)
        self.peak = list(lrs)
        self.floor = [self.eta_min] * len(lrs)
        self.T = [self.T_0] * len(lrs)
        self.t = [0] * len(lrs)
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = list(lrs)

    def is_better(self, a: float, best: float) -> bool:
        """ReduceLROnPlateau's test of improvement."""
        if self.mode == "min":
            return a < best * (1.0 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (self.threshold + 1.0) if self.threshold_mode == "rel" else a > best + self.threshold

    def step(self, metrics: float | None = None, epoch: int | None = None) -> None:  # type: ignore[override]
        if metrics is None:
            raise LivedeadError(
                "CosineAnnealingWithKicks.step(): expected the monitored metric, found none "
                "(in Lightning set 'monitor' and 'reduce_on_plateau: true' in the scheduler config)"
            )
        current = float(metrics)
        self.last_epoch += 1
        self.t = [t + 1 for t in self.t]
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            for i, group in enumerate(self.optimizer.param_groups):
                x = float(group["lr"])
                self.peak[i] = x + self.kick * (self.peak[i] - x)
                self.floor[i] = max(self.eta_min, self.factor * x)
                self.T[i] = max(1, round(self.T[i] * self.T_mult))
                self.t[i] = 0
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        for i, group in enumerate(self.optimizer.param_groups):
            phase = math.pi * min(self.t[i], self.T[i]) / self.T[i]
            group["lr"] = self.floor[i] + (self.peak[i] - self.floor[i]) * (1 + math.cos(phase)) / 2
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.__dict__.update(state_dict)
