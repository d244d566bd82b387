"""``python -m livedead.prepare input=data/plate.h5 output=data/tiles.h5 [tile=160 stride=80 chunk=1000]``

Turns a plate of stitched well images into the tile file that training reads
(:mod:`livedead.data.preparation`). Every setting and its default is a field of
:class:`livedead.data.preparation.PrepareConfig` (``conf/prepare.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import MISSING, DictConfig

from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.data.preparation import PrepareConfig, prepare, print_summary

PROG = "livedead.prepare"
schema.store("prepare_schema", PrepareConfig, input=(str, MISSING), output=(str, MISSING))


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="prepare")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    command, settings = schema.settings_of(cfg, PrepareConfig)
    summary = prepare(command.input, command.output, settings)
    print_summary(summary, Path(command.output))


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
