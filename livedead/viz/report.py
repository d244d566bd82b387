"""A sweep's report for a lab meeting: the study's figures and a ranking over seeds, from the events alone.

:func:`write_report` writes into ``<sweep>/report/``: ``curves.png`` (train loss, val loss and PR-AUC
per class against epoch, one colour per setting, mean and a band of one standard deviation across
seeds), ``lr.png`` (every job's learning rate), ``pr_curves.png`` (the best job's final PR curves
against the others'), ``overlays.png`` (the best job's overlay tiles early, midway and last),
``report.md`` and ``report.html`` (the same with the figures embedded: one file to mail). Failed,
diverged, unreadable (a damaged ``result.json`` or events file) and not yet validated jobs are
listed, not plotted; a sweep still running is reported as far as it got.

The command line is :mod:`livedead.report`.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from livedead.errors import LivedeadError
from livedead.files import atomic_path
from livedead.viz.figures import save_figure
from livedead.viz.sweep import CURVES, Job, Ranked, group_by_setting, load_sweep, rank, verdict


def _colours(settings: Sequence[str]) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {s: palette[i % len(palette)] for i, s in enumerate(settings)}


def _dashes(settings: Sequence[str]) -> dict[str, str]:
    """A line style per setting too, so that settings that train alike (cosine and kicks before their
    first kick) stay visible on top of each other."""
    styles = ["-", "--", ":", "-."]
    return {s: styles[i % len(styles)] for i, s in enumerate(settings)}


def curves_figure(jobs: Sequence[Job], tags: Sequence[str] = CURVES) -> Figure:
    """One panel per tag against epoch: a line per setting (the mean over its seeds) with a band of
    one standard deviation where it has several."""
    groups = {s: [j for j in g if j.status in ("ok", "running")] for s, g in group_by_setting(jobs).items()}
    groups = {s: g for s, g in groups.items() if g}
    colours, dashes = _colours(list(groups)), _dashes(list(groups))
    fig = Figure(figsize=(11, 7.5), dpi=100)
    axes = fig.subplots(2, 2).ravel()
    for ax, tag in zip(axes, tags, strict=False):
        for setting, group in groups.items():
            series = [dict(zip(*j.curve(tag), strict=True)) for j in group]
            epochs = sorted(set.intersection(*(set(s) for s in series))) if series else []
            if not epochs:
                continue
            values = np.array([[s[e] for e in epochs] for s in series])
            mean = values.mean(axis=0)
            label = f"{setting} ({len(group)} seeds)" if len(group) > 1 else setting
            ax.plot(epochs, mean, dashes[setting], marker="o", ms=3, color=colours[setting], label=label)
            if len(group) > 1:
                sd = values.std(axis=0, ddof=1)
                ax.fill_between(epochs, mean - sd, mean + sd, color=colours[setting], alpha=0.2, lw=0)
        ax.set(xlabel="epoch", title=tag)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def lr_figure(jobs: Sequence[Job]) -> Figure:
    """Every job's learning rate over the epochs (kicks show as steps up), on a log scale."""
    plotted = [j for j in jobs if j.status in ("ok", "running")]
    settings = list(dict.fromkeys(j.setting for j in plotted))
    colours, dashes = _colours(settings), _dashes(settings)
    fig = Figure(figsize=(8, 4), dpi=100)
    ax = fig.subplots()
    for job in plotted:
        epochs, lr = job.curve("lr")
        if len(lr):
            ax.plot(epochs, lr, dashes[job.setting], marker="o", ms=3, drawstyle="steps-post",
                    color=colours[job.setting], alpha=0.85, label=job.label)  # fmt: skip
    ax.set(xlabel="epoch", ylabel="learning rate", yscale="log", title="learning rate per job")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def pr_curves_figure(best: Job, jobs: Sequence[Job]) -> Figure:
    """The final PR curve of each class: the best job in black, the others in their setting's colour."""
    classes = list(dict.fromkeys(c for j in jobs for c in j.pr_curves))  # in the order training logged them
    colours = _colours(list(dict.fromkeys(j.setting for j in jobs)))
    fig = Figure(figsize=(5 * max(1, len(classes)), 4.4), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(classes))))
    for ax, name in zip(axes, classes, strict=False):
        for job in jobs:
            if name not in job.pr_curves or job is best or job.status not in ("ok", "running"):
                continue
            _, precision, recall = job.pr_curves[name]
            ax.plot(recall, precision, color=colours[job.setting], lw=1, alpha=0.7, label=job.label)
        if name in best.pr_curves:
            epoch, precision, recall = best.pr_curves[name]
            trained = max(best.scalars.get("train/loss_epoch", {epoch: 0}))
            when = f"epoch {epoch}" if epoch <= trained else "its best checkpoint"  # validated after fitting
            ax.plot(recall, precision, color="black", lw=2.2, label=f"best: {best.label} ({when})")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"PR curve, {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return fig


