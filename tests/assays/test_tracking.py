"""Tracking: gap closing bridges a missed nucleus; death is irreversible; leaving the field is censoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livedead.assays.tracking import cell_fates, link_well, track_plate


def walkers(n: int = 30, steps: int = 8, seed: int = 0) -> pd.DataFrame:
    """Cells on a grid 20 px apart, each stepping about 1.4 px a time point."""
    rng = np.random.default_rng(seed)
    start = np.stack(np.meshgrid(np.arange(6) * 20.0, np.arange(5) * 20.0), -1).reshape(-1, 2)[:n] + 30
    path = start[None] + np.cumsum(rng.normal(0, 1.0, (steps, n, 2)), axis=0)
    t, c = np.meshgrid(np.arange(steps), np.arange(n), indexing="ij")
    return pd.DataFrame({"time": t.ravel(), "cell": c.ravel(), "y": path[..., 0].ravel(), "x": path[..., 1].ravel()})


@pytest.mark.parametrize("tracker", ["laptrack", "trackpy"])
def test_every_link_is_recovered_across_a_missed_frame(tracker):
    d = walkers()
    d = d[~((d["cell"] % 3 == 0) & (d["time"] == 4))].reset_index(drop=True)  # a third of the nuclei missed once
    tracks = link_well(d, max_distance=8, gap_frames=1, tracker=tracker)
    assert len(set(tracks)) == 30
    assert (pd.Series(tracks).groupby(d["cell"]).nunique() == 1).all()
    without_gap_closing = link_well(d, max_distance=8, gap_frames=0, tracker=tracker)
    assert len(set(without_gap_closing)) == 40  # each missed nucleus splits its track in two


def test_death_is_the_first_time_from_which_a_cell_stays_dead_and_leaving_is_censored():
    states = {
        "flicker": ["live", "dead", "live", "dead", "dead"],  # dies at 3: the dead call at 1 was noise
        "survivor": ["live"] * 5,
        "leaver": ["live", "live", "live"],  # gone after time 2: censored
        "entrant": [None, "live", "dead", "dead", "dead"],  # came in at 1, died at 2
        "dead": ["dead"] * 5,  # dead before it could be seen
    }
    rows = [{"well": "W01", "track": k, "time": t, "time_h": t * 0.5, "y": 0.0, "x": 0.0, "state": s}
            for k, v in enumerate(states.values()) for t, s in enumerate(v) if s]  # fmt: skip
    fates = cell_fates(pd.DataFrame(rows), 0, 4).set_index("track")
    assert np.isnan(fates.loc[1, "death"])
    assert np.isnan(fates.loc[2, "death"])
    assert fates.loc[0, "death"] == 3
    assert fates.loc[3, "death"] == 2
    assert fates["event"].tolist() == [1, 0, 0, 1, 0]
    assert fates.loc[2, "left"]
    assert fates.loc[3, "entered"]
    assert fates.loc[3, "entry_h"] == 0.5
    assert fates.loc[4, "dead_at_entry"]
    assert not fates.loc[0, "dead_at_entry"]
    assert fates.loc[0, "duration_h"] == 1.5
    assert fates.loc[1, "duration_h"] == 2.0


def test_track_plate_keeps_wells_apart():
    d = walkers(n=4, steps=3).assign(dead=False, time_h=lambda f: f["time"] * 0.25)
    both = pd.concat([d.assign(well="A"), d.assign(well="B")], ignore_index=True)
    tracks = track_plate(both, max_distance=8)
    assert tracks.groupby("well")["track"].nunique().tolist() == [4, 4]
    assert set(tracks["state"]) == {"live"}


def test_the_positions_gap_closing_bridged_are_filled_in_and_marked_not_observed():
    d = walkers(n=6, steps=5).assign(dead=False, time_h=lambda f: f["time"] * 0.25, well="A")
    missed = (d["cell"] == 2) & (d["time"] == 2)
    tracks = track_plate(d[~missed], max_distance=8, gap_frames=1)
    assert len(tracks) == len(d)
    filled = tracks[~tracks["observed"]]
    assert filled[["time", "time_h", "state"]].values.tolist() == [[2, 0.5, "live"]]
    true = d[missed][["y", "x"]].to_numpy()
    assert np.hypot(*(filled[["y", "x"]].to_numpy() - true).T) < 3  # two steps of about 1.4 px each side
    assert tracks.groupby("track").size().tolist() == [5] * 6
