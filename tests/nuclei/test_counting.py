import h5py
import numpy as np
import pytest
from scipy import ndimage
from skimage import morphology

from livedead.nuclei.counting import (
    BandCounter,
    class_map_of,
    count_cells,
    find_nuclei,
    match_nuclei,
    nuclei_from_class_map,
    nuclei_from_probabilities,
    per_tile_counts,
    reconstruct_pieces,
    truth_coverage,
)
from livedead.nuclei.labels import labels_from_stains
from livedead.plates.synthetic import PlateSpec, generate_plate, render_image, simulate_well
from tests.helpers import real_nuclei


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
    disk(m, 180, 250, 1, 2)  # debris below the smallest nucleus
    counts = count_cells(m)
    assert counts == {"live": 10, "dead": 4, "total": 14, "dead_fraction": pytest.approx(4 / 14)}
    assert count_cells(m, split=False)["total"] == 11, "without the watershed, touching nuclei merge"
    nuclei = nuclei_from_class_map(m)
    assert nuclei.diameter == pytest.approx(14, abs=1.5)  # the isolated nuclei's
    assert nuclei.instances.max() == 14
    assert len(np.unique(nuclei.instances)) == 15
    tiles = per_tile_counts(nuclei, m.shape, tile=160)
    assert tiles.shape == (4, 2)  # a 2x2 grid of 160-px tiles
    assert tiles.sum(0).tolist() == [10, 4]


