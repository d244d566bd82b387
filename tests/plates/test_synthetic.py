import tracemalloc

import h5py
import numpy as np
import pytest
from scipy import ndimage

from livedead.plates.synthetic import PlateSpec, death_hazards, generate_plate, render_image, simulate_well
from tests.helpers import SMALL, assert_one_line_error, run_cli


def test_layout(plate_path):
    with h5py.File(plate_path) as f:
        assert f["images"].shape == (3, 3, 3, 256, 320)
        assert f["images"].dtype == np.uint16
        assert list(f["images"].attrs["channels"]) == ["brightfield", "hoechst", "draq7"]
        assert f["truth/labels"].shape == (3, 3, 256, 320)
        assert f["truth/labels"].dtype == np.uint8
        assert set(np.unique(f["truth/labels"][:])) == {0, 1, 2}
        assert f["truth/live_count"].shape == f["truth/dead_count"].shape == (3, 3)


def test_same_seed_same_file_other_seed_other_file(plate_path, tmp_path):
    again = generate_plate(tmp_path / "again.h5", SMALL, progress=False)
    other = generate_plate(tmp_path / "other.h5", PlateSpec(**{**SMALL.__dict__, "seed": 4}), progress=False)
    with h5py.File(plate_path) as a, h5py.File(again) as b, h5py.File(other) as c:
        for key in ("images", "truth/labels", "truth/live_count", "truth/dead_count"):
            np.testing.assert_array_equal(a[key][:], b[key][:])
        assert not np.array_equal(a["images"][:], c["images"][:])


def test_truth_counts_match_the_cells_drawn(plate_path):
    with h5py.File(plate_path) as f:
        live, dead, labels = f["truth/live_count"][:], f["truth/dead_count"][:], f["truth/labels"][:]
    total = live + dead
    assert (total == total[:, :1]).all(), "cells persist: the total is constant over time"
    assert (np.diff(dead, axis=1) >= 0).all(), "death is irreversible"
    for w in range(3):
        for t in range(3):
            # Touching nuclei merge into one component, so components can only undercount a little.
            n_live = ndimage.label(labels[w, t] == 1)[1]
            n_dead = ndimage.label(labels[w, t] == 2)[1]
            assert 0.9 * live[w, t] <= n_live <= live[w, t] + 1
            assert 0.9 * dead[w, t] - 1 <= n_dead <= dead[w, t]


def test_dose_series_each_well_dies_at_its_own_rate():
    spec = PlateSpec(wells=4, timepoints=8, height=320, width=320, seed=1)
    hazards = death_hazards(spec)
    assert (np.diff(hazards) > 0).all()
    final = [1 - next(iter(list(simulate_well(spec, w))[-1:])).alive.mean() for w in range(4)]
    assert final[0] < 0.2 < 0.6 < final[-1]
    assert final == sorted(final)


def test_cells_move_a_little_and_dead_cells_stay_put():
    spec = PlateSpec(wells=2, timepoints=3, height=300, width=300, seed=2)
    _, second, third = simulate_well(spec, 1)
    step = np.hypot(third.y - second.y, third.x - second.x)
    assert (~second.alive).sum() > 5
    assert 0.3 < np.median(step[third.alive]) < 6
    assert np.median(step[~second.alive]) < 1
    # once dead, a cell is rendered small and round, smaller than its live body
    assert (second.dead_radius < second.body[:, 0]).all()


@pytest.mark.slow
def test_full_size_well_memory_is_a_few_images():
    spec = PlateSpec(wells=1, timepoints=1, height=2700, width=3600, seed=0)
    cells = next(simulate_well(spec, 0))
    tracemalloc.start()
    image, labels, _ = render_image(spec, cells, 0, 0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert image.shape == (3, 2700, 3600)
    assert labels.shape == (2700, 3600)
    one_float_image = 2700 * 3600 * 4
    assert peak < 10 * one_float_image, f"peak {peak / 1e6:.0f} MB"


def test_cli_writes_the_plate(tmp_path):
    out = tmp_path / "p.h5"
    proc = run_cli("livedead.synthetic", f"output={out}", "wells=2", "timepoints=2", "height=96", "width=128")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out) as f:
        assert f["images"].shape == (2, 2, 3, 96, 128)
    assert not list(tmp_path.glob("*.tmp-*"))


def test_cli_bad_value_is_one_line(tmp_path):
    proc = run_cli("livedead.synthetic", f"output={tmp_path / 'p.h5'}", "wells=0")
    assert_one_line_error(proc, "wells", ">= 1", "0")
    assert not (tmp_path / "p.h5").exists()


def test_cli_value_of_the_wrong_type_is_one_line(tmp_path):
    proc = run_cli("livedead.synthetic", f"output={tmp_path / 'p.h5'}", "wells=abc")
    assert_one_line_error(proc, "'wells'", "abc", "Integer")
    assert not (tmp_path / "p.h5").exists()


def test_a_plate_map_sets_the_hazard_and_the_truth_records_each_death(tmp_path):
    from livedead.plates.platefile import read_truth
    from livedead.plates.synthetic import hill_hazard, true_ec50

    spec = PlateSpec(wells=3, timepoints=4, height=160, width=160, seed=2, ec50=1.0, hill=2.0, max_hazard=0.5)
    path = generate_plate(tmp_path / "dose.h5", spec, progress=False, concentrations=[0.0, 1.0, 100.0])
    truth = read_truth(path)
    with h5py.File(path) as f:
        hazards, spec_json = f["truth/death_hazard"][:], f.attrs["spec"]
    assert hazards[0] < hazards[1] < hazards[2]
    assert np.isclose(hazards[2] - hazards[0], (1 - hazards[0]) * hill_hazard(spec, np.array(100.0)))
    assert truth.ec50 == true_ec50(spec)
    assert list(truth.concentration) == [0.0, 1.0, 100.0]
    for w in range(3):  # the dead cells at each time are those whose recorded death came by then
        d = truth.death_time[w][truth.death_time[w] > -2]
        for t in range(4):
            assert ((d >= 0) & (d <= t)).sum() == truth.counts[w, t, 1]
    assert '"ec50": 1.0' in spec_json
    with h5py.File(generate_plate(tmp_path / "default.h5", SMALL, progress=False)) as f:
        assert "ec50" not in f.attrs["spec"]
        assert "truth/death_time" not in f


def test_cli_plate_map_with_an_unmapped_well_is_one_line(tmp_path):
    plate_map = tmp_path / "map.csv"
    plate_map.write_text("well,condition,compound,concentration,unit,replicate\nW01,c,none,0,uM,1\n")
    proc = run_cli("livedead.synthetic", f"output={tmp_path / 'p.h5'}", "wells=2", f"plate_map={plate_map}")
    assert_one_line_error(proc, "found none for W02")
