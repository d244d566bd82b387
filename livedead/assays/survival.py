"""Survival per well and per condition: Kaplan-Meier curves with their confidence bands, median survival
(the time to 50% death) with its interval, and the log-rank test of each condition against the control.

lifelines does the estimation (Greenwood's variance, exponential-Greenwood bands, left truncation
for cells that entered the field late); cells dead when first seen are left out, as they died
before they could be observed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from lifelines.utils import median_survival_times


@dataclass
class Survival:
    """A Kaplan-Meier curve: times (h), survival, its 95% band, and the median survival with its interval."""

    label: str
    time_h: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    median_h: float
    median_lower_h: float
    median_upper_h: float
    cells: int
    deaths: int


def observed(fates: pd.DataFrame) -> pd.DataFrame:
    """The cells whose survival is observed: all but those dead when first seen."""
    return fates[~fates["dead_at_entry"].astype(bool)]


def kaplan_meier(fates: pd.DataFrame, label: str) -> Survival:
    """The Kaplan-Meier estimate of one group of :func:`livedead.assays.tracking.cell_fates` rows.

    A median not reached within the observation is ``inf`` (as are interval ends not reached):
    reported as "not reached", never as a number.

    >>> f = pd.DataFrame({"duration_h": [1.0, 2.0, 3.0, 3.0], "event": [1, 1, 0, 0], "entry_h": 0.0,
    ...                   "dead_at_entry": False})
    >>> s = kaplan_meier(f, "x")
    >>> s.survival.round(2).tolist(), s.median_h
    ([1.0, 0.75, 0.5, 0.5], 2.0)
    """
    f = observed(fates)
    kmf = KaplanMeierFitter(label=label)
    if not len(f):
        nan = np.array([1.0])
        return Survival(label, np.array([0.0]), nan, nan, nan, np.inf, np.inf, np.inf, 0, 0)
    kmf.fit(f["duration_h"], f["event"], entry=f["entry_h"])
    band = kmf.confidence_interval_survival_function_
    median = kmf.median_survival_time_
    ci = median_survival_times(kmf.confidence_interval_)
    return Survival(
        label,
        kmf.survival_function_.index.to_numpy(float),
        kmf.survival_function_.iloc[:, 0].to_numpy(float),
        band.iloc[:, 0].to_numpy(float),
        band.iloc[:, 1].to_numpy(float),
        float(median),
        float(ci.iloc[0, 0]),
        float(ci.iloc[0, 1]),
        len(f),
        int(f["event"].sum()),
    )


def logrank_vs_control(
    fates: pd.DataFrame, groups: dict[str, Sequence[str]], controls: dict[str, str]
) -> dict[str, float]:
    """The log-rank p-value of each group's cells (``groups``: name to wells) against its control group's
    (``controls``: group to control group; a group without one is not tested)."""
    f = observed(fates)
    out = {}
    for name, wells in groups.items():
        control = controls.get(name)
        if control is None or name == control:
            continue
        ref = f[f["well"].isin(groups[control])]
        g = f[f["well"].isin(wells)]
        if not len(g) or not len(ref):
            out[name] = float("nan")
            continue
        test = logrank_test(g["duration_h"], ref["duration_h"], g["event"], ref["event"])
        out[name] = float(test.p_value)
    return out


def dead_fraction_table(counts: pd.DataFrame, groups: dict[str, Sequence[str]]) -> pd.DataFrame:
    """Per group and time: the mean and SD over its wells of the dead fraction (``counts.csv`` columns
    ``well``, ``time``, ``dead``, ``total``), and the number of wells.

    >>> c = pd.DataFrame({"well": ["A", "B", "A", "B"], "time": [0, 0, 1, 1], "time_h": [0, 0, 1, 1],
    ...                   "dead": [0, 1, 2, 4], "total": [10, 10, 10, 10]})
    >>> table = dead_fraction_table(c, {"g": ["A", "B"]})
    >>> table[["time", "dead_fraction_mean", "dead_fraction_sd", "wells"]].round(3).values.tolist()
    [[0.0, 0.05, 0.071, 2.0], [1.0, 0.3, 0.141, 2.0]]
    """
    c = counts.assign(fraction=counts["dead"] / counts["total"].where(counts["total"] > 0))
    rows = []
    for name, wells in groups.items():
        g = c[c["well"].isin(wells)].groupby("time")
        for time, d in g:
            rows.append({"condition": name, "time": time, "time_h": float(d["time_h"].iloc[0]),
                         "dead_fraction_mean": float(d["fraction"].mean()),
                         "dead_fraction_sd": float(d["fraction"].std(ddof=1)) if len(d) > 1 else 0.0,
                         "wells": len(d)})  # fmt: skip
    return pd.DataFrame(rows)
