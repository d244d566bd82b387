"""``python -m livedead.synthetic output=data/plate.h5 wells=4 timepoints=6 height=640 width=800 seed=0``

Writes a synthetic live/dead plate (:mod:`livedead.plates.synthetic`). Every setting and its
default is a field of :class:`livedead.plates.synthetic.PlateSpec` (``conf/synthetic.yaml``).
``fields=<folder>`` also images every well as a grid of overlapping fields with stage errors, as
a microscope writes them (``grid.rows``, ``grid.cols``, ``grid.overlap``, ``grid.jitter``,
``grid.ome_tiff``...: :class:`livedead.plates.synthetic.FieldGrid`), with their true positions in
``<folder>/positions.csv``. ``plate_map=<csv>`` (:mod:`livedead.assays.platemap`) sets each well's
death hazard from its concentration by the Hill curve of ``ec50``, ``hill`` and ``max_hazard``; the
truth then holds every cell's time of death and the true EC50.
"""

from __future__ import annotations

from dataclasses import fields

import hydra
from omegaconf import MISSING, DictConfig

from livedead.assays.platemap import read_plate_map
from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.errors import LivedeadError
from livedead.files import check_output
from livedead.plates.synthetic import FieldGrid, PlateSpec, generate_plate, well_names, write_fields

PROG = "livedead.synthetic"
schema.store(
    "synthetic_schema",
    PlateSpec,
    output=(str, MISSING),
    progress=(bool, True),
    fields=(str | None, None),
    plate_map=(str | None, None),
    grid=(FieldGrid, FieldGrid),
)


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="synthetic")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    spec = PlateSpec(**{f.name: cfg[f.name] for f in fields(PlateSpec)})
    if cfg.fields:  # before the plate is made
        check_output(cfg.fields, [cfg.output], key="fields", folder=True)
    concentrations = None
    if cfg.plate_map:
        plate_map = read_plate_map(cfg.plate_map, well_names(spec.wells))
        if plate_map.unmapped:
            raise LivedeadError(
                f"{cfg.plate_map}: expected every well of the plate mapped, found none for "
                f"{', '.join(plate_map.unmapped)}"
            )
        concentrations = [plate_map.entries[w].concentration for w in well_names(spec.wells)]
    path = generate_plate(cfg.output, spec, progress=cfg.progress, concentrations=concentrations)
    print(f"wrote {path} ({spec.wells} wells x {spec.timepoints} time points, {spec.height}x{spec.width})")
    if cfg.fields:
        positions = write_fields(path, cfg.fields, FieldGrid(**cfg.grid))
        print(
            f"wrote {cfg.grid.rows}x{cfg.grid.cols} fields of every image to {cfg.fields} (true positions: {positions})"
        )


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
