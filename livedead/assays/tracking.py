"""Cells tracked over the time points of a well, and each cell's time of death.

Linking is laptrack's (Jaqaman et al. 2008's linear assignment, with gap closing: a nucleus missed
in up to ``gap_frames`` images is bridged); trackpy's (Crocker-Grier, with ``memory``) is the
alternative, for comparison (``benchmarks/assay.py``). A cell's time of death is the first time
point from which its nucleus stays dead: a dead call that flips back to live is noise, since death
is irreversible. A track that starts after the first time point entered the field, one that ends
alive before the last left it: both are censored (:func:`cell_fates`), never deaths.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse import csgraph

from livedead.errors import LivedeadError

TRACKERS = ("laptrack", "trackpy")
TRACK_COLUMNS = ["well", "track", "time", "time_h", "y", "x", "state", "observed"]
"""The columns of ``tracks.csv``; ``state`` is ``live`` or ``dead`` as counted, ``time`` the time point index;
``observed`` is False for a position that gap closing filled in (:func:`fill_gaps`)."""


def link_well(
    detections: pd.DataFrame, max_distance: float, gap_frames: int = 1, tracker: str = "laptrack"
) -> np.ndarray:
    """The track of each detection of one well (rows of ``time``, ``y``, ``x``): an integer per row, 0, 1...

    >>> d = pd.DataFrame({"time": [0, 0, 1, 1, 3], "y": [10.0, 50, 11, 49, 12], "x": [10.0, 50, 10, 51, 9]})
    >>> link_well(d, max_distance=5, gap_frames=1).tolist()  # time 2 missed: the cell at 12, 9 is the first one's
    [0, 1, 0, 1, 0]
    """
    if tracker not in TRACKERS:
        raise LivedeadError(f"config key 'tracker': expected one of {TRACKERS}, found {tracker!r}")
    if not len(detections):
        return np.zeros(0, np.int64)
    frame = detections[["time", "y", "x"]].reset_index(drop=True).copy()
    frame["row"] = np.arange(len(frame))
    ids = (_laptrack if tracker == "laptrack" else _trackpy)(frame, max_distance, gap_frames)
    _, dense = np.unique(ids, return_inverse=True)
    first = pd.Series(np.arange(len(dense))).groupby(dense).min().to_numpy()
    order = np.argsort(np.argsort(first))  # tracks numbered by their first detection
    return order[dense]


def _laptrack(frame: pd.DataFrame, max_distance: float, gap_frames: int) -> np.ndarray:
    from laptrack import LapTrack

    cutoff = float(max_distance) ** 2
    gap_cutoff = cutoff * (gap_frames + 1)
    # Not linking costs what the farthest allowed link costs (Jaqaman's rule): laptrack's default, a
    # percentile of the link costs, would leave a bridged gap longer than most steps unlinked.
    lt = LapTrack(
        metric="sqeuclidean",
        cutoff=cutoff,
        track_start_cost=cutoff,
        track_end_cost=cutoff,
        segment_start_cost=gap_cutoff,
        segment_end_cost=gap_cutoff,
        gap_closing_cutoff=gap_cutoff if gap_frames else False,
        gap_closing_max_frame_count=gap_frames + 1,
        splitting_cutoff=False,
        merging_cutoff=False,
    )
    # The graph of links, whose pieces are the tracks (no splitting or merging): what predict_dataframe
    # finds, without its table of the tree, built row by row, which took half the linking's time.
    times = frame["time"].to_numpy()
    positions = frame[["y", "x"]].to_numpy(np.float64)
    rows = [np.flatnonzero(times == t) for t in range(int(times.min()), int(times.max()) + 1)]
    tree = lt.predict([positions[r] if len(r) else np.array([]) for r in rows])
    row_of = {(t, i): int(r[i]) for t, r in enumerate(rows) for i in range(len(r))}
    edges = np.array([(row_of[a], row_of[b]) for a, b in tree.edges()], np.int64).reshape(-1, 2)
    graph = sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(frame), len(frame)))
    return csgraph.connected_components(graph, directed=False)[1]


def _trackpy(frame: pd.DataFrame, max_distance: float, gap_frames: int) -> np.ndarray:
    try:
        import trackpy
    except ImportError:
        raise LivedeadError('tracker=trackpy needs trackpy: pip install "livedead[bench]"') from None
    trackpy.quiet()
    frames = frame.rename(columns={"time": "frame"})
    linked = trackpy.link(frames, search_range=max_distance, memory=gap_frames, pos_columns=["y", "x"])
    return linked.sort_values("row")["particle"].to_numpy()


def fill_gaps(tracks: pd.DataFrame) -> pd.DataFrame:
    """A track's positions at the time points gap closing bridged, filled in and marked ``observed`` False.

    The position is interpolated linearly between the two detections the gap lies between; the
    state is the one before the gap (carried forward), so a filled-in row never moves a time of
    death: a cell last seen live and next seen dead died at the next observation, as without it.

    >>> t = pd.DataFrame({"well": "A", "track": 0, "time": [0, 2], "time_h": [0.0, 1.0], "y": [10.0, 14.0],
    ...                   "x": [5.0, 5.0], "state": ["live", "dead"]})
    >>> fill_gaps(t)[["time", "time_h", "y", "state", "observed"]].values.tolist()
    [[0, 0.0, 10.0, 'live', True], [1, 0.5, 12.0, 'live', False], [2, 1.0, 14.0, 'dead', True]]
    """
    t = tracks.sort_values(["well", "track", "time"], kind="stable", ignore_index=True).assign(observed=True)
    step = np.diff(t["time"].to_numpy())
    gap = np.flatnonzero((step > 1) & (t["track"].to_numpy()[1:] == t["track"].to_numpy()[:-1])
                         & (t["well"].to_numpy()[1:] == t["well"].to_numpy()[:-1]))  # fmt: skip
    if not len(gap):
        return t
    before, after = t.iloc[gap].reset_index(drop=True), t.iloc[gap + 1].reset_index(drop=True)
    k = step[gap] - 1
    rows = before.loc[np.repeat(np.arange(len(gap)), k)].reset_index(drop=True)
    end = after.loc[np.repeat(np.arange(len(gap)), k)].reset_index(drop=True)
    offset = np.concatenate([np.arange(1, n + 1) for n in k])
    f = offset / np.repeat(step[gap], k)
    rows["time"] = rows["time"] + offset
    for col in ("time_h", "y", "x"):
        rows[col] = (rows[col] + f * (end[col] - rows[col])).round(2 if col != "time_h" else 6)
    rows["observed"] = False
    return pd.concat([t, rows], ignore_index=True).sort_values(["well", "track", "time"], ignore_index=True)


def track_plate(
    detections: pd.DataFrame,
    max_distance: float,
    gap_frames: int = 2,
    tracker: str = "laptrack",
    on_well: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """``tracks.csv``'s table of every well's detections (``well``, ``time``, ``time_h``, ``y``, ``x``, ``dead``),
    with the positions gap closing bridged filled in (``observed`` False)."""
    out = []
    for well, d in detections.groupby("well", sort=False):
        d = d.sort_values("time", kind="stable")
        tracks = link_well(d, max_distance, gap_frames, tracker)
        state = np.where(d["dead"].to_numpy(bool), "dead", "live")
        out.append(
            pd.DataFrame({"well": well, "track": tracks, "time": d["time"].to_numpy(), "time_h": d["time_h"].to_numpy(),
                          "y": d["y"].round(2).to_numpy(), "x": d["x"].round(2).to_numpy(), "state": state})
        )  # fmt: skip
        if on_well is not None:
            on_well()
    if not out:
        return pd.DataFrame(columns=TRACK_COLUMNS)
    return fill_gaps(pd.concat(out, ignore_index=True))


def death_time(dead: np.ndarray) -> int | None:
    """The index from which a track's states stay dead (None: it ends alive).

    >>> death_time(np.array([False, True, False, True, True])), death_time(np.array([True, False]))
    (3, None)
    """
    dead = np.asarray(dead, bool)
    if not len(dead) or not dead[-1]:
        return None
    alive = np.flatnonzero(~dead)
    return int(alive[-1] + 1) if len(alive) else 0


def cell_fates(tracks: pd.DataFrame, first_time: int, last_time: int) -> pd.DataFrame:
    """One row per track: where it starts and ends, its time of death and how its survival is observed.

    ``event`` is 1 for a death seen (alive first, then dead to its end), 0 for a cell censored:
    alive at the end, or alive when it left the field. ``entry`` is the time the cell came under
    observation (a track that starts after ``first_time`` entered the field: left-truncated).
    Cells dead when first seen (``dead_at_entry``) died unseen and are left out of survival.
    """
    rows = []
    for (well, track), t in tracks.groupby(["well", "track"], sort=False):
        dead = (t["state"] == "dead").to_numpy()
        d = death_time(dead)
        times, hours = t["time"].to_numpy(), t["time_h"].to_numpy()
        died = d is not None and d > 0
        rows.append({
            "well": well, "track": track, "start": int(times[0]), "end": int(times[-1]),
            "entry_h": float(hours[0]), "death": float(times[d]) if died else np.nan,
            "duration_h": float(hours[d] if died else hours[-1]), "event": int(died),
            "dead_at_entry": d == 0, "entered": bool(times[0] > first_time),
            "left": bool(d is None and times[-1] < last_time),
        })  # fmt: skip
    return pd.DataFrame(rows)
