"""``python -m livedead.predict ckpt=<run>/checkpoints/last.ckpt input=<plate.h5|plate.zarr|TIFFs> output=<folder>``

Predicts whole wells and counts live and dead cells over time (:mod:`livedead.inference.predictor`),
then draws ``counts_over_time.png`` and ``dead_fraction.png``. Every setting and its default is a
field of :class:`livedead.inference.predictor.PredictConfig` (``conf/predict.yaml``). Exits 1 if an
image failed (the others finish), 2 on bad input. In a Hydra multirun (``wells=A1,A2 hydra/launcher=joblib
-m``, the flag after the overrides) each job is a part of the output (``<output>/parts/<job number>``);
:mod:`livedead.merge` joins them.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.inference.predictor import PredictConfig, run
from livedead.viz.figures import plot_counts

PROG = "livedead.predict"
schema.store("predict_schema", PredictConfig)


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="predict")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    settings = OmegaConf.to_object(cfg)
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN and settings.part is None:
        settings.part = str(hydra_cfg.job.num)
    _, failures = run(settings, figures=plot_counts)
    if failures:
        sys.exit(1)


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
