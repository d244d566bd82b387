"""Nucleus scale: the nucleus sizes of an image, measured from the data.

Every size in stain labelling (:mod:`livedead.nuclei.labels`) and counting
(:mod:`livedead.nuclei.counting`) is a multiple of a measured diameter, so the same settings hold
for a 10 px nucleus of a 10x objective and an 80 px nucleus of a 60x one. As Cellpose does, the
sizes are estimated before segmenting: a rough segmentation (a lightly smoothed image, its
illumination's trend removed, above the noise, each basin of its peaks cut at ``OBJECT_FRACTION``
of its own peak, near half-maximum, where hand outlines lie), then the equivalent diameters of its
well-separated, convex objects (solidity >= 0.9, not touching the border), which excludes clumps
and most debris. A plate of two populations (MCF-7 targets among NK effectors; nuclei among
micronuclei) has two scales, so two numbers are kept (:class:`NucleusSizes`): the typical diameter
(the median) and the largest population's (the area-weighted median). A diameter can also be
given, in pixels, or in micrometres with the pixel size.

Measured on the stardist test image (``tests/data/stardist``; hand-drawn median 11.9, 23.7 and
47.3 px at 0.5x, 1x and 2x): typical 12.3, 23.9 and 47.0 px, largest 12.7, 25.8 and 51.8; on the
synthetic plate, typical 10.2 px at magnification 1 and 20.3 at 2. On the MCF-7 / NK killing assay
(``benchmarks/real_labels.py``), a median per field of 19.3 px typical (the NK nuclei) and 35.9 px
largest, where the hand-drawn MCF-7 nuclei measure a median of 41 px per field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import measure
from skimage.segmentation import watershed

from livedead.errors import LivedeadError

SOLIDITY = 0.9
"""Objects at least this convex count as single nuclei for the estimate."""
MIN_AREA_PX = 12
"""Objects smaller than this (under 4 px across) are below what an image resolves as a nucleus."""
OBJECT_FRACTION = 0.4
"""Where an object's boundary lies, as a fraction of its peak: near half-maximum, as hand outlines are."""
SAMPLE_CROP = 1024
MIN_SAMPLE = 30
"""Objects that make a crop's estimate: with fewer (a sparse well), the whole image is measured."""
ROUGH_SPACING = 4.0
"""Peaks closer than this (px, the smallest nucleus resolved) are one object's in the rough segmentation."""
CLIPPED_FRACTION = 0.25
"""A background clipped at the image's minimum: at least this fraction of the pixels sits there."""
MIN_OF_LARGEST = 0.25
"""Objects narrower than this fraction of the largest population's nuclei are micronuclei or debris: a
micronucleus is at most a third of its nucleus across, usually much less, while the effector nuclei of
a killing assay are about 0.35 of their targets' (measured on the MCF-7 / NK assay: 16 px against 46)."""
MAX_OBJECTS = 100
"""The estimate's sample of objects: a median over 100 is as good as over thousands, and cheaper."""
NOISE_BLOCK, NOISE_DARK = 16, 10.0
"""The blocks (px) and the percentile of their mean under which :func:`dark_blocks_sigma` takes a block."""


def nucleus_area(diameter: float) -> float:
    """The area (px) of a round nucleus of that diameter: the unit of the size limits."""
    return float(np.pi * diameter**2 / 4)


def smallest_nucleus(diameter: float, largest: float, min_area: float, min_of_largest: float = MIN_OF_LARGEST) -> int:
    """The area (px) under which an object is not a nucleus: ``min_area`` of a typical nucleus, the area
    of a disc ``min_of_largest`` as wide as the largest population's, and what an image resolves."""
    return int(max(MIN_AREA_PX, min_area * nucleus_area(diameter), nucleus_area(min_of_largest * largest)))


