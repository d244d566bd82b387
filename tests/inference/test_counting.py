import numpy as np
import pytest

from livedead.inference.counting import count_cells, find_nuclei, per_tile_counts


def disk(img, cy, cx, r, value):
    yy, xx = np.ogrid[: img.shape[0], : img.shape[1]]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value


def test_counting_known_masks_with_touching_nuclei():
    m = np.zeros((200, 300), np.uint8)
    for i in range(5):
        disk(m, 20, 20 + 40 * i, 7, 1)  # 5 live, apart
    for i in range(3):
        disk(m, 60, 20 + 40 * i, 6, 2)  # 3 dead, apart
    for i in range(2):
        disk(m, 110, 30 + 80 * i, 8, 1)  # 2 pairs of touching live nuclei
        disk(m, 110, 43 + 80 * i, 8, 1)
    disk(m, 160, 40, 8, 1)  # a live and a dead nucleus touching
    disk(m, 160, 53, 8, 2)
    disk(m, 180, 250, 1, 2)  # debris below min_size
    counts = count_cells(m, min_size=20)
    assert counts == {"live": 10, "dead": 4, "total": 14, "dead_fraction": pytest.approx(4 / 14)}
    assert count_cells(m, split=False)["total"] == 11, "without the watershed, touching nuclei merge"
    nuclei = find_nuclei(m)
    tiles = per_tile_counts(nuclei, m.shape, tile=160)
    assert tiles.shape == (4, 2)
    assert tiles.sum(0).tolist() == [10, 4]
