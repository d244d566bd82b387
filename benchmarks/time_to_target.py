"""Benchmark: the first ``python train.py`` on this machine, the default before and now, to one target.

Runs the real command line twice, one after the other, each with a fresh data folder, so that
the synthetic plate is generated and prepared as on a fresh clone:

1. ``before``: the default as it was, by the overrides in ``BEFORE`` (batches of 50, 8 epochs,
   the kicks scheduler's first cycle of 10 epochs, contiguous memory format, glibc's allocator as
   it comes, preparation in one process);
2. ``now``: ``python train.py`` as it is.

Code that is no setting (the store's whole-chunk order, the loader) is the same in both. From
each run's TensorBoard events it reads ``val/pr_auc/dapi`` and ``val/pr_auc/cy5`` per epoch, and
times from the command's start to the first validation at which both reach the target
(``--target 0.93 0.95``); a run that never reaches it is timed to its end, and said so. A run's
result is its best checkpoint's, chosen as training chooses it (by ``val/pr_auc/macro``).

    python benchmarks/time_to_target.py [--target 0.93 0.95]

Prints ``RESULT time_to_target_vs_before=<now / before> wall_vs_before=<whole runs, now / before>``
and both runs' metrics.
"""

from __future__ import annotations

import argparse
import glob
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[1]
BEFORE = [
    "data.batch_size=50",
    "trainer.max_epochs=8",
    "model.scheduler.T_0=10",
    "model.channels_last=false",
    "callbacks.cpu_memory=null",
    "data.prepare_workers=1",
]


@dataclass
class Run:
    name: str
    wall: float
    """Seconds from the command's start to its end."""
    epochs: list[tuple[float, float, float, float]]
    """(seconds since the start, DAPI PR-AUC, Cy5 PR-AUC, macro PR-AUC) of each validation, in order."""

    def to_target(self, dapi: float, cy5: float) -> tuple[float, bool]:
        """Seconds to the first validation with both metrics at the target (or the whole run), and whether reached."""
        for seconds, d, c, _ in self.epochs:
            if d >= dapi and c >= cy5:
                return seconds, True
        return self.wall, False

    @property
    def best(self) -> tuple[int, float, float]:
        """The best checkpoint's epoch, DAPI and Cy5 PR-AUC (the highest macro PR-AUC, as ``ModelCheckpoint`` picks)."""
        i = max(range(len(self.epochs)), key=lambda k: self.epochs[k][3])
        return i, self.epochs[i][1], self.epochs[i][2]


def train(name: str, overrides: list[str], tmp: Path) -> Run:
    run = tmp / name
    command = [sys.executable, "train.py", f"hydra.run.dir={run}", f"paths.data={tmp / f'data-{name}'}", *overrides]
    print(f"[{name}] {' '.join(command[1:])}", flush=True)
    start = time.time()  # TensorBoard stamps its events with this clock
    with open(tmp / f"{name}.log", "w") as log:
        done = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    if done.returncode:
        raise SystemExit(f"[{name}] train.py failed with exit code {done.returncode}; its output: {tmp / name}.log")
    events = EventAccumulator(sorted(glob.glob(str(run / "events.out.tfevents.*")))[0], size_guidance={"scalars": 0})
    events.Reload()
    dapi, cy5, macro = (events.Scalars(f"val/pr_auc/{k}") for k in ("dapi", "cy5", "macro"))
    epochs = [(d.wall_time - start, d.value, c.value, m.value) for d, c, m in zip(dapi, cy5, macro, strict=True)]
    return Run(name, wall, epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, nargs=2, default=(0.93, 0.95), metavar=("DAPI", "CY5"))
    args = parser.parse_args()
    dapi, cy5 = args.target
    with tempfile.TemporaryDirectory() as tmp:
        runs = [train("before", BEFORE, Path(tmp)), train("now", [], Path(tmp))]
    times = {}
    for run in runs:
        seconds, reached = run.to_target(dapi, cy5)
        times[run.name] = seconds
        trace = "  ".join(f"{d:.3f}/{c:.3f}@{s:.0f}s" for s, d, c, _ in run.epochs)
        print(f"[{run.name}] whole run {run.wall:6.1f} s; PR-AUC DAPI/Cy5 per epoch: {trace}")
        epoch, best_dapi, best_cy5 = run.best
        state = f"reached at {seconds:.1f} s" if reached else f"not reached: timed to the end, {seconds:.1f} s"
        print(
            f"[{run.name}] target DAPI >= {dapi}, Cy5 >= {cy5}: {state}; "
            f"best checkpoint: epoch {epoch}, {best_dapi:.3f}/{best_cy5:.3f}"
        )
    before, now = runs
    print(
        f"RESULT time_to_target_vs_before={times['now'] / times['before']:.2f} "
        f"wall_vs_before={now.wall / before.wall:.2f} before_s={before.wall:.0f} now_s={now.wall:.0f} "
        f"now_dapi={now.best[1]:.3f} now_cy5={now.best[2]:.3f} "
        f"before_dapi={before.best[1]:.3f} before_cy5={before.best[2]:.3f}"
    )


if __name__ == "__main__":
    main()
