"""``python -m livedead.plot_schedules [epochs=100 lr=0.05 output=docs/schedules.png]``

Draws the configured learning-rate schedules under one validation loss (:mod:`livedead.viz.schedules`).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from livedead.config.app import cli_errors, run_app
from livedead.errors import LivedeadError
from livedead.files import check_output
from livedead.viz.figures import save_figure
from livedead.viz.schedules import metric_sequence, plot, trajectory

PROG = "livedead.plot_schedules"


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="plot_schedules")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    print(f"wrote {draw(cfg)}")


def draw(cfg: DictConfig) -> Path:
    """Every configured schedule (``schedulers.<name>``: a ``conf/scheduler`` option) in one figure."""
    if cfg.epochs < 2:
        raise LivedeadError(f"config key 'epochs': expected >= 2, found {cfg.epochs}")
    metric = metric_sequence(cfg.epochs, OmegaConf.to_container(cfg.metric.plateaus), cfg.metric.noise, cfg.metric.seed)
    schedules = {}
    for name, spec in cfg.schedulers.items():
        make = hydra.utils.instantiate(spec.scheduler) if spec.get("scheduler") is not None else None
        with_metric = bool((spec.get("scheduler_config") or {}).get("reduce_on_plateau"))
        schedules[name] = trajectory(make, with_metric, cfg.lr, metric)
    out = check_output(cfg.output)
    fig = plot(schedules, metric, f"learning-rate schedules, initial lr {cfg.lr}, same validation loss")
    return save_figure(fig, out)


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
