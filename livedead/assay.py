"""``python -m livedead.assay predictions=<predict output folder> plate_map=<map.csv> output=<folder>``

From a prediction folder to the assay's answer (:mod:`livedead.assays.analysis`): every nucleus tracked
over time, each cell's time of death, Kaplan-Meier survival per well and per condition of the
plate map with log-rank tests against the control, the dead fraction's mean ± SD over replicate
wells, and a 4PL dose-response fit per compound with the EC50's 95% interval; tables, figures and
``assay.html``. Every setting and its default: :class:`livedead.assays.analysis.AssayConfig`
(``conf/assay.yaml``). Exits 2 on bad input (a bad plate-map row is one line naming it).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from livedead.assays.analysis import AssayConfig, console, run_assay
from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.files import check_output
from livedead.inference.evaluation import read_counts

PROG = "livedead.assay"
schema.store("assay_schema", AssayConfig)


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="assay")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    settings: AssayConfig = OmegaConf.to_object(cfg)
    settings.validate()
    rows = read_counts(settings.predictions)
    out = check_output(settings.output, [settings.predictions, *([settings.plate_map] if settings.plate_map else [])],
                       folder=True)  # fmt: skip
    out.mkdir(exist_ok=True)
    result = run_assay(settings, rows)
    console.print(
        f"tracked {len(result.fates)} cells in {result.tracking_s:.1f} s; wrote the assay to {Path(out)} (assay.html)"
    )
    for fit in result.dose_response:
        ci = f" [{fit.ec50_lower:.3g}, {fit.ec50_upper:.3g}]" if fit.status == "ok" else ""
        console.print(
            f"{fit.compound}: "
            + (f"EC50 {fit.ec50:.3g}{ci}, hill {fit.hill:.2f}" if fit.status == "ok" else fit.status)
        )


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
