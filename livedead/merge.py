"""``python -m livedead.merge output=<folder>``

Joins the parts of a prediction sharded over a Hydra multirun (``python -m livedead.predict ...
wells=A1,A2 hydra/launcher=joblib -m``): the parts' ``counts.csv`` (``<folder>/parts/<job>``) into
``<folder>/counts.csv`` with its figures, their nuclei tables into ``<folder>/nuclei.csv`` (where every
part has one), and, where the jobs wrote an OME-Zarr plate
(``save=ome-zarr``), the plate's metadata over the wells they wrote, with the table beside them.
Each part's ``metrics.json`` stays in its part.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from livedead.config.app import cli_errors, run_app
from livedead.inference.evaluation import merge_parts, write_counts
from livedead.nuclei.table import join_tables
from livedead.plates.omezarr import finish_plate
from livedead.viz.figures import plot_counts

PROG = "livedead.merge"


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="merge")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    out = Path(cfg.output)
    rows, parts = merge_parts(out)
    plot_counts(rows, out)
    if join_tables(parts, out) is None:
        print(f"no nuclei.csv: a part of {out} has none (predicted by an older livedead)")
    write_counts(rows, out)
    print(f"wrote {out / 'counts.csv'}: {len(rows)} images of {len(parts)} parts")
    plate = out / "predictions.ome.zarr"
    if plate.is_dir():
        wells = list(dict.fromkeys(str(r["well"]) for r in rows))
        finish_plate(plate, wells, counts_csv=(out / "counts.csv").read_text())
        print(f"wrote {plate}: {len(wells)} wells")


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
