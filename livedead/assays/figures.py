"""The assay's figures (matplotlib, no pyplot) and its one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from livedead.assays.doseresponse import DoseResponse, four_pl
from livedead.assays.survival import Survival


def _step(ax: Axes, s: Survival, colour: str, label: str) -> None:
    ax.step(s.time_h, s.survival, where="post", color=colour, label=label)
    ax.fill_between(s.time_h, s.lower, s.upper, step="post", color=colour, alpha=0.2, linewidth=0)


def survival_figure(curves: Sequence[Survival], title: str) -> Figure:
    """Kaplan-Meier curves with their 95% bands, one colour each."""
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    ax = fig.subplots()
    for i, s in enumerate(curves):
        _step(ax, s, _colour(i, len(curves)), f"{s.label} (n={s.cells})")
    ax.set(xlabel="time (h)", ylabel="fraction alive", ylim=(0, 1.02), title=title)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def _colour(i: int, n: int) -> tuple[float, ...]:
    return tuple(colormaps["viridis"](0.9 * i / max(n - 1, 1)))


def conditions_figure(
    table: pd.DataFrame, curves: Sequence[Survival], pvalues: dict[str, float], controls: set[str]
) -> Figure:
    """Per condition: the dead fraction over time (mean ± SD of replicate wells) and survival curves, side by side."""
    fig = Figure(figsize=(11, 4.2), dpi=100)
    left, right = fig.subplots(1, 2)
    names = list(dict.fromkeys(table["condition"]))
    for i, name in enumerate(names):
        colour = _colour(i, len(names))
        d = table[table["condition"] == name]
        left.errorbar(
            d["time_h"],
            d["dead_fraction_mean"],
            yerr=d["dead_fraction_sd"],
            color=colour,
            capsize=2,
            label=name,
            marker="o",
            ms=3,
        )
    left.set(xlabel="time (h)", ylabel="dead fraction (mean ± SD of wells)", ylim=(0, 1), title="dead fraction")
    left.legend(fontsize=6)
    for i, s in enumerate(curves):
        p = pvalues.get(s.label)
        tag = (
            "(control)" if s.label in controls else (f"log-rank p={p:.2g}" if p is not None and np.isfinite(p) else "")
        )
        _step(right, s, _colour(i, len(curves)), f"{s.label} {tag}".strip())
    right.set(xlabel="time (h)", ylabel="fraction alive (Kaplan-Meier, 95% band)", ylim=(0, 1.02), title="survival")
    right.legend(fontsize=6)
    fig.tight_layout()
    return fig


def dose_response_figure(points: pd.DataFrame, fits: Sequence[DoseResponse], unit: str, at_h: float) -> Figure:
    """Per compound: each replicate well's dead fraction, the fitted 4PL and its EC50 (with the 95% interval)."""
    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.subplots()
    for i, fit in enumerate(fits):
        colour = _colour(i, len(fits))
        p = points[points["compound"] == fit.compound]
        ax.scatter(p["concentration"], p["dead_fraction"], color=colour, s=14, label=f"{fit.compound} wells")
        if fit.status == "ok":
            x = np.logspace(np.log10(p["concentration"].min()) - 0.3, np.log10(p["concentration"].max()) + 0.3, 200)
            ax.plot(
                x,
                four_pl(np.log10(x), fit.bottom, fit.top, np.log10(fit.ec50), fit.hill),
                color=colour,
                label=f"4PL: EC50 {fit.ec50:.3g} {unit} [{fit.ec50_lower:.3g}, {fit.ec50_upper:.3g}], "
                f"hill {fit.hill:.2f}",
            )
            ax.axvline(fit.ec50, color=colour, ls="--", lw=1)
            ax.axvspan(fit.ec50_lower, fit.ec50_upper, color=colour, alpha=0.1)
        else:
            ax.plot([], [], " ", label=f"{fit.compound}: {fit.status}")
    ax.set_xscale("log")
    ax.set(xlabel=f"concentration ({unit})", ylabel=f"dead fraction at {at_h:g} h", ylim=(0, 1), title="dose-response")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def write_html(title: str, sections: Sequence[tuple[str, str | Path | pd.DataFrame]]) -> str:
    """One self-contained page: headings with a paragraph, an embedded PNG or a table each (returns the text)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for heading, item in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if isinstance(item, Path):
            data = base64.b64encode(item.read_bytes()).decode()
            body.append(f'<img alt="{html.escape(item.name)}" src="data:image/png;base64,{data}">')
        elif isinstance(item, pd.DataFrame):
            body.append(item.to_html(index=False, na_rep="", border=0))
        else:
            body.append(f"<p>{html.escape(item)}</p>")
    style = ("body{font-family:sans-serif;max-width:1150px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}")  # fmt: skip
    head = f"<meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"
