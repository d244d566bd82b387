"""Figures (matplotlib, no pyplot: no global state, no GUI backend): confusion matrices and counts over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from livedead.errors import atomic_path


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str]) -> Figure:
    """Row-normalised confusion matrix (truth by row), with the pixel counts written in."""
    cm = np.asarray(confusion, np.float64)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig = Figure(figsize=(3.6, 3.2), dpi=100)
    ax = fig.subplots()
    ax.imshow(rates, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("truth")
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(
                j,
                i,
                f"{rates[i, j]:.2f}\n{int(cm[i, j]):,}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    return fig


def plot_counts(rows: list[dict[str, Any]], out: Path) -> None:
    """Live and dead counts over time per well, and the dead fraction over time, one line per well."""
    wells = sorted({r["well"] for r in rows})
    fig = Figure(figsize=(8, 4.5), dpi=110)
    ax = fig.subplots()
    fig2 = Figure(figsize=(8, 4.5), dpi=110)
    ax2 = fig2.subplots()
    for i, well in enumerate(wells):
        rs = sorted((r for r in rows if r["well"] == well), key=lambda r: r["time"])
        t = [r["time"] for r in rs]
        colour = f"C{i % 10}"
        ax.plot(t, [r["live"] for r in rs], "-o", color=colour, ms=3, label=f"{well} live")
        ax.plot(t, [r["dead"] for r in rs], "--s", color=colour, ms=3, label=f"{well} dead")
        ax2.plot(t, [r["dead_fraction"] for r in rs], "-o", color=colour, ms=3, label=well)
    ax.set(xlabel="time point", ylabel="cells", title="live (solid) and dead (dashed) cells per well")
    ax2.set(xlabel="time point", ylabel="dead fraction", title="dead fraction over time", ylim=(0, 1))
    for a, f, name in ((ax, fig, "counts_over_time.png"), (ax2, fig2, "dead_fraction.png")):
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=2)
        f.tight_layout()
        with atomic_path(out / name) as tmp:
            f.savefig(tmp)
