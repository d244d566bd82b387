"""Populations of nuclei by size: counts per population where a plate holds two or more.

A killing assay images large target nuclei (MCF-7, about 14 µm across) among small effector ones (NK
cells, about 5 µm), and its read-out is the dead fraction of the targets, not of every nucleus. So
``predict populations=...`` sorts every counted nucleus by its equivalent diameter, either into
ranges given in micrometres (``+populations.target.diameter_um=[10,30]``) or, with ``auto``, by a
Gaussian mixture fitted to the plate's log diameters (scikit-learn's ``GaussianMixture``; 1 to 3
components, the number chosen by BIC), which is reported only when the plate is clearly bimodal:
neighbouring components are one population unless each holds ``MIN_WEIGHT`` of the nuclei, Ashman's
D = sqrt(2) |mu1 - mu2| / sqrt(s1^2 + s2^2) reaches ``MIN_ASHMAN_D`` (above 2 two normals are cleanly
apart) and their density dips between its modes to ``MAX_DIP`` of the lower: a valley, not a
shoulder. A skewed single population (the stardist nuclei: BIC prefers two components, D 2.2, but
the smaller is a shoulder of the larger) is one; so are the specks a labelling keeps beside the
effectors. Otherwise the plate is one population and no columns are added, rather than a split of noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from livedead.errors import LivedeadError

MIN_ASHMAN_D = 2.0
"""Ashman's D at or above which two fitted normals are two populations, not one skewed one."""
MIN_WEIGHT = 0.05
"""The smaller population's least share of the nuclei: a handful of outliers is no population."""
MAX_DIP = 0.8
"""Two components' density between their modes must fall to this fraction of the lower mode: a valley, not a
shoulder. Measured: 0.98 between the stardist nuclei's two components (one skewed population), 0.99 between
debris and NK nuclei of the MCF-7 / NK assay's stain labels, 0.68-0.73 between its NK and MCF-7 nuclei."""
MIN_NUCLEI = 20
"""Fewer nuclei on a plate than this fit no mixture: ``auto`` reports one population."""
MAX_COMPONENTS = 3
"""The most mixture components ``auto`` fits: targets, effectors and the debris or specks a labelling keeps."""
AUTO_NAMES = {1: ("small", "large"), 2: ("small", "medium", "large")}
"""The populations' names by the number of splits ``auto`` found."""


@dataclass
class Populations:
    """How nuclei are sorted: by diameter ranges (``ranges``: name -> (low, high) in ``unit``), with the
    mixture they came from for ``auto`` (``fit``); none (``ranges`` empty): one population."""

    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    unit: str = "um"
    """``um``, or ``px`` where ``auto`` fitted a plate of unknown pixel size."""
    fit: dict[str, Any] | None = None
    """For ``auto``: the one- and two-component BICs, means, standard deviations (of log diameter), weights,
    Ashman's D and whether the plate was found bimodal."""

    def assign(self, diameters: np.ndarray) -> np.ndarray:
        """The population index of each diameter (in ``unit``), -1 for one outside every range."""
        out = np.full(len(diameters), -1, int)
        for i, (low, high) in enumerate(self.ranges.values()):
            out[(diameters >= low) & (diameters < high)] = i
        return out

    def counts(self, diameters: np.ndarray, dead: np.ndarray, prefix: str = "") -> dict[str, float]:
        """``<prefix><name>_live``, ``_dead`` and ``_dead_fraction`` per population, and the nuclei outside every
        range (``<prefix>unassigned``); empty for one population."""
        if not self.ranges:
            return {}
        which = self.assign(np.asarray(diameters, float))
        dead = np.asarray(dead, bool)
        row: dict[str, float] = {}
        for i, name in enumerate(self.ranges):
            live_n, dead_n = int(((which == i) & ~dead).sum()), int(((which == i) & dead).sum())
            row[f"{prefix}{name}_live"], row[f"{prefix}{name}_dead"] = live_n, dead_n
            row[f"{prefix}{name}_dead_fraction"] = round(dead_n / (live_n + dead_n), 4) if live_n + dead_n else 0.0
        row[f"{prefix}unassigned"] = int((which < 0).sum())
        return row

    def describe(self) -> dict[str, Any]:
        """What ``metrics.json`` records of the definition (an open upper end as null, which JSON has)."""
        ranges = {k: [low, high if np.isfinite(high) else None] for k, (low, high) in self.ranges.items()}
        return {"unit": self.unit, "ranges": ranges, "fit": self.fit}


