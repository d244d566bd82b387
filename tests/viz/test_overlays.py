"""Overlays read as the study's: grey input, true positives green, Cy5 errors red, DAPI errors blue; counted
nuclei outlined green (live) or red (dead)."""

import numpy as np
import pytest
import torch

from livedead.viz.overlays import (
    BLUE,
    GREEN,
    RED,
    grey_levels,
    nuclei_overlay,
    outlined,
    outlines,
    overlay,
    overlay_grid,
    to_grey,
)


def test_to_grey_clips_outliers_and_survives_a_flat_image():
    image = np.linspace(0, 1, 10_000).reshape(100, 100)
    image[0, 0] = 1e6  # one hot pixel must not darken the rest
    grey = to_grey(image)
    assert grey.dtype == np.float32
    assert grey.min() == 0.0
    assert grey.max() == 1.0
    assert 0.45 < grey[50, 50] < 0.55
    assert (to_grey(np.full((4, 4), 7.0)) == 0).all()


def test_each_outcome_has_its_colour():
    image = np.zeros((1, 6))
    image[0, 0] = 1.0  # the brightest pixel: white before the overlay
    label = np.array([[1, 2, 1, 0, 2, 0]])
    pred = np.array([[1, 2, 0, 1, 1, 0]])  # TP dapi, TP cy5, missed dapi, false dapi, cy5 called dapi, TN
    rgb = overlay(image, label, pred, alpha=1.0)
    assert rgb.shape == (1, 6, 3)
    np.testing.assert_allclose(rgb[0, :2], [GREEN, GREEN])
    np.testing.assert_allclose(rgb[0, 2:4], [BLUE, BLUE])
    np.testing.assert_allclose(rgb[0, 4], RED, err_msg="a Cy5 error is red, whichever class was called")
    np.testing.assert_allclose(rgb[0, 5], [0, 0, 0], err_msg="true background stays grey")
    half = overlay(image, label, pred, alpha=0.5)
    np.testing.assert_allclose(half[0, 0], 0.5 * 1.0 + 0.5 * GREEN, rtol=1e-6)


def test_the_grid_has_white_gutters_and_takes_tensors():
    labels = torch.zeros(5, 8, 10, dtype=torch.long)
    labels[:, 2:4, 2:4] = 1
    images = torch.rand(5, 8, 10)
    grid = overlay_grid(images, labels, labels.clone(), cols=3)
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * 8 + 2, 3 * 10 + 2 * 2, 3)
    assert (grid[8:10] == 255).all(), "the gutter between the rows"
    assert (grid[:8, 10:12] == 255).all(), "the gutter between the columns"
    assert (grid[10:, 24:] == 255).all(), "the sixth place stays empty"
    tile = grid[:8, :10].astype(int)
    assert (tile[2:4, 2:4, 1] > tile[2:4, 2:4, 0] + 50).all(), "true positives green"
    np.testing.assert_array_equal(overlay_grid(images.numpy(), labels.numpy(), labels.numpy(), cols=3), grid)


@pytest.mark.parametrize("dead", [False, True])
def test_counted_nuclei_are_outlined_in_their_state(dead):
    instances = np.zeros((20, 20), np.int32)
    instances[5:15, 5:15] = 1
    rgb = nuclei_overlay(np.random.default_rng(0).random((20, 20)), instances, np.array([dead]))
    assert rgb.dtype == np.uint8
    edge, inside, outside = rgb[5, 10], rgb[10, 10], rgb[0, 0]
    assert tuple(edge) == ((255, 38, 38) if dead else (25, 229, 25))
    assert inside[0] == inside[1] == inside[2], "the inside stays grey: the image shows through"
    assert outside[0] == outside[1] == outside[2]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
def test_grey_levels_of_bands_are_the_percentiles_of_the_whole(dtype):
    """Exactly numpy's percentiles: from a histogram of 8- and 16-bit bands, from all pixels that fit the sample."""
    rng = np.random.default_rng(int(np.dtype(dtype).itemsize))
    low = -300 if dtype is np.int16 else 0
    image = rng.integers(low, 250 if dtype is np.uint8 else 3000, (301, 97)).astype(dtype)
    bands = [image[y : y + 40] for y in range(0, 301, 40)]
    assert grey_levels(bands, image.size) == tuple(np.percentile(image, (1, 99)))
    assert grey_levels(reversed(bands), image.size) == tuple(np.percentile(image, (1, 99)))


def test_an_overlay_drawn_in_bands_is_the_overlay_drawn_whole():
    """Outlines of a band, given the row beyond it on each side, are the whole image's in those rows."""
    image = np.random.default_rng(0).integers(0, 4000, (90, 60)).astype(np.uint16)
    instances = np.zeros((90, 60), np.int32)
    instances[10:50, 5:30], instances[45:80, 20:50], instances[30:34, 40:44] = 1, 2, 3
    dead = np.array([False, True, False])
    whole = nuclei_overlay(image, instances, dead)
    classes = np.array([0, 1, 2, 1], np.uint8)[instances]
    levels = grey_levels([image], image.size)
    rows = []
    for y in range(0, 90, 31):
        top, bottom = max(0, y - 1), min(90, y + 32)
        edges = outlines(instances[top:bottom], classes[top:bottom])[y - top : y - top + 31]
        rows.append(outlined(image[y : y + 31], edges, levels))
    np.testing.assert_array_equal(np.concatenate(rows), whole)
    assert (whole[45, 25] == (255, 38, 38)).all()  # a dead nucleus's outline is red
