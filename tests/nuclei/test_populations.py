"""Populations of nuclei by size: ranges in µm, or ``auto`` where a plate is clearly bimodal."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from livedead.errors import LivedeadError
from livedead.nuclei.counting import stain_reference
from livedead.nuclei.labels import labels_from_stains
from livedead.nuclei.populations import Populations, fit_populations, nucleus_diameters, parse_populations
from livedead.nuclei.size import image_sizes
from tests.helpers import ROOT, real_nuclei

ASSAY = ROOT.parent / "shared" / "real" / "mcf7-killing"
KILLING = {"target": {"diameter_um": [10, 30]}, "effector": {"diameter_um": [3, 10]}}


def stain_diameters(hoechst: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """The equivalent diameters (px) of the nuclei the stain labelling counts, as ``predict`` measures them."""
    sizes = image_sizes(hoechst, dead)
    nuclei = stain_reference(labels_from_stains(hoechst, dead, sizes=sizes), sizes)
    return nucleus_diameters(nuclei.instances, len(nuclei.dead))


def test_ranges_count_live_and_dead_per_population():
    """Each nucleus falls in the range its diameter lies in (low inclusive); outside every range it is counted apart."""
    pops = parse_populations(KILLING)
    assert isinstance(pops, Populations)
    assert list(pops.ranges) == ["target", "effector"]
    diameters = np.array([14.0, 12.0, 10.0, 5.0, 3.0, 9.99, 2.0, 31.0])
    dead = np.array([True, False, False, True, False, False, True, False])
    row = pops.counts(diameters, dead, "stain_")
    assert row == {"stain_target_live": 2, "stain_target_dead": 1, "stain_target_dead_fraction": round(1 / 3, 4),
                   "stain_effector_live": 2, "stain_effector_dead": 1, "stain_effector_dead_fraction": round(1 / 3, 4),
                   "stain_unassigned": 2}  # fmt: skip
    assert Populations().counts(diameters, dead) == {}  # one population: no columns
    square = np.zeros((20, 20), np.int32)
    square[2:12, 2:12], square[15:17, 15:17] = 1, 2
    np.testing.assert_allclose(nucleus_diameters(square, 2), np.sqrt(4 * np.array([100, 4]) / np.pi))


@pytest.mark.parametrize(
    ("setting", "fragments"),
    [
        (
            {"a": {"diameter_um": [3, 10]}, "b": {"diameter_um": [8, 20]}},
            ["'populations.b.diameter_um'", "overlaps", "'a'"],
        ),
        ({"a": {"diameter_um": ["ten", 20]}}, ["'populations.a.diameter_um'", "[low, high] in µm", "'ten'"]),
        ({"a": {"diameter_um": [20, 10]}}, ["'populations.a.diameter_um'", "low < high", "[20, 10]"]),
        ({"a": {"diameter_um": 5}}, ["'populations.a.diameter_um'", "found 5"]),
        ({"a": {"diameter": [3, 10]}}, ["'populations.a'", "only 'diameter_um'", "['diameter']"]),
        ("bimodal", ["'populations'", "'auto'", "'bimodal'"]),
    ],
)
def test_bad_populations_are_one_line_naming_the_key(setting, fragments):
    with pytest.raises(LivedeadError) as err:
        parse_populations(setting)
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_off_and_auto_settings():
    assert parse_populations(None) is None
    assert parse_populations({}) is None
    assert parse_populations("auto") == "auto"


@pytest.mark.slow
def test_auto_reports_one_population_on_the_stardist_nuclei():
    """125 nuclei of one cell type: BIC prefers two components (a skewed distribution), but the smaller is a
    shoulder of the larger, so it is one population. Measured: D 2.2, one mode."""
    image, _ = real_nuclei()
    found = fit_populations(stain_diameters(image, np.zeros_like(image)), "px")
    assert found.ranges == {}
    assert found.fit is not None
    assert found.fit["nuclei"] > 100
    assert all(pair["dip"] > 0.9 for pair in found.fit["neighbours"])  # a shoulder, no valley
    assert not found.fit["bimodal"]


def test_auto_reports_one_population_for_too_few_nuclei():
    assert fit_populations(np.array([5.0, 6.0, 20.0]), "um").ranges == {}


@pytest.mark.slow
@pytest.mark.skipif(not (ASSAY / "fields.csv").exists(), reason="the MCF-7 killing assay is not beside the checkout")
def test_auto_finds_targets_and_effectors_in_the_killing_assay():
    """Every eighth of the 62 MCF-7 / NK fields, pooled as one plate (stain-derived nuclei, 0.3112 µm/px): two
    populations, the large one where the hand-drawn MCF-7 nuclei are. Measured (948 nuclei): BIC chose three
    components, 2.9, 5.8 and 11.7 µm; the first two one population (specks, mostly of the low-contrast field
    F074, beside the NK nuclei: no valley between them, dip 0.99), split from the MCF-7 nuclei at 8.6 µm (D 3.3,
    dip 0.68); 91.6 % of the 381 hand-drawn MCF-7 nuclei fall in the large population."""
    with open(ASSAY / "fields.csv") as f:
        rows = list(csv.DictReader(f))[::8]
    diameters, drawn = [], []
    for row in rows:
        image = tifffile.imread(Path(ASSAY, "plate", f"{row['id']}_t000.tif"))
        hand = tifffile.imread(Path(ASSAY, "masks", f"{row['id']}.tif"))
        diameters.append(stain_diameters(image[1], image[2]) * 0.3112)
        drawn.append(
            nucleus_diameters(hand.astype(np.int64), int(hand.max()))[np.bincount(hand.ravel())[1:] > 0] * 0.3112
        )
    found = fit_populations(np.concatenate(diameters), "um")
    assert list(found.ranges) == ["small", "large"], found.fit
    mcf7 = np.concatenate(drawn)
    assert np.mean(found.assign(mcf7) == 1) >= 0.85, found.fit
