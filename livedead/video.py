"""``python -m livedead.video run=<run folder> [format=mp4|gif fps=4 output=PATH]``

Turns a run's per-epoch validation overlays into a video (:mod:`livedead.viz.video`).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from livedead.config.app import cli_errors, run_app
from livedead.files import check_output
from livedead.viz.video import make_video

PROG = "livedead.video"


@hydra.main(version_base="1.3", config_path="pkg://livedead.conf", config_name="video")
@cli_errors(PROG)
def main(cfg: DictConfig) -> None:
    run = Path(cfg.run)
    if run.is_dir():  # the video goes into the run folder by default: it may not replace one of its event files
        check_output(cfg.output or run / f"overlays.{cfg.format}", run.rglob("events.out.tfevents.*"))
    print(f"wrote {make_video(cfg.run, cfg.output, cfg.format, cfg.fps)}")


def cli() -> None:
    run_app(main, PROG)


if __name__ == "__main__":
    cli()
