"""Train the live/dead U-Net: ``python train.py [group=option ...] [-m]`` (Hydra; configs in ``conf/``).

The command lives in the package (:mod:`livedead.train`, also the console command ``livedead-train``);
this file keeps the design card's entry point at the top of the repository.
"""

from livedead.train import cli

if __name__ == "__main__":
    cli()
