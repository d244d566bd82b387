"""Dose-response: the four-parameter logistic (4PL) of the dead fraction against log concentration, per compound.

``y = bottom + (top - bottom) / (1 + 10^((log10 EC50 - log10 c) hill))``, fitted by least squares
(``scipy.optimize.curve_fit``) to every replicate well, as GraphPad Prism's "log(agonist) vs.
response, variable slope". The EC50's 95% interval is the profile of ``log10 EC50``'s standard
error with Student's t on n - 4 degrees of freedom (Prism's asymmetric interval in concentration).
A compound with fewer than four concentrations, a fit that does not converge (or whose EC50
interval is not finite or spans more than six decades), or one whose top and bottom do not
differ, is reported as such, with no number.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit

MIN_CONCENTRATIONS = 4
ROW_COLUMNS = ("compound", "status", "at_h", "unit", "ec50", "ec50_ci_lower", "ec50_ci_upper", "hill", "top", "bottom",
               "concentrations", "points")  # fmt: skip
"""The columns of ``dose_response.csv`` (:meth:`DoseResponse.row`)."""


def four_pl(log_c: np.ndarray, bottom: float, top: float, log_ec50: float, hill: float) -> np.ndarray:
    """The 4PL at log10 concentrations.

    >>> float(four_pl(np.array(0.0), 0.1, 0.9, 0.0, 1.0))
    0.5
    """
    return bottom + (top - bottom) / (1.0 + 10.0 ** ((log_ec50 - log_c) * hill))


@dataclass
class DoseResponse:
    """One compound's fit; ``status`` is ``ok`` or says why there is no number (too few concentrations,
    no convergence, no dose effect)."""

    compound: str
    status: str
    concentrations: int
    points: int
    ec50: float | None = None
    ec50_lower: float | None = None
    ec50_upper: float | None = None
    hill: float | None = None
    top: float | None = None
    bottom: float | None = None

    def row(self, unit: str, at_h: float) -> dict[str, object]:
        """The row of ``dose_response.csv``: empty cells where the fit gave no number."""

        def num(v: float | None) -> str:
            return "" if v is None else f"{v:.6g}"

        return {"compound": self.compound, "status": self.status, "at_h": f"{at_h:g}", "unit": unit,
                "ec50": num(self.ec50), "ec50_ci_lower": num(self.ec50_lower), "ec50_ci_upper": num(self.ec50_upper),
                "hill": num(self.hill), "top": num(self.top), "bottom": num(self.bottom),
                "concentrations": self.concentrations, "points": self.points}  # fmt: skip


def fit_4pl(compound: str, concentration: Sequence[float], response: Sequence[float]) -> DoseResponse:
    """Fit the 4PL to replicate points (concentrations > 0; responses in [0, 1]).

    >>> c = np.repeat([0.1, 0.3, 1, 3, 10, 30], 2)
    >>> r = four_pl(np.log10(c), 0.05, 0.9, np.log10(2.0), 1.2) + np.tile([-0.01, 0.01], 6)
    >>> fit = fit_4pl("x", c, r)
    >>> fit.status, round(fit.ec50, 2), fit.ec50_lower < 2.0 < fit.ec50_upper
    ('ok', 2.0, True)
    >>> fit_4pl("y", [1, 1, 2, 3], [0.1, 0.1, 0.5, 0.9]).status
    'fewer than 4 concentrations'
    """
    c, y = np.asarray(concentration, np.float64), np.asarray(response, np.float64)
    keep = (c > 0) & np.isfinite(y)
    c, y = c[keep], y[keep]
    levels = len(np.unique(c))
    if levels < MIN_CONCENTRATIONS:
        return DoseResponse(compound, f"fewer than {MIN_CONCENTRATIONS} concentrations", levels, len(c))
    x = np.log10(c)
    order = np.argsort(x)
    p0 = [y[order[:2]].mean(), y[order[-2:]].mean(), float(np.median(x)), 1.0]
    bounds = ([-0.5, -0.5, x.min() - 3, 0.05], [1.5, 1.5, x.max() + 3, 20.0])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            params, cov = curve_fit(four_pl, x, y, p0=p0, bounds=bounds, maxfev=20000)
    except (RuntimeError, OptimizeWarning, ValueError):
        return DoseResponse(compound, "did not converge", levels, len(c))
    dof = len(c) - 4
    if dof < 1 or not np.all(np.isfinite(cov)):
        return DoseResponse(compound, "did not converge", levels, len(c))
    bottom, top, log_ec50, hill = (float(p) for p in params)
    t = float(stats.t.ppf(0.975, dof))
    span_se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    if abs(top - bottom) <= t * span_se:
        return DoseResponse(compound, "no dose effect (top = bottom within the 95% interval)", levels, len(c))
    half = t * float(np.sqrt(cov[2, 2]))
    if half > 3:  # an interval wider than six decades: the EC50 is not determined
        return DoseResponse(compound, "did not converge (EC50 not determined)", levels, len(c))
    return DoseResponse(compound, "ok", levels, len(c), 10**log_ec50, 10 ** (log_ec50 - half),
                        10 ** (log_ec50 + half), hill, top, bottom)  # fmt: skip
