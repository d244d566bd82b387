"""The nuclei the assay tracks: predict's table of them, read as it is, and in a folder without it the saved maps."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from livedead.assays.detections import derive_detections, image_nuclei, read_detections
from livedead.errors import LivedeadError
from livedead.inference.evaluation import read_counts, write_counts
from livedead.nuclei.table import NUCLEI_CSV, NucleiTable


@pytest.mark.slow
def test_the_saved_class_maps_give_the_counted_nuclei(truth_predictions):
    rows = read_counts(truth_predictions)
    d = read_detections(truth_predictions, rows)
    per_image = d.groupby(["well", "time"])["dead"].agg(["size", "sum"])
    for row in rows:
        size, dead = per_image.loc[(row["well"], row["time"])]
        assert abs(size - row["total"]) <= 0.05 * row["total"] + 1  # touching nuclei split again as counted
        assert abs(dead - row["dead"]) <= 0.05 * row["total"] + 1


def test_the_table_gives_the_nuclei_and_a_folder_without_it_its_maps(truth_predictions, tmp_path):
    """A folder with ``nuclei.csv`` is read from it (its maps not needed: any ``save``); one without it,
    predicted before the table, from its maps, saying so; the same nuclei either way."""
    rows = [{**r, "time_h": r["time"] * 0.25} for r in read_counts(truth_predictions) if r["well"] in ("W01", "W11")]
    table = NucleiTable()
    for row in rows:
        name = f"{row['well']}_t{row['time']:03d}_classes.tif"
        shutil.copy(truth_predictions / name, tmp_path / name)
        nuclei = image_nuclei(tmp_path, row["well"], row["time"], row.get("diameter_px"))
        table.add(row["well"], row["time"], nuclei)
        row.update(nuclei.counts())  # the counts of the nuclei predict would have counted
    table.write(tmp_path)
    write_counts(rows, tmp_path)
    derived = derive_detections(tmp_path, rows)
    for f in tmp_path.glob("*_classes.tif"):
        f.unlink()  # save=none: the table alone
    notes = []
    read = read_detections(tmp_path, read_counts(tmp_path), say=notes.append)
    assert not notes
    assert len(read) > 200
    assert read["dead"].any()
    pd.testing.assert_frame_equal(read[["well", "time", "time_h", "dead"]], derived[["well", "time", "time_h", "dead"]])
    np.testing.assert_array_equal(read[["y", "x"]], derived[["y", "x"]])
    (tmp_path / NUCLEI_CSV).unlink()
    with pytest.raises(LivedeadError, match="expected nuclei.csv, or W01_t000_classes.tif or W01_t000_nuclei.ome.tif"):
        read_detections(tmp_path, rows, say=notes.append)
    assert notes == [f"{tmp_path}: no nuclei.csv (predicted by an older livedead): finding its nuclei again in its "
                     "saved maps"]  # fmt: skip


def test_a_folder_without_rows_is_one_line(tmp_path):
    with pytest.raises(LivedeadError, match="counts.csv: expected rows of images, found none"):
        read_detections(tmp_path, [])