def overlays_figure(job: Job) -> Figure | None:
    """The job's overlay tiles at its first, middle and last validated epoch (None if it logged none)."""
    frames = job.overlays()
    if not frames:
        return None
    epochs = sorted(frames)
    chosen = list(dict.fromkeys([epochs[0], epochs[len(epochs) // 2], epochs[-1]]))
    fig = Figure(figsize=(5 * len(chosen), 5.4), dpi=100)
    axes = np.atleast_1d(fig.subplots(1, len(chosen)))
    for ax, epoch in zip(axes, chosen, strict=True):
        ax.imshow(frames[epoch])
        ax.set_title(f"epoch {epoch}")
        ax.set_axis_off()
    fig.suptitle(f"{job.label}: true positives green; errors red (Cy5), blue (DAPI)")
    fig.tight_layout()
    return fig


def ranking_lines(ranked: Sequence[Ranked], metric: str) -> list[str]:
    """The ranking as a Markdown table: mean ± std over seeds (a ranking by one seed is noise)."""
    lines = [f"| rank | setting | seeds | {metric} (mean ± std) | best epochs | jobs |", "|---|---|---|---|---|---|"]
    for i, row in enumerate(ranked, 1):
        spread = f" ± {row.std:.4f}" if not math.isnan(row.std) else ""
        lines.append(
            f"| {i} | {row.setting} | {len(row.values)} | {row.mean:.4f}{spread} | "
            f"{', '.join(map(str, row.best_epochs))} | {', '.join(j.folder.name for j in row.jobs)} |"
        )
    return lines


def write_report(
    sweep: str | Path,
    metric: str = "val/pr_auc/macro",
    on_job: Callable[[], None] | None = None,
    on_unreadable: Callable[[Job], None] | None = None,
) -> Path:
    """Write ``<sweep>/report/`` (module docstring); returns the path of ``report.md``.

    ``on_unreadable`` is told of each job that could not be read, so the command says so too: a
    report that leaves a job out must not do it quietly.
    """
    sweep = Path(sweep)
    jobs = load_sweep(sweep, on_job)
    unreadable = [j for j in jobs if j.status == "unreadable"]
    ranked, left_out = rank(jobs, metric)
    if not ranked:
        damaged = f"; {len(unreadable)} unreadable, as {unreadable[0].problem}" if unreadable else ""
        raise LivedeadError(
            f"{sweep}: expected a job with a validated '{metric}', found none ({len(jobs)} jobs{damaged})"
        )
    for job in unreadable:
        if on_unreadable:
            on_unreadable(job)
    best = max(ranked[0].jobs, key=lambda j: j.best(metric)[1])  # type: ignore[index]
    out = sweep / "report"
    out.mkdir(exist_ok=True)
    figures = {
        "curves.png": curves_figure(jobs),
        "lr.png": lr_figure(jobs),
        "pr_curves.png": pr_curves_figure(best, jobs),
        "overlays.png": overlays_figure(best),
    }
    for name, fig in figures.items():
        if fig is not None:
            save_figure(fig, out / name)
    running = sum(j.status == "running" for j in jobs)
    md = [f"# Sweep report: {sweep.name}", ""]
    md.append(f"{len(jobs)} jobs, {len(ranked)} settings ranked by `{metric}` (each job's best epoch)")
    md[-1] += f"; {running} still running" if running else ""
    md[-1] += f"; {len(unreadable)} unreadable, not ranked (below)." if unreadable else "."
    md += ["", *ranking_lines(ranked, metric), ""]
    if left_out:
        md += ["Not ranked (not plotted):", ""]
        md += [f"- `{j.folder.name}`: {j.status}: {verdict(j, metric)}" for j in left_out] + [""]
    md += ["## Each job", ""] + [f"- `{j.folder.name}`: {verdict(j, metric)}" for j in jobs] + [""]
    titles = {
        "curves.png": "Losses and PR-AUC per class",
        "lr.png": "Learning rates",
        "pr_curves.png": f"Final PR curves; best: {best.label}",
        "overlays.png": f"The best job's overlays ({best.label})",
    }
    for name, title in titles.items():
        if figures[name] is not None:
            md += [f"## {title}", "", f"![{title}]({name})", ""]
    text = "\n".join(md)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(text)
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(_html(text, out))
    return out / "report.md"


def _html(markdown: str, folder: Path) -> str:
    """The report as one self-contained HTML page (tables, lists, headings, embedded images)."""
    body, table, items = [], [], []

    def flush() -> None:
        if table:
            rows = [r.strip("|").split("|") for r in table if not set(r) <= set("|-")]
            head, *rest = rows
            body.append(
                "<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in rest)
                + "</table>"
            )  # fmt: skip
            table.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        if line.startswith("- "):
            items.append(line[2:].replace("`", ""))
            continue
        flush()
        if line.startswith("!["):
            name = line[line.rindex("](") + 2 : -1]
            data = base64.b64encode((folder / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            body.append(f"<p>{html.escape(line.replace('`', ''))}</p>")
    flush()
    style = (
        "body{font-family:sans-serif;max-width:1150px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}"
    )
    head = f"<!doctype html><html><head><meta charset='utf-8'><style>{style}</style></head>"
    return f"{head}<body>{''.join(body)}</body></html>"