def parse_populations(setting: Any) -> Populations | str | None:
    """Config key ``populations``: None or ``{}`` (off), ``auto``, or ``{name: {diameter_um: [low, high]}}``;
    anything else is one line naming the key. ``auto`` is returned as is, to be fitted to the plate."""
    if setting is None or (isinstance(setting, Mapping) and not setting):
        return None
    if setting == "auto":
        return "auto"
    if not isinstance(setting, Mapping):
        raise LivedeadError(
            "config key 'populations': expected 'auto' or populations by diameter "
            f"(+populations.target.diameter_um=[10,30]), found {setting!r}"
        )
    ranges: dict[str, tuple[float, float]] = {}
    for name, spec in setting.items():
        key = f"config key 'populations.{name}.diameter_um'"
        value = spec.get("diameter_um") if isinstance(spec, Mapping) else None
        extra = sorted(set(spec) - {"diameter_um"}) if isinstance(spec, Mapping) else []
        if extra:
            raise LivedeadError(f"config key 'populations.{name}': expected only 'diameter_um', found {extra}")
        try:
            low, high = (float(v) for v in value)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise LivedeadError(f"{key}: expected [low, high] in µm, found {value!r}") from None
        if not (np.isfinite(low) and np.isfinite(high) and 0 <= low < high):
            raise LivedeadError(f"{key}: expected 0 <= low < high, found [{low:g}, {high:g}]")
        for other, (o_low, o_high) in ranges.items():
            if low < o_high and o_low < high:
                raise LivedeadError(
                    f"{key}: expected a range apart from population '{other}' [{o_low:g}, {o_high:g}], "
                    f"found [{low:g}, {high:g}], which overlaps it"
                )
        ranges[str(name)] = (low, high)
    return Populations(ranges)


def nucleus_diameters(instances: np.ndarray, n: int) -> np.ndarray:
    """The equivalent diameter (px) of nuclei 1..n of an instance map: the diameter of a disc of its area."""
    area = np.bincount(instances.ravel(), minlength=n + 1)[1 : n + 1]
    return np.sqrt(4 * area / np.pi)


def _apart(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[bool, float, float]:
    """Whether two fitted components (weight, mean, sd of log diameter; ``a`` the smaller) are clearly two
    populations: each holds ``MIN_WEIGHT`` of the nuclei, Ashman's D reaches ``MIN_ASHMAN_D`` and their weighted
    density dips between its modes to ``MAX_DIP`` of the lower. Returns (apart, D, dip)."""
    (wa, ma, sa), (wb, mb, sb) = a, b
    ashman = float(np.sqrt(2) * abs(mb - ma) / np.sqrt(sa**2 + sb**2))
    x = np.linspace(ma - 3 * sa, mb + 3 * sb, 2001)
    density = wa * np.exp(-0.5 * ((x - ma) / sa) ** 2) / sa + wb * np.exp(-0.5 * ((x - mb) / sb) ** 2) / sb
    peaks = np.flatnonzero((density[1:-1] > density[:-2]) & (density[1:-1] >= density[2:])) + 1
    dip = float(density[peaks[0] : peaks[-1] + 1].min() / density[peaks].min()) if len(peaks) > 1 else 1.0
    return min(wa, wb) >= MIN_WEIGHT and ashman >= MIN_ASHMAN_D and dip <= MAX_DIP, ashman, dip


def _crossing(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """The log diameter between two components' means where the larger one's weighted density overtakes."""
    (wa, ma, sa), (wb, mb, sb) = a, b
    x = np.linspace(ma, mb, 2001)
    fa = wa * np.exp(-0.5 * ((x - ma) / sa) ** 2) / sa
    fb = wb * np.exp(-0.5 * ((x - mb) / sb) ** 2) / sb
    return float(x[np.argmax(fb >= fa)])


def fit_populations(diameters: np.ndarray, unit: str, seed: int = 0) -> Populations:
    """``auto``: Gaussian mixtures of 1 to ``MAX_COMPONENTS`` components fitted to the log diameters, the number
    chosen by BIC; neighbouring components that are not clearly apart (:func:`_apart`) are one population.
    Populations are reported only where two or more remain, split where neighbours' weighted densities cross."""
    from sklearn.mixture import GaussianMixture  # only ``auto`` needs it; imported here, not with counting

    values = np.asarray(diameters, float)
    logd = np.log(values[values > 0]).reshape(-1, 1)
    if len(logd) < MIN_NUCLEI:
        return Populations(unit=unit, fit={"nuclei": len(logd), "bimodal": False})
    mixtures = [GaussianMixture(k, n_init=3, random_state=seed).fit(logd) for k in range(1, MAX_COMPONENTS + 1)]
    bics = [float(m.bic(logd)) for m in mixtures]
    best = mixtures[int(np.argmin(bics))]
    order = np.argsort(best.means_.ravel())
    comps = [(float(best.weights_[i]), float(best.means_.ravel()[i]), float(np.sqrt(best.covariances_.ravel()[i])))
             for i in order]  # fmt: skip
    cuts, pairs = [], []
    for a, b in itertools.pairwise(comps):
        apart, ashman, dip = _apart(a, b)
        pairs.append({"ashman_d": round(ashman, 3), "dip": round(dip, 3), "apart": apart})
        if apart:
            cuts.append(float(np.exp(_crossing(a, b))))
    fit: dict[str, Any] = {
        "nuclei": len(logd),
        "bic": [round(b, 2) for b in bics],
        "components": len(comps),
        "median_diameter": [round(float(np.exp(m)), 3) for _, m, _ in comps],
        "sd_log_diameter": [round(s, 4) for _, _, s in comps],
        "weights": [round(w, 4) for w, _, _ in comps],
        "neighbours": pairs,
        "bimodal": bool(cuts),
    }
    if not cuts:
        return Populations(unit=unit, fit=fit)
    fit["split_diameter"] = [round(c, 3) for c in cuts]
    edges = [0.0, *cuts, float("inf")]
    names = AUTO_NAMES[len(cuts)]
    return Populations({n: (edges[i], edges[i + 1]) for i, n in enumerate(names)}, unit, fit)
