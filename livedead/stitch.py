"""``python -m livedead.stitch input=<folder of fields> output=<plate.h5> rows=9 cols=9 overlap=0.1 order=snake``

Stitches each well's grid of overlapping fields, at every time point, into the raw plate that
``prepare`` and ``predict`` read (:mod:`livedead.data.stitching`). Every setting and its default
is a field of :class:`livedead.data.stitching.StitchConfig` (``conf/stitch.yaml``).
"""

from __future__ import annotations

from dataclasses import fields

import hydra
from omegaconf import MISSING, DictConfig, OmegaConf

from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.data.stitching import StitchConfig, stitch

PROG = "livedead.stitch"
schema.store("stitch_schema", StitchConfig, input=(str, MISSING), output=(str, MISSING))


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="stitch")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    command = OmegaConf.to_object(cfg)
    settings = StitchConfig(**{f.name: getattr(command, f.name) for f in fields(StitchConfig)})
    summary = stitch(command.input, command.output, settings)
    fallback = sum(len(v) for v in summary.fallback.values())
    size = f", {summary.pixel_size_um} µm/px" if summary.pixel_size_um else ""
    print(
        f"wrote {summary.output}: {len(summary.wells)} wells x {summary.timepoints} time points of "
        f"{summary.shape[0]}x{summary.shape[1]} px{size}"
        + (f"; {fallback} fields at their nominal position" if fallback else "")
    )


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
