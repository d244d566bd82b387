"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


class RssSampler(threading.Thread):
    """Peak resident memory of this process while running (sampled every 5 ms); use as a context.

    With ``children``: the proportional set size (PSS) of this process and every process it started
    (worker pools), summed, so that pages a fork shares are counted once (sampled every 20 ms)."""

    def __init__(self, children: bool = False) -> None:
        super().__init__(daemon=True)
        self.children = children
        self.interval = 0.02 if children else 0.005
        self.start_rss = self.rss()
        self.peak = self.start_rss
        self.running = True

    def rss(self) -> int:
        pids, total = [os.getpid()], 0
        while pids:
            pid = pids.pop()
            try:
                if self.children:
                    pss = next(
                        ln for ln in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines() if ln.startswith("Pss:")
                    )
                    total += int(pss.split()[1]) * 1024
                    pids += _children(pid)
                else:
                    with open(f"/proc/{pid}/statm") as f:
                        total += int(f.read().split()[1]) * resource.getpagesize()
            except (OSError, StopIteration):
                continue
        return total

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.join()

    @property
    def growth(self) -> int:
        """Peak minus the resident memory when sampling started."""
        return self.peak - self.start_rss
