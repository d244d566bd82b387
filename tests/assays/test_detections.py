"""Nuclei re-derived from what predict saved: the counts of its class maps, and one line when nothing was saved."""

from __future__ import annotations

import pytest

from livedead.assays.detections import read_detections
from livedead.errors import LivedeadError
from livedead.inference.evaluation import read_counts


@pytest.mark.slow
def test_the_saved_class_maps_give_the_counted_nuclei(truth_predictions):
    rows = read_counts(truth_predictions)
    d = read_detections(truth_predictions, rows)
    per_image = d.groupby(["well", "time"])["dead"].agg(["size", "sum"])
    for row in rows:
        size, dead = per_image.loc[(row["well"], row["time"])]
        assert abs(size - row["total"]) <= 0.05 * row["total"] + 1  # touching nuclei split again as counted
        assert abs(dead - row["dead"]) <= 0.05 * row["total"] + 1


def test_a_folder_without_maps_is_one_line(tmp_path):
    with pytest.raises(LivedeadError, match="save=tiff or save=ome-tiff"):
        read_detections(tmp_path, [{"well": "W01", "time": 0, "diameter_px": None}])
