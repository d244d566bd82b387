import numpy as np
import pytest
from skimage import measure

from livedead.errors import LivedeadError
from livedead.nuclei.size import (
    NucleusScale,
    NucleusSizes,
    background_stats,
    diameter_of_mask,
    estimate_diameter,
    image_sizes,
    sizes_of_mask,
    smallest_nucleus,
)
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well
from tests.helpers import real_nuclei


@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_the_diameter_of_real_nuclei_is_measured_at_any_scale(scale):
    image, mask = real_nuclei(scale)
    hand = np.median([p.equivalent_diameter_area for p in measure.regionprops(mask)])
    estimate = estimate_diameter(image)
    assert estimate == pytest.approx(hand, rel=0.1)  # measured 11.9/11.9, 23.3/23.7, 46.9/47.3


def test_the_diameter_of_synthetic_nuclei_follows_the_magnification():
    found = {}
    for magnification in (1.0, 2.0):
        spec = PlateSpec(wells=1, timepoints=1, height=int(400 * magnification), width=int(400 * magnification),
                         seed=2, magnification=magnification)  # fmt: skip
        image, _, instances = render_image(spec, next(simulate_well(spec, 0)), 0, 0)
        truth = np.median([p.equivalent_diameter_area for p in measure.regionprops(instances.astype(np.int32))])
        found[magnification] = estimate_diameter(image[1])
        assert found[magnification] == pytest.approx(truth, rel=0.1)
    assert found[2.0] / found[1.0] == pytest.approx(2.0, rel=0.1)


def test_clumps_and_specks_do_not_set_the_scale():
    mask = np.zeros((200, 200), bool)
    yy, xx = np.mgrid[:200, :200]
    for cy, cx in [(30, 30), (30, 90), (30, 150), (90, 30), (150, 30)]:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 10**2  # five isolated nuclei, 20 px across
    mask |= ((yy - 120) ** 2 + (xx - 110) ** 2 <= 30**2) & ~((yy - 120) ** 2 + (xx - 110) ** 2 <= 15**2)  # a ring
    mask[180:182, 180:182] = True  # a speck
    assert diameter_of_mask(mask) == pytest.approx(20, abs=1.5)


def test_background_statistics_ignore_the_nuclei():
    rng = np.random.default_rng(0)
    image = rng.normal(100, 5, (400, 400))
    image[:240] += 300  # nuclei over more than half of the field
    median, sigma = background_stats(image)
    assert median == pytest.approx(100, abs=1)
    assert sigma == pytest.approx(5, rel=0.1)


def test_a_fixed_or_physical_diameter():
    assert NucleusScale().fixed() is None
    assert NucleusScale(diameter=18).fixed() == 18
    assert NucleusScale(nucleus_diameter_um=10, pixel_size_um=0.5).fixed() == 20
    assert NucleusScale(nucleus_diameter_um=10).fixed(pixel_size_um=0.65) == pytest.approx(15.38, abs=0.01)
    with pytest.raises(LivedeadError, match="'diameter': expected 'auto' or a number of pixels > 0, found 'big'"):
        NucleusScale(diameter="big").fixed()
    with pytest.raises(LivedeadError, match="'nucleus_diameter_um': expected a pixel size"):
        NucleusScale(nucleus_diameter_um=10).fixed()


def test_one_answer_for_the_diameter_of_an_image():
    image, _ = real_nuclei(1.0)
    rng = np.random.default_rng(0)
    empty = rng.normal(100, 3, image.shape).astype(np.float32)
    assert image_sizes(image, empty, fixed=17.0) == NucleusSizes(17.0, 17.0)  # the settings win
    assert image_sizes(image, empty).typical == pytest.approx(estimate_diameter(image))
    assert image_sizes(empty, image).typical == pytest.approx(
        estimate_diameter(image)
    )  # only dead nuclei: the dead stain
    assert image_sizes(empty, empty) is None


def test_two_populations_keep_two_scales():
    """Many small effector nuclei and fewer large target ones: the typical diameter is the small one's,
    the largest population's is the large one's (one number per image was the small one alone)."""
    mask = np.zeros((600, 600), bool)
    yy, xx = np.mgrid[:600, :600]
    for i in range(30):  # 30 nuclei 16 px across
        cy, cx = 30 + 45 * (i // 10), 30 + 55 * (i % 10)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 8**2
    for i in range(8):  # 8 nuclei 46 px across
        cy, cx = 220 + 120 * (i // 4), 60 + 140 * (i % 4)
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 23**2
    sizes = sizes_of_mask(mask)
    assert sizes.typical == pytest.approx(16, abs=1.5)
    assert sizes.largest == pytest.approx(46, abs=2)
    assert smallest_nucleus(sizes.typical, sizes.largest, 0.15) < np.pi * 8**2 < np.pi * 23**2, "both are nuclei"
    assert smallest_nucleus(sizes.typical, sizes.largest, 0.15) > np.pi * 2.5**2, "a 5 px micronucleus is not"
