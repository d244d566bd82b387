"""Prepare's worker pool, :mod:`livedead.data.workers`: results in order, through shared memory, errors passed on."""

import mmap
import os

import numpy as np
import pytest

from livedead.data.tilefile import tile_rows
from livedead.data.workers import ResultSlots, labelled_tiles, worker_count
from livedead.errors import LivedeadError

ROWS = tile_rows(8, np.dtype(np.uint16), 3)
N = 4  # tiles of one image, the size of a result slot


def fake_label(index, out):
    """Tiles whose pixels say which image they are of, and which process made them; image (9, 9) fails,
    and images of well 5 have more tiles than a slot holds."""
    well, time = index
    if index == (9, 9):
        raise LivedeadError("image (9, 9): cannot be read")
    n = 2 * N if well == 5 else N
    arrays = (
        out if out is not None and len(out["images"]) >= n else {k: np.empty((n, *s), d) for k, (s, d) in ROWS.items()}
    )
    arrays = {k: v[:n] for k, v in arrays.items()}
    arrays["images"][:] = 100 * well + time
    arrays["labels"][:] = time
    arrays["class_counts"][:] = os.getpid()
    arrays["origin"][:] = (well, time, 0, 0)
    return arrays, float(well), 0.5


def _mapped(a):
    """Whether an array's memory is an anonymous shared mapping (a result slot)."""
    while a is not None and not isinstance(a, mmap.mmap):
        a = getattr(a, "base", None)
    return a is not None


ORDER = [(w, t) for w in (3, 1, 5, 2) for t in (0, 1)]


def test_two_workers_give_what_one_gives_in_order_through_shared_memory():
    seen = []
    for arrays, diameter, seconds in labelled_tiles(fake_label, ORDER, 2, ROWS, N):
        well, time = arrays["origin"][0, :2]
        seen.append(((int(well), int(time)), int(arrays["images"].max()), len(arrays["images"]), diameter, seconds))
        assert _mapped(arrays["images"]) == (well != 5)  # an image too large for a slot comes back pickled
        assert (arrays["class_counts"] != os.getpid()).all()  # made in a worker
    alone = [
        ((int(a["origin"][0, 0]), int(a["origin"][0, 1])), int(a["images"].max()), len(a["images"]), d, s)
        for a, d, s in labelled_tiles(fake_label, ORDER, 1, ROWS, N)
    ]
    assert seen == alone
    assert [s[0] for s in seen] == ORDER
    assert [s[2] for s in seen] == [2 * N if w == 5 else N for w, _ in ORDER]


def test_an_error_in_a_worker_reaches_the_caller():
    with pytest.raises(LivedeadError, match=r"image \(9, 9\): cannot be read"):
        list(labelled_tiles(fake_label, [(1, 0), (9, 9), (2, 0)], 2, ROWS, N))


def test_result_slots_do_not_overlap():
    slots = ResultSlots(ROWS, N, 3)
    views = [slots.views(s) for s in range(3)]
    for s, v in enumerate(views):
        for a in v.values():
            a[...] = s
    for s, v in enumerate(views):
        assert all((a == s).all() for a in v.values())
        assert v["images"].shape == (N, 1, 8, 8)
    assert slots.views(1, 2)["origin"].shape == (2, 4)
    del views, v, a
    slots.close()


def test_worker_count_is_the_setting_or_the_cpus_this_process_may_use():
    assert worker_count(3) == 3
    assert worker_count(None) == len(os.sched_getaffinity(0))
