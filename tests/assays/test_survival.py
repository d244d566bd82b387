"""Kaplan-Meier, median survival and log-rank against hand-checked cases."""

from __future__ import annotations

import numpy as np
import pandas as pd

from livedead.assays.survival import dead_fraction_table, kaplan_meier, logrank_vs_control


def fates(well: str, deaths: list[float], censored: list[float]) -> pd.DataFrame:
    times = deaths + censored
    return pd.DataFrame({"well": well, "duration_h": times, "event": [1] * len(deaths) + [0] * len(censored),
                         "entry_h": 0.0, "dead_at_entry": False})  # fmt: skip


def test_kaplan_meier_matches_the_product_limit_and_leaves_out_cells_dead_at_entry():
    f = pd.concat([fates("A", [1.0, 2.0], [1.5, 3.0]), fates("A", [0.0], []).assign(dead_at_entry=True)])
    s = kaplan_meier(f, "A")
    # 4 at risk: one dies at 1 (3/4); one censored at 1.5; 2 at risk at 2, one dies (3/4 x 1/2)
    assert np.allclose(s.survival, [1.0, 0.75, 0.75, 0.375, 0.375])
    assert s.cells == 4
    assert s.deaths == 2
    assert s.median_h == 2.0
    assert (s.lower <= s.survival).all()
    assert (s.survival <= s.upper).all()


def test_a_median_not_reached_is_not_a_number_and_log_rank_separates_groups():
    never = kaplan_meier(fates("C", [3.0], [4.0] * 9), "C")
    assert never.median_h == np.inf
    f = pd.concat([fates("C", [3.0], [4.0] * 29), fates("D", [1.0] * 25, [4.0] * 5), fates("E", [3.0], [4.0] * 29)])
    p = logrank_vs_control(
        f, {"ctrl": ["C"], "drug": ["D"], "same": ["E"]}, dict.fromkeys(["ctrl", "drug", "same"], "ctrl")
    )
    assert p["drug"] < 1e-6
    assert p["same"] > 0.5


def test_dead_fraction_is_mean_and_sd_over_replicate_wells():
    c = pd.DataFrame({"well": ["A", "B"], "time": [0, 0], "time_h": [0.0, 0.0], "dead": [1, 3], "total": [10, 10]})
    row = dead_fraction_table(c, {"g": ["A", "B"]}).iloc[0]
    assert row["dead_fraction_mean"] == 0.2
    assert np.isclose(row["dead_fraction_sd"], np.std([0.1, 0.3], ddof=1))