def ellipse(shape, cy, cx, a, b, angle=0.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    c, s = np.cos(angle), np.sin(angle)
    u, v = ((xx - cx) * c + (yy - cy) * s) / a, (-(xx - cx) * s + (yy - cy) * c) / b
    return u * u + v * v <= 1


@pytest.mark.parametrize("diameter", [10.0, 20.0, 40.0])
def test_only_what_is_two_nuclei_is_split(diameter):
    """One elongated, one lobed (kidney) and one irregular nucleus stay whole; two touching ones are split."""
    k = diameter / 20
    shape = (int(120 * k), int(400 * k))
    r = diameter / 2
    elongated = ellipse(shape, 60 * k, 50 * k, 2.2 * r, 0.8 * r, 0.3)
    kidney = ellipse(shape, 60 * k, 150 * k, 1.4 * r, 1.1 * r) & ~ellipse(
        shape, 60 * k + 1.2 * r, 150 * k, 0.6 * r, 0.5 * r
    )
    rng = np.random.default_rng(int(diameter))
    irregular = ellipse(shape, 60 * k, 240 * k, 1.2 * r, r)
    for _ in range(6):  # bumps on its rim
        t = rng.uniform(0, 2 * np.pi)
        irregular |= ellipse(shape, 60 * k + r * np.sin(t), 240 * k + 1.2 * r * np.cos(t), 0.35 * r, 0.35 * r)
    pair = ellipse(shape, 60 * k, 320 * k, r, 0.8 * r) | ellipse(shape, 60 * k, 320 * k + 1.8 * r, r, 0.8 * r)
    for name, mask, expected in (("elongated", elongated, 1), ("kidney", kidney, 1), ("irregular", irregular, 1),
                                 ("pair", pair, 2)):  # fmt: skip
        found = find_nuclei(mask, diameter=diameter)
        assert len(found.centroids) == expected, name


@pytest.mark.slow
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_stain_labelling_and_counting_find_real_nuclei(scale):
    """Real nuclei outlined by hand (stardist's img2d.tif, 125 nuclei), default settings, at three scales:
    the count within 5 %, detection F1 >= 0.90, and no dead nucleus from a noise-only Draq7 channel."""
    hoechst, truth = real_nuclei(scale)
    draq7 = np.random.default_rng(1).normal(100, 6, hoechst.shape).astype(np.uint16)
    nuclei = nuclei_from_class_map(labels_from_stains(hoechst, draq7))
    scores = match_nuclei(nuclei, truth)
    assert scores["true"] == 125
    assert 119 <= scores["found"] <= 131, scores  # measured 122, 123, 123
    assert scores["f1"] >= 0.90, scores  # measured 0.955, 0.968, 0.960
    assert not nuclei.dead.any()


@pytest.mark.slow
@pytest.mark.parametrize("magnification", [1.0, 2.0])
def test_synthetic_counts_at_two_magnifications(tmp_path, magnification):
    """The synthetic plate at twice the nucleus size: per-image counts within 2 % of the truth, default settings."""
    size = int(320 * magnification)
    spec = PlateSpec(wells=2, timepoints=2, height=size, width=size, seed=4, magnification=magnification)
    plate = generate_plate(tmp_path / "p.h5", spec, progress=False)
    with h5py.File(plate) as f:
        for w in range(2):
            for t in range(2):
                image = f["images"][w, t]
                found = nuclei_from_class_map(labels_from_stains(image[1], image[2])).counts()
                live, dead = int(f["truth/live_count"][w, t]), int(f["truth/dead_count"][w, t])
                assert abs(found["total"] - (live + dead)) <= 0.02 * (live + dead), (w, t, found, live, dead)
                assert abs(found["dead"] - dead) <= max(1, 0.02 * dead), (w, t, found, dead)


def test_counting_from_probabilities_uses_the_threshold_and_the_mean_class():
    probs = np.zeros((3, 80, 80), np.float32)
    probs[0] = 1.0
    yy, xx = np.mgrid[:80, :80]
    live = (yy - 20) ** 2 + (xx - 20) ** 2 <= 64
    dead = (yy - 55) ** 2 + (xx - 55) ** 2 <= 64
    faint = (yy - 20) ** 2 + (xx - 60) ** 2 <= 64
    probs[:, live] = np.array([0.1, 0.6, 0.3])[:, None]
    probs[:, dead] = np.array([0.2, 0.35, 0.45])[:, None]  # mostly Cy5 among the nucleus classes
    probs[:, faint] = np.array([0.7, 0.2, 0.1])[:, None]  # P(nucleus) 0.3: below a 0.5 threshold
    found = nuclei_from_probabilities(probs, threshold=0.5)
    assert found.counts() == {"live": 1, "dead": 1, "total": 2, "dead_fraction": 0.5}
    assert nuclei_from_probabilities(probs, threshold=0.25).counts()["total"] == 3


def test_truth_coverage_counts_found_and_split_true_nuclei():
    truth = np.zeros((60, 60), np.int32)
    truth[5:20, 5:20], truth[30:50, 30:50], truth[5:15, 40:55] = 1, 2, 3
    found = find_nuclei(np.zeros((60, 60), bool))
    found.centroids = np.array([[10.0, 10.0], [35.0, 35.0], [45.0, 45.0], [58.0, 2.0]])  # 1 once, 2 twice, 3 never
    assert truth_coverage(found, truth) == {"true": 3, "found": 2, "split": 1}


def count_bands(counter, foreground, dead_map, rows):
    """Feed a counter bands of ``rows`` rows; return the label and class rows it handed out, put together."""
    parts = []
    for y in range(0, foreground.shape[0], rows):
        parts += counter.add(y, foreground[y : y + rows], dead_map[y : y + rows])
    parts += counter.finish()
    assert [p[0] for p in parts] == list(np.cumsum([0] + [len(p[1]) for p in parts[:-1]])), "rows in order, once"
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


@pytest.mark.parametrize("rows", [400, 61, 25])
def test_counting_in_bands_counts_each_nucleus_once_as_the_whole_image_does(rows):
    """Nuclei cut by a band's border are counted once, by the band that holds their centroid, and found as in
    the whole image: the same counts, centroids, class map and instances (numbered otherwise)."""
    spec = PlateSpec(wells=1, timepoints=1, height=400, width=360, seed=5, density=1500)
    _, labels, _ = render_image(spec, next(simulate_well(spec, 0)), 0, 0)
    foreground, dead_map = labels > 0, (labels == 2).astype(np.float32)
    whole = find_nuclei(foreground, dead_map=dead_map)
    borders = range(rows, 400, rows)
    assert any(np.intersect1d(whole.instances[b - 1], whole.instances[b]).size > 1 for b in borders) or rows == 400
    counter = BandCounter(foreground.shape)
    instances, classes = count_bands(counter, foreground, dead_map, rows)
    found = counter.nuclei()
    assert found.counts() == whole.counts()
    assert found.diameter == whole.diameter  # measured in the same rows: all of them
    np.testing.assert_allclose(np.sort(found.centroids, 0), np.sort(whole.centroids, 0), atol=1e-9)
    np.testing.assert_array_equal(classes, class_map_of(whole))
    pairs = np.unique(np.stack([instances.ravel(), whole.instances.ravel()]), axis=1)
    assert pairs.shape[1] == len(whole.dead) + 1, "one band label for each whole-image nucleus"
    assert counter.cut == 0
    if rows == 400:
        np.testing.assert_array_equal(instances, whole.instances)


def test_touching_nuclei_across_bands_are_counted_whole_and_a_sheet_too_tall_is_flagged():
    """A column of touching nuclei over several bands is counted whole, as in the whole image; one that reaches
    over ``MAX_REACH`` bands is counted as far as that, and its nuclei named in ``cut``."""
    m = np.zeros((400, 120), np.uint8)
    for i in range(12):
        disk(m, 20 + 28 * i, 60, 15, 1)  # a column of 12 touching nuclei, 28 px apart, over 340 rows
    for i in range(4):
        disk(m, 40 + 60 * i, 15, 8, 1)  # and four apart
    whole = count_cells(m, diameter=16.0)["total"]
    for rows, cut in ((100, False), (50, False), (20, True)):  # the column spans 3.4, 6.9 and 17 bands
        counter = BandCounter(m.shape, diameter=16.0)
        count_bands(counter, m > 0, np.zeros(m.shape, np.float32), rows)
        total = counter.nuclei().counts()["total"]
        assert (counter.cut > 0) == cut, rows
        assert total == whole if not cut else 4 < total < whole, (rows, total, whole)


@pytest.mark.parametrize("mask", ["real", "speckled", "sheet"])
def test_pieces_packed_are_reconstructed_as_skimage_reconstructs_the_image(mask, monkeypatch):
    """The h-maxima reconstruction of the pieces packed on shelves is skimage's of the whole image, value for
    value: on real nuclei (stardist's hand-outlined mask), specks of noise (pieces of one pixel, on shelves of
    many slabs) and a confluent sheet wider than a shelf."""
    _, truth = real_nuclei()
    masks = {
        "real": truth > 0,
        "speckled": np.random.default_rng(0).random((60, 500)) < 0.2,
        "sheet": ndimage.binary_dilation(truth > 0, iterations=6),
    }
    monkeypatch.setattr("livedead.nuclei.counting.PACK_WIDTH", 64)  # narrow shelves
    monkeypatch.setattr("livedead.nuclei.counting.PACK_PX", 4096)  # slabs of a few shelves: many of them
    m = masks[mask]
    dist = ndimage.distance_transform_edt(m)
    components, n = ndimage.label(m, structure=np.ones((3, 3)))
    seed = np.maximum(dist - np.random.default_rng(1).uniform(0.5, 3, m.shape), 0)
    expected = morphology.reconstruction(seed, dist)
    np.testing.assert_array_equal(reconstruct_pieces(seed, dist, components, n), expected)
    assert n > 50
    widest = max(box[1].stop - box[1].start for box in ndimage.find_objects(components))
    assert (widest > 64) == (mask == "sheet")
