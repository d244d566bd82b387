"""The nuclei table: every counted nucleus once, in bands as whole, read back as written, refused when it disagrees."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livedead.errors import LivedeadError
from livedead.nuclei.counting import BandCounter, find_nuclei
from livedead.nuclei.table import NUCLEI_CSV, NucleiTable, join_tables, read_nuclei_table
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well
from tests.nuclei.test_counting import count_bands


@pytest.fixture(scope="module")
def image_masks() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic image's foreground and dead map: touching nuclei, live and dead."""
    spec = PlateSpec(wells=1, timepoints=1, height=400, width=360, seed=5, density=1500)
    _, labels, _ = render_image(spec, next(simulate_well(spec, 0)), 0, 0)
    return labels > 0, (labels == 2).astype(np.float32)


def written(tmp_path, name, images):
    """The table of ``images`` ((well, time, nuclei), ...) written into ``tmp_path/name``, and its counts rows."""
    folder = tmp_path / name
    folder.mkdir()
    table = NucleiTable()
    for well, time, nuclei in images:
        table.add(well, time, nuclei)
    table.write(folder)
    rows = [{"well": w, "time": t, **n.counts()} for w, t, n in images]
    return folder, rows


def test_the_table_holds_each_counted_nucleus_once_in_bands_as_whole(image_masks, tmp_path):
    foreground, dead_map = image_masks
    whole = find_nuclei(foreground, dead_map=dead_map)
    counter = BandCounter(foreground.shape)
    count_bands(counter, foreground, dead_map, 61)  # nuclei cut by band borders, each counted by one band
    bands = counter.nuclei()
    tables = {}
    for name, nuclei in (("whole", whole), ("bands", bands)):
        folder, rows = written(tmp_path, name, [("A1", 0, nuclei), ("A1", 1, nuclei)])
        tables[name] = read_nuclei_table(folder, rows)
    t = tables["whole"]
    assert len(t) == 2 * len(whole.dead) > 100
    assert list(t.columns) == ["well", "time", "label", "y", "x", "area_px", "state"]
    first = t[t["time"] == 0]
    assert first["label"].tolist() == list(range(1, len(whole.dead) + 1))  # the instance labels' numbers
    np.testing.assert_array_equal(first[["y", "x"]].to_numpy(), whole.centroids)  # read back exactly
    areas = np.bincount(whole.instances.ravel())[1:]
    np.testing.assert_array_equal(first["area_px"], areas)
    np.testing.assert_array_equal(first["state"] == "dead", whole.dead)
    assert 0 < whole.dead.sum() < len(whole.dead)

    def nuclei_of(table):  # the same nuclei, numbered otherwise in bands
        return table[["time", "y", "x", "area_px", "state"]].sort_values(["time", "y", "x"], ignore_index=True)

    pd.testing.assert_frame_equal(nuclei_of(tables["bands"]), nuclei_of(t))


def test_a_table_that_disagrees_with_the_counts_is_one_line(image_masks, tmp_path):
    nuclei = find_nuclei(image_masks[0], dead_map=image_masks[1])
    folder, rows = written(tmp_path, "pred", [("A1", 0, nuclei)])
    assert read_nuclei_table(tmp_path, rows) is None  # a folder without a table: predicted before there was one
    other = [{**rows[0], "dead": rows[0]["dead"] + 1}]
    with pytest.raises(LivedeadError, match=r"nuclei.csv: well A1, time 0: expected counts.csv's \d+ live and \d+"):
        read_nuclei_table(folder, other)
    with pytest.raises(LivedeadError, match="well A1, time 0: expected an image of counts.csv, found none"):
        read_nuclei_table(folder, [{**rows[0], "well": "B2"}])
    path = folder / NUCLEI_CSV
    text = path.read_text()
    path.write_text(text.replace(",live\n", ",alive\n", 1))
    with pytest.raises(LivedeadError, match=r"row \d+: column 'state': expected live or dead, found 'alive'"):
        read_nuclei_table(folder, rows)
    path.write_text(text.replace("area_px", "area", 1))
    with pytest.raises(LivedeadError, match="expected the columns well,time,label,y,x,area_px,state, found"):
        read_nuclei_table(folder, rows)
    path.write_text(text.replace("\nA1,0,1,", "\nA1,zero,1,", 1))
    with pytest.raises(LivedeadError, match="nuclei.csv: expected a table of nuclei, found what does not parse"):
        read_nuclei_table(folder, rows)


def test_a_sharded_prediction_s_tables_join_in_part_order(image_masks, tmp_path):
    nuclei = find_nuclei(image_masks[0], dead_map=image_masks[1])
    a, rows_a = written(tmp_path, "0", [("A1", 0, nuclei)])
    b, rows_b = written(tmp_path, "1", [("A2", 0, nuclei), ("A2", 1, nuclei)])
    out = tmp_path / "merged"
    out.mkdir()
    assert join_tables([a, b], out) == out / NUCLEI_CSV
    joined = read_nuclei_table(out, rows_a + rows_b)
    assert joined["well"].tolist() == ["A1"] * len(nuclei.dead) + ["A2"] * 2 * len(nuclei.dead)
    (b / NUCLEI_CSV).unlink()  # a part of an older livedead: no joined table, not a stale one
    assert join_tables([a, b], out) is None
    assert not (out / NUCLEI_CSV).exists()
