"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import resource
import threading
import time


class RssSampler(threading.Thread):
    """Peak resident memory of this process while running (sampled every 5 ms); use as a context."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.start_rss = self.rss()
        self.peak = self.start_rss
        self.running = True

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.005)

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
