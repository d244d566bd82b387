"""Figures (matplotlib, no pyplot: no global state, no GUI backend): confusion matrices and counts over time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from livedead.files import atomic_path


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


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure under a temporary name and rename it into place (a killed run leaves no half PNG)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path


def plot_counts(rows: list[dict[str, Any]], out: Path) -> None:
    """``counts_over_time.png`` and ``dead_fraction.png`` of :func:`count_figures` in ``out``, and
    ``populations.png`` (:func:`population_figure`) where the rows are counted per population."""
    for name, fig in zip(("counts_over_time.png", "dead_fraction.png"), count_figures(rows), strict=True):
        save_figure(fig, out / name)
    if population_names(rows):
        save_figure(population_figure(rows), out / "populations.png")


def population_names(rows: list[dict[str, Any]]) -> list[str]:
    """The populations whose counts the rows carry (``<name>_live``, ``<name>_dead``, ``<name>_dead_fraction``)."""
    keys = rows[0] if rows else {}
    return [
        k.removesuffix("_dead_fraction")
        for k in keys
        if k.endswith("_dead_fraction") and not k.startswith(("stain_", "true_"))
    ]


def population_figure(rows: list[dict[str, Any]]) -> Figure:
    """Per population (a column each): live (solid) and dead (dashed) nuclei per well over time, and the dead
    fraction beneath, with the stain-derived counts dotted where the rows carry them. A killing assay's
    read-out is the targets' dead fraction: here it stands apart from the effectors'."""
    names = population_names(rows)
    wells = sorted({r["well"] for r in rows})
    hours = all(r.get("time_h") is not None for r in rows)
    fig = Figure(figsize=(4.2 * len(names), 6.5), dpi=110)
    axes = fig.subplots(2, len(names), squeeze=False)
    for j, pop in enumerate(names):
        top, bottom = axes[0, j], axes[1, j]
        for i, well in enumerate(wells):
            rs = sorted((r for r in rows if r["well"] == well), key=lambda r: r["time"])
            t = [r["time_h"] if hours else r["time"] for r in rs]
            colour = f"C{i % 10}"
            top.plot(t, [r[f"{pop}_live"] for r in rs], "-o", color=colour, ms=3, label=f"{well} live")
            top.plot(t, [r[f"{pop}_dead"] for r in rs], "--s", color=colour, ms=3, label=f"{well} dead")
            bottom.plot(t, [r[f"{pop}_dead_fraction"] for r in rs], "-o", color=colour, ms=3, label=well)
            if f"stain_{pop}_dead_fraction" in rs[0]:
                label = "stains" if i == 0 else None
                bottom.plot(t, [r[f"stain_{pop}_dead_fraction"] for r in rs], ":", color=colour, label=label)
        top.set(title=f"{pop}: live and dead nuclei", ylabel="nuclei")
        bottom.set(title=f"{pop}: dead fraction", ylabel="dead fraction", ylim=(0, 1),
                   xlabel="time (h)" if hours else "time point")  # fmt: skip
        for a in (top, bottom):
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            a.grid(alpha=0.3)
            a.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def count_figures(rows: list[dict[str, Any]]) -> tuple[Figure, Figure]:
    """Live and dead cells per well over time, and the dead fraction: the model's counts as solid lines,
    with the truth (or, lacking it, the stain-derived counts) dotted beside them.

    ``rows`` are ``counts.csv``'s (:func:`livedead.inference.evaluation.read_counts`). The time axis is in
    hours where the rows carry ``time_h`` (the plate records its interval), else in time points;
    either way, whole ticks.
    """
    wells = sorted({r["well"] for r in rows})
    reference = "true" if "true_live" in rows[0] else "stain" if "stain_live" in rows[0] else None
    name = {"true": "truth", "stain": "stains"}.get(reference or "", "")
    hours = all(r.get("time_h") is not None for r in rows)
    fig, fig2 = Figure(figsize=(8, 4.5), dpi=110), Figure(figsize=(8, 4.5), dpi=110)
    ax, ax2 = fig.subplots(), fig2.subplots()
    for i, well in enumerate(wells):
        rs = sorted((r for r in rows if r["well"] == well), key=lambda r: r["time"])
        t = [r["time_h"] if hours else r["time"] for r in rs]
        colour = f"C{i % 10}"
        ax.plot(t, [r["live"] for r in rs], "-o", color=colour, ms=3, label=f"{well} live")
        ax.plot(t, [r["dead"] for r in rs], "--s", color=colour, ms=3, label=f"{well} dead")
        ax2.plot(t, [r["dead_fraction"] for r in rs], "-o", color=colour, ms=3, label=well)
        if reference:
            live = np.array([float(r[f"{reference}_live"]) for r in rs])
            dead = np.array([float(r[f"{reference}_dead"]) for r in rs])
            label = f"{well} {name}" if i == 0 else None
            ax.plot(t, live, ":", color=colour, lw=1.5, label=label)
            ax.plot(t, dead, ":", color=colour, lw=1.5)
            ax2.plot(t, dead / np.maximum(live + dead, 1), ":", color=colour, lw=1.5, label=label)
    unit = "time (h)" if hours else "time point"
    extra = f"; dotted: {name}" if reference else ""
    ax.set(xlabel=unit, ylabel="cells", title=f"live (solid) and dead (dashed) cells per well{extra}")
    ax2.set(xlabel=unit, ylabel="dead fraction", title=f"dead fraction over time{extra}", ylim=(0, 1))
    for a, f in ((ax, fig), (ax2, fig2)):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(alpha=0.3)
        a.legend(fontsize=7, ncol=2)
        f.tight_layout()
    return fig, fig2


def seams_figure(
    image: np.ndarray, positions: np.ndarray, field_shape: tuple[int, int], cols: int, title: str
) -> Figure:
    """A stitched image with each field's outline where it was placed (neighbours in two colours): the seams.

    ``positions`` are the fields' (y, x) corners in row-major grid order, in the image's pixels.
    """
    lo, hi = np.percentile(image, (0.5, 99.5))
    fig = Figure(figsize=(7, 7 * image.shape[0] / image.shape[1] + 0.4), dpi=110)
    ax = fig.subplots()
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    for i, (y, x) in enumerate(positions):
        colour = ("tab:orange", "tab:cyan")[(i // cols + i % cols) % 2]
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), field_shape[1], field_shape[0], fill=False, lw=0.8, ec=colour))
    ax.set(xlim=(-0.5, image.shape[1] - 0.5), ylim=(image.shape[0] - 0.5, -0.5), title=title)
    ax.set_axis_off()
    fig.tight_layout()
    return fig
