"""``python -m livedead.stitch input=<folder of fields or plate.zarr> output=<plate.h5> rows=9 cols=9 order=snake``

Stitches each well's grid of overlapping fields, at every time point, into the raw plate that
``prepare`` and ``predict`` read (:mod:`livedead.plates.stitching`). Every setting and its default
is a field of :class:`livedead.plates.stitching.StitchConfig` (``conf/stitch.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import MISSING, DictConfig

from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.errors import LivedeadError
from livedead.files import check_output
from livedead.plates.platefile import stitch_positions
from livedead.plates.sources import open_plate
from livedead.plates.stitching import StitchConfig, StitchSummary, stitch
from livedead.viz.figures import save_figure, seams_figure

PROG = "livedead.stitch"
schema.store("stitch_schema", StitchConfig, input=(str, MISSING), output=(str, MISSING), figure=(bool, True))


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="stitch")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    command, settings = schema.settings_of(cfg, StitchConfig)
    if command.figure:  # before the work: the figure goes beside the plate
        check_output(seams_path(Path(command.output)), [command.input])
    summary = stitch(command.input, command.output, settings)
    fallback = sum(len(v) for v in summary.fallback.values())
    size = f", {summary.pixel_size_um} µm/px" if summary.pixel_size_um else ""
    print(
        f"wrote {summary.output}: {len(summary.wells)} wells x {summary.timepoints} time points of "
        f"{summary.shape[0]}x{summary.shape[1]} px{size}"
        + (f"; {fallback} fields at their nominal position" if fallback else "")
    )
    if command.figure:
        print(f"wrote {write_seams_figure(summary, settings)}")


def write_seams_figure(summary: StitchSummary, cfg: StitchConfig) -> Path:
    """``<output>_seams.png``: the first well's registration channel with every field outlined."""
    _, images = open_plate(summary.output, cfg.channels)
    first = next(images)
    if first.error:
        raise LivedeadError(first.error)
    image = first.channels[cfg.register_channel]
    positions = stitch_positions(summary.output, 0, 0)
    well = summary.wells[0]
    rows, cols = summary.grid
    title = f"{well}: {rows}x{cols} fields of {summary.field_shape[0]}x{summary.field_shape[1]} px, stitched"
    fig = seams_figure(image, positions, summary.field_shape, cols, title)
    return save_figure(fig, seams_path(summary.output))


def seams_path(output: Path) -> Path:
    return output.with_name(output.stem + "_seams.png")


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
