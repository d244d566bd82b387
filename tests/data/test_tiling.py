import numpy as np
import pytest

from livedead.data.tiling import class_counts, tile_image, tile_starts
from livedead.errors import LivedeadError


def test_starts_cover_every_pixel():
    assert tile_starts(2700, 160, 80).tolist()[-2:] == [2480, 2540]
    assert tile_starts(320, 160, 80).tolist() == [0, 80, 160]
    assert tile_starts(160, 160, 80).tolist() == [0]
    starts = tile_starts(1001, 160, 80)
    covered = np.zeros(1001, bool)
    for s in starts:
        covered[s : s + 160] = True
    assert covered.all()


def test_each_tile_is_the_crop_at_its_origin():
    img = np.random.default_rng(0).integers(0, 60000, (333, 250), dtype=np.uint16)
    tiles, origins = tile_image(img, 64, 32)
    assert tiles.shape == (len(origins), 64, 64)
    for tile, (y, x) in zip(tiles, origins, strict=True):
        np.testing.assert_array_equal(tile, img[y : y + 64, x : x + 64])


def test_class_counts_match_brute_force():
    labels = np.random.default_rng(1).integers(0, 3, (7, 16, 16), dtype=np.uint8)
    expected = np.stack([(labels == c).sum(axis=(1, 2)) for c in range(3)], axis=1)
    np.testing.assert_array_equal(class_counts(labels, 3), expected)
    with pytest.raises(LivedeadError, match=r"classes 0\.\.2"):
        class_counts(labels + 1, 3)


@pytest.mark.parametrize(
    ("tile", "stride", "match"), [(160, 0, "stride"), (160, -80, "stride"), (400, 80, "tile"), (0, 8, "tile")]
)
def test_bad_geometry(tile, stride, match):
    with pytest.raises(LivedeadError, match=match):
        tile_image(np.zeros((300, 300)), tile, stride)
