"""The 4PL fit: a known curve recovered with its interval; no number where there is no fit."""

from __future__ import annotations

import numpy as np

from livedead.assays.doseresponse import ROW_COLUMNS, fit_4pl, four_pl


def test_a_noisy_curve_is_recovered_within_its_interval_95_times_in_100():
    c = np.repeat(np.logspace(-2, 2, 8), 3)
    fits = []
    for seed in range(100):
        y = four_pl(np.log10(c), 0.05, 0.8, np.log10(0.7), 1.3) + np.random.default_rng(seed).normal(0, 0.03, len(c))
        fits.append(fit_4pl("drug", c, y))
    assert all(f.status == "ok" for f in fits)
    covered = np.mean([f.ec50_lower < 0.7 < f.ec50_upper for f in fits])
    assert 0.88 <= covered <= 1.0, covered
    fit = fits[0]
    assert abs(fit.ec50 / 0.7 - 1) < 0.25
    assert abs(fit.hill - 1.3) < 0.4
    assert abs(fit.top - 0.8) < 0.05
    assert abs(fit.bottom - 0.05) < 0.05
    row = fit.row("uM", 2.5)
    assert row["status"] == "ok"
    assert float(row["ec50"]) == float(f"{fit.ec50:.6g}")
    assert row["at_h"] == "2.5"
    assert tuple(row) == ROW_COLUMNS  # dose_response.csv's header, also when no compound has a dose series


def test_no_dose_effect_or_too_few_concentrations_give_no_number():
    c = np.repeat([0.1, 1.0, 10.0, 100.0], 3)
    flat = fit_4pl("inert", c, np.full(len(c), 0.1))
    assert flat.status.startswith("no dose effect")
    assert flat.ec50 is None
    noise = fit_4pl("inert", c, 0.1 + np.random.default_rng(0).normal(0, 0.02, len(c)))
    assert noise.status != "ok"
    assert noise.ec50 is None
    assert flat.row("uM", 1.0)["ec50"] == ""
    three = fit_4pl("short", [1, 2, 3, 3], [0.1, 0.5, 0.9, 0.9])
    assert three.status == "fewer than 4 concentrations"
    assert three.ec50 is None
