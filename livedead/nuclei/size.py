"""Nucleus scale: the typical nucleus diameter of an image, measured from the data.

Every size in stain labelling (:mod:`livedead.nuclei.labels`) and counting
(:mod:`livedead.nuclei.counting`) is a multiple of this diameter, so the same settings hold
for a 10 px nucleus of a 10x objective and an 80 px nucleus of a 60x one. As Cellpose does, the
diameter is estimated before segmenting: a rough segmentation (Otsu on log intensities above the
noise), then the median equivalent diameter of its well-separated, convex objects (solidity
>= 0.9, not touching the border), which excludes clumps and most debris. It can also be given,
in pixels, or in micrometres with the pixel size.

Each rough object is cut at ``OBJECT_FRACTION`` of its own peak, near half-maximum, where hand
outlines lie: on the stardist test image (``tests/data/stardist``) the estimate is 23.3 px where
the hand-drawn nuclei have a median equivalent diameter of 23.7 px (11.9 and 11.9 at 0.5x, 46.9
and 47.3 at 2x), and on the synthetic plate 10.1 px at magnification 1 and 20.3 px at 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import filters, measure

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
MAX_OBJECTS = 100
"""The estimate's sample of objects: a median over 100 is as good as over thousands, and cheaper."""


def background_stats(image: np.ndarray, k: float = 3.0) -> tuple[float, float]:
    """Median and standard deviation (1.4826 MAD) of the background, by iterative k-sigma clipping.

    Pixels above ``median + k * sigma`` (nuclei) are dropped until none are left, as astronomy's
    sigma-clipped statistics do, so the noise is measured on the background alone. The first
    level is the lower quartile and the first sigma comes from the pixels below it, so a field
    that nuclei cover by more than half starts from its background too. A quarter of a million
    pixels at most are sampled.
    """
    x = np.asarray(image, np.float32).ravel()[:: max(1, image.size // 250_000)]
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


def rough_foreground(image: np.ndarray, min_snr: float = 6.0, object_fraction: float = OBJECT_FRACTION) -> np.ndarray:
    """A first, scale-free segmentation: Otsu on log intensities of a lightly smoothed image, above the
    noise, each object cut at ``object_fraction`` of its own peak."""
    img = ndimage.gaussian_filter(np.asarray(image, np.float32), 1.0)
    median, sigma = background_stats(img)
    floor = median + min_snr * sigma
    if float(img.max()) <= floor:
        return np.zeros(img.shape, bool)
    above = img - median
    values = np.log(np.clip(above, max(sigma, 1e-3), None))
    return cut_at_peak_fraction(above, above > max(float(np.exp(filters.threshold_otsu(values))), floor - median),
                                object_fraction)  # fmt: skip


def cut_at_peak_fraction(image: np.ndarray, mask: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the pixels of each object of ``mask`` above ``fraction`` of the object's own peak (``image``
    above background): dim and bright nuclei then get the same, half-maximum-like boundary."""
    if fraction <= 0:
        return mask
    objects, n = ndimage.label(mask)
    ids, values = objects[mask], image[mask]
    peaks = np.zeros(n + 1, np.float32)
    np.maximum.at(peaks, ids, values)  # linear in foreground pixels; ndimage.maximum sorts the image
    out = np.zeros_like(mask)
    out[mask] = values > fraction * peaks[ids]
    return out


def diameter_of_mask(mask: np.ndarray, seed: int = 0, min_objects: int = 1) -> float | None:
    """Median equivalent diameter of the well-separated, convex objects of a mask; None if it has fewer
    than ``min_objects`` of them."""
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
    diameters = [p.equivalent_diameter_area for p in measure.regionprops(sample) if p.solidity >= SOLIDITY]
    return float(np.median(diameters)) if len(diameters) >= max(min_objects, 1) else None


def estimate_diameter(image: np.ndarray, crop: int = SAMPLE_CROP) -> float | None:
    """The typical nucleus diameter (px) of a fluorescence image of nuclei; None if it shows none.

    Measured in the central ``crop`` x ``crop`` px (a ninth of a 2700x3600 well, so the estimate
    costs a small part of labelling the image) when that holds enough objects, else in the whole image.
    """
    h, w = image.shape
    if h > crop or w > crop:
        y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
        found = diameter_of_mask(rough_foreground(image[y : y + crop, x : x + crop]), min_objects=MIN_SAMPLE)
        if found is not None:
            return found
    return diameter_of_mask(rough_foreground(image))


def image_diameter(hoechst: np.ndarray, draq7: np.ndarray, fixed: float | None = None) -> float | None:
    """The nucleus diameter (px) to label one image with: ``fixed`` when the settings give one, else
    measured in the Hoechst channel (every nucleus), else in the dead stain; None if neither shows a
    nucleus. The one answer used by labelling, preparation and prediction."""
    return fixed or estimate_diameter(hoechst) or estimate_diameter(draq7)


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
