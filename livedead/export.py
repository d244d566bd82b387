"""``python -m livedead.export ckpt=<checkpoint> output=<folder>``

Packages a trained network in the BioImage Model Zoo format (:mod:`livedead.inference.bioimageio`),
so that Fiji (deepImageJ), ilastik and napari run it. Every setting and its default is a field of
:class:`livedead.inference.bioimageio.ExportConfig` (``conf/export.yaml``).
"""

from __future__ import annotations

import hydra
from omegaconf import MISSING, DictConfig

from livedead.config import schema
from livedead.config.app import cli_errors, run_app
from livedead.inference.bioimageio import ExportConfig, export_bioimageio

PROG = "livedead.export"
schema.store("export_schema", ExportConfig, ckpt=(str, MISSING), output=(str, MISSING))


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="export")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    command, settings = schema.settings_of(cfg, ExportConfig)
    rdf = export_bioimageio(command.ckpt, command.output, settings)
    print(f"wrote {rdf.parent} (bioimage.io model; check it with: bioimageio test {rdf})")


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
