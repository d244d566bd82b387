"""``python train.py [group=option ...] [-m]`` (or ``livedead-train``): train the live/dead U-Net.

Fits the datamodule, model, callbacks, loggers and trainer of the config and returns the optimised
metric (for sweepers); every job writes ``result.json``, and a multirun ranks its jobs in
``summary.csv``/``summary.md``. ``resume=<run folder>`` continues a run. The task is
:func:`livedead.config.training.run`, the resume of a folder :mod:`livedead.config.resume`.
"""

from __future__ import annotations

import contextlib
import sys
from importlib.resources import files
from pathlib import Path

import hydra

from livedead.config import resolvers, schema
from livedead.config.app import cli_errors, run_app
from livedead.config.training import PROG, hold_named_run_folder, run
from livedead.errors import LivedeadError, one_line

schema.store("train_schema", schema.TrainSettings)


main = hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="train")(cli_errors(PROG)(run))


def cli() -> None:
    """The console command: unknown group options, unwritable output folders, a ``resume=`` of no run folder
    and a run folder in use are caught before Hydra starts (and writes its record into the folder)."""
    argv = sys.argv[1:]
    conf_dir = Path(str(files("livedead.conf")))
    with contextlib.ExitStack() as held:
        try:
            problem = resolvers.unknown_group_choice(argv, conf_dir) or resolvers.unwritable_output(argv)
            if not problem:
                hold_named_run_folder(argv, held)
        except LivedeadError as err:
            problem = one_line(err)
        if problem:  # bad input: one line and exit 2, as everywhere (sys.exit of a message would be 1)
            print(f"{PROG}: error: {problem}", file=sys.stderr)
            sys.exit(2)
        run_app(main, PROG)


if __name__ == "__main__":
    cli()