def background_stats(image: np.ndarray, k: float = 3.0) -> tuple[float, float]:
    """Median and standard deviation (1.4826 MAD) of the background, by iterative k-sigma clipping.

    Pixels above ``median + k * sigma`` (nuclei) are dropped until none are left, as astronomy's
    sigma-clipped statistics do, so the noise is measured on the background alone. The first
    level is the lower quartile and the first sigma comes from the pixels below it, so a field
    that nuclei cover by more than half starts from its background too. A quarter of a million
    pixels at most are sampled.

    A background clipped at the image's minimum (an 8-bit image with a black background: most
    pixels 0) shows only the upper half of its noise: its level is that minimum and its sigma
    comes from the pixels above it, as a half-normal's (the MAD there would be 0, and every speck
    of noise would stand infinitely far above it).
    """
    x = np.asarray(image, np.float32).ravel()[:: max(1, image.size // 250_000)]
    low = float(x.min()) if x.size else 0.0
    if x.size and np.mean(x == low) >= CLIPPED_FRACTION:
        return low, _half_normal_sigma(x[x > low] - low, k)
    median = float(np.percentile(x, 25))
    below = x[x <= median]
    sigma = 1.4826 * float(np.median(median - below)) if below.size else 0.0
    for _ in range(20):
        keep = x <= median + k * sigma
        if not keep.any():
            break
        x = x[keep]
        median = float(np.median(x))
        sigma = 1.4826 * float(np.median(np.abs(x - median)))
        if keep.all():
            break
    return median, sigma


def _half_normal_sigma(above: np.ndarray, k: float) -> float:
    """The sigma of noise seen above a clipped level (its upper half), clipped of nuclei like the rest."""
    sigma = 1.4826 * float(np.median(above)) if above.size else 0.0
    for _ in range(20):
        keep = above <= k * sigma
        if not keep.any() or keep.all():
            break
        above = above[keep]
        sigma = 1.4826 * float(np.median(above))
    return sigma


def noise_sigma(raw: np.ndarray, smoothed: np.ndarray, smoothing: float, background: bool = False) -> float:
    """The noise (standard deviation) of ``smoothed``, ``raw`` after a Gaussian of ``smoothing`` px.

    Measured in differences between pixels a few smoothing widths apart, where the noise is
    independent and the nuclei, smooth at that scale, add little (the MAD ignores their edges):
    the spread of intensities would count the nuclei themselves in a field they cover. With
    ``background``, the noise of the background where that is quieter (:func:`dark_blocks_sigma`).
    A background clipped at the raw image's minimum (an 8-bit black background) shows no
    differences at all: its half-normal noise, smoothed, is taken then.
    """
    lag = int(np.ceil(3 * smoothing)) + 1
    g = np.asarray(smoothed, np.float32)[:: max(1, smoothed.shape[0] // 1024), :: max(1, smoothed.shape[1] // 1024)]
    diffs = lag_differences(g, lag)
    sigma = min(mad_sigma(diffs), dark_blocks_sigma(g, diffs)) if background else mad_sigma(diffs)
    x = np.asarray(raw).ravel()[:: max(1, raw.size // 250_000)]
    if x.size and np.mean(x == x.min()) >= CLIPPED_FRACTION:
        _, raw_sigma = background_stats(raw)
        delta = np.zeros((33, 33), np.float32)
        delta[16, 16] = 1.0
        gain = float(np.sqrt((ndimage.gaussian_filter(delta, smoothing) ** 2).sum())) if smoothing > 0 else 1.0
        sigma = max(sigma, raw_sigma * gain)
    return sigma


def lag_differences(image: np.ndarray, lag: int) -> list[np.ndarray]:
    """Differences between pixels ``lag`` apart, down the columns and along the rows."""
    return [d for d in (image[lag:] - image[:-lag], image[:, lag:] - image[:, :-lag]) if d.size]


def mad_sigma(diffs: list[np.ndarray]) -> float:
    """The sigma of the noise whose differences these are (the MAD of a difference is sqrt(2) sigmas')."""
    d = np.concatenate([d.ravel() for d in diffs]) if diffs else np.zeros(1, np.float32)
    return 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2)


def dark_blocks_sigma(image: np.ndarray, diffs: list[np.ndarray]) -> float:
    """The noise sigma of an image's background: the median MAD of its differences (:func:`lag_differences`)
    in the darkest tenth (``NOISE_DARK``) of its ``NOISE_BLOCK`` px blocks; infinite where no block fits.

    Where nuclei cover a field, their edges and chromatin dominate every difference, so the whole field's
    MAD measures them (on the densest MCF-7 field, 2.9 times the dark blocks'), while its gaps hold the
    darkest blocks. In pure noise, white or correlated, a block's mean says nothing of its MAD, so the
    dark tenth's median is about the whole field's (0.90 to 1.23 of it from 8 to 46 px nuclei, measured
    on white, correlated, photon and 8-bit noise; where it is above, the whole field's is taken).
    """
    mads, means = [], []
    for d in diffs:
        if d.shape[0] >= NOISE_BLOCK and d.shape[1] >= NOISE_BLOCK:
            mads.append(np.median(blocks_of(np.abs(d), NOISE_BLOCK), axis=1))
            means.append(blocks_of(image[: d.shape[0], : d.shape[1]], NOISE_BLOCK).mean(axis=1))
    if not mads:
        return np.inf
    mad = np.concatenate(mads)
    return 1.4826 * float(np.median(mad[darkest(np.concatenate(means))])) / np.sqrt(2)


def dark_blocks_level(image: np.ndarray) -> float:
    """The background's level: the median mean of the darkest tenth (``NOISE_DARK``) of an image's ``NOISE_BLOCK``
    px blocks; infinite where no block fits.

    Where nuclei cover most of a field, the mode of its intensities, which :func:`background_stats` finds, is
    the dim nuclei's level, not the gaps': on the densest MCF-7 field it lay 2,300 counts above the gaps, over
    most dim nuclei, which were then labelled background. Its gaps hold the darkest blocks.
    """
    if min(image.shape) < NOISE_BLOCK:
        return np.inf
    means = blocks_of(image, NOISE_BLOCK).mean(axis=1)
    return float(np.median(means[darkest(means)]))


def darkest(means: np.ndarray) -> np.ndarray:
    """Which blocks, by their means, are the darkest tenth (``NOISE_DARK``): the background's, even in a dense field."""
    return means <= np.percentile(means, NOISE_DARK)


def blocks_of(image: np.ndarray, block: int) -> np.ndarray:
    """The ``block`` x ``block`` blocks of an image that fit in it, one per row."""
    h, w = image.shape[0] // block * block, image.shape[1] // block * block
    return image[:h, :w].reshape(h // block, block, w // block, block).transpose(0, 2, 1, 3).reshape(-1, block * block)


def smooth_trend(image: np.ndarray, k: float = 3.0) -> np.ndarray:
    """The illumination's trend: a quadratic surface fitted to the background, nuclei clipped away.

    A least-squares fit on at most ~10,000 pixels of a regular grid, refitted without the pixels
    more than ``k`` robust sigmas above it (the nuclei) until none are left, as
    :func:`background_stats` does for a level.
    """
    h, w = image.shape
    step = max(1, int(np.sqrt(h * w / 10_000)))

    def design(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        y, x = yy / max(h - 1, 1) - 0.5, xx / max(w - 1, 1) - 0.5
        return np.stack([np.ones_like(y), y, x, y * y, x * x, x * y], axis=-1)

    yy, xx = np.mgrid[0:h:step, 0:w:step]
    sample = design(yy.ravel().astype(np.float64), xx.ravel().astype(np.float64))
    values = image[::step, ::step].ravel().astype(np.float64)
    keep = np.ones(values.size, bool)
    coef = np.zeros(sample.shape[1])
    for _ in range(10):
        coef, *_ = np.linalg.lstsq(sample[keep], values[keep], rcond=None)
        residual = values - sample @ coef
        sigma = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        new = residual <= k * sigma
        if (new == keep).all() or new.sum() < sample.shape[1]:
            break
        keep = new
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return (design(rows, cols) @ coef).astype(np.float32)


def rough_foreground(image: np.ndarray, min_snr: float = 6.0, object_fraction: float = OBJECT_FRACTION) -> np.ndarray:
    """A first, scale-free segmentation: a lightly smoothed image, its illumination's trend removed, above
    the noise; each basin of its peaks cut at ``object_fraction`` of its own peak."""
    img = ndimage.gaussian_filter(np.asarray(image, np.float32), 1.0)
    img -= smooth_trend(img)  # uneven illumination, which would stand above the noise
    median, _ = background_stats(img)
    sigma = noise_sigma(image, img, 1.0)
    floor = median + min_snr * sigma
    if float(img.max()) <= floor:
        return np.zeros(img.shape, bool)
    above = img - median
    return cut_at_peak_fraction(above, above > floor - median, object_fraction, ROUGH_SPACING, floor - median)


def cut_at_peak_fraction(
    image: np.ndarray,
    mask: np.ndarray,
    fraction: float,
    spacing: float | None = None,
    min_peak: float = -np.inf,
) -> np.ndarray:
    """Keep the pixels of each object of ``mask`` above ``fraction`` of the object's own peak (``image``
    above background): dim and bright nuclei then get the same, half-maximum-like boundary.

    With ``spacing`` (px), an object is each basin of the image's local maxima at least that far
    apart, not each connected component: a dim nucleus that touches a bright one (a large target
    cell's nucleus beside a small effector's) is cut at its own peak, not dropped below the bright one's;
    a basin whose peak is not above ``min_peak`` (the noise floor) is dropped.
    """
    if fraction <= 0:
        return mask
    if spacing is None:
        objects, n = ndimage.label(mask)
    else:
        size = max(3, int(spacing) | 1)
        tops = mask & (image >= ndimage.maximum_filter(image, size=size))
        markers, n = ndimage.label(tops, structure=np.ones((3, 3), bool))
        objects = watershed(-image, markers, mask=mask)
    ids, values = objects[mask], image[mask]
    peaks = np.zeros(n + 1, np.float32)
    np.maximum.at(peaks, ids, values)  # linear in foreground pixels; ndimage.maximum sorts the image
    out = np.zeros_like(mask)
    out[mask] = (values > fraction * peaks[ids]) & (peaks[ids] > min_peak)
    return out


@dataclass(frozen=True)
class NucleusSizes:
    """The nucleus sizes of an image (px): a plate of two populations (large target cells among small
    effectors, nuclei among micronuclei) has two scales, and each step of labelling takes its own."""

    typical: float
    """The median diameter of single nuclei: what most nuclei measure."""
    largest: float
    """The area-weighted median diameter: the population that carries most of the nucleus area
    (the same as ``typical`` where there is one population)."""


def sizes_of_mask(mask: np.ndarray, seed: int = 0, min_objects: int = 1) -> NucleusSizes | None:
    """The typical and largest diameters of the well-separated, convex objects of a mask; None if it has
    fewer than ``min_objects`` of them."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    usable = areas >= MIN_AREA_PX
    usable[0] = False
    usable[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    ids = np.flatnonzero(usable)
    if len(ids) > MAX_OBJECTS:
        ids = np.sort(np.random.default_rng(seed).choice(ids, MAX_OBJECTS, replace=False))
    if not len(ids):
        return None
    keep = np.zeros(n + 1, bool)
    keep[ids] = True
    sample = np.where(keep[labels], labels, 0)  # regionprops measures only the sampled objects
    diameters = np.sort([p.equivalent_diameter_area for p in measure.regionprops(sample) if p.solidity >= SOLIDITY])
    if len(diameters) < max(min_objects, 1):
        return None
    weight = np.cumsum(diameters**2)
    largest = float(diameters[np.searchsorted(weight, weight[-1] / 2)])
    return NucleusSizes(float(np.median(diameters)), largest)


def diameter_of_mask(mask: np.ndarray, seed: int = 0, min_objects: int = 1) -> float | None:
    """Median equivalent diameter of the well-separated, convex objects of a mask; None if it has fewer
    than ``min_objects`` of them."""
    sizes = sizes_of_mask(mask, seed, min_objects)
    return None if sizes is None else sizes.typical


def estimate_sizes(image: np.ndarray, crop: int = SAMPLE_CROP) -> NucleusSizes | None:
    """The nucleus sizes (px) of a fluorescence image of nuclei; None if it shows none.

    Measured in the central ``crop`` x ``crop`` px (a ninth of a 2700x3600 well, so the estimate
    costs a small part of labelling the image) when that holds enough objects, else in the whole image.
    """
    h, w = image.shape
    if h > crop or w > crop:
        y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        found = sizes_of_mask(rough_foreground(image[y : y + crop, x : x + crop]), min_objects=MIN_SAMPLE)
        if found is not None:
            return found
    return sizes_of_mask(rough_foreground(image))


def estimate_diameter(image: np.ndarray, crop: int = SAMPLE_CROP) -> float | None:
    """The typical nucleus diameter (px) of a fluorescence image of nuclei; None if it shows none."""
    sizes = estimate_sizes(image, crop)
    return None if sizes is None else sizes.typical


def image_sizes(hoechst: np.ndarray, draq7: np.ndarray, fixed: float | None = None) -> NucleusSizes | None:
    """The nucleus sizes (px) to label one image with: ``fixed`` when the settings give one diameter,
    else measured in the Hoechst channel (every nucleus) of its :func:`data_region`, else in the dead
    stain; None if neither shows a nucleus. The one answer used by labelling, preparation and prediction."""
    if fixed:
        return NucleusSizes(float(fixed), float(fixed))
    region = data_region(hoechst, draq7)
    if not hoechst[region].size:  # no data at all
        return None
    return estimate_sizes(hoechst[region]) or estimate_sizes(draq7[region])


def data_region(*channels: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of an image that hold data: all but the border rows and columns that are zero
    in every channel, the padding of a registered or drift-corrected field (21 of the 62 MCF-7 fields have
    1-33 of them). That padding is no background: beside it, the real background would stand out as
    foreground along the whole border, in every channel. Noise leaves no whole row of zeros (where a black
    background without noise does, there is nothing to label in it)."""
    blank = np.logical_and.reduce([np.asarray(c) == 0 for c in channels])
    rows, cols = np.flatnonzero(~blank.all(axis=1)), np.flatnonzero(~blank.all(axis=0))
    if not rows.size:
        return slice(0, 0), slice(0, 0)
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


@dataclass
class NucleusScale:
    """How the nucleus diameter is set (config keys ``diameter``, ``pixel_size_um``, ``nucleus_diameter_um``).

    ``diameter: auto`` measures it in each image; a number is the diameter in pixels; with
    ``nucleus_diameter_um`` and a pixel size (given here, or read from the plate's metadata) it
    is ``nucleus_diameter_um / pixel_size_um``.
    """

    diameter: str | float = "auto"
    pixel_size_um: float | None = None
    nucleus_diameter_um: float | None = None

    def fixed(self, pixel_size_um: float | None = None) -> float | None:
        """The diameter in pixels if the settings fix it, else None (measure it)."""
        if self.nucleus_diameter_um is not None:
            size = self.pixel_size_um or pixel_size_um
            if not size or size <= 0:
                raise LivedeadError(
                    "config key 'nucleus_diameter_um': expected a pixel size ('pixel_size_um' or the plate's), "
                    f"found {size}"
                )
            return float(self.nucleus_diameter_um) / float(size)
        if self.diameter == "auto":
            return None
        try:
            value = float(self.diameter)
        except (TypeError, ValueError):
            value = -1.0
        if not value > 0:
            raise LivedeadError(
                f"config key 'diameter': expected 'auto' or a number of pixels > 0, found {self.diameter!r}"
            )
        return value
