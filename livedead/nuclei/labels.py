"""Labels from stains: segment Hoechst and Draq7 into the three training classes.

Class 0 is background, 1 DAPI (Hoechst positive, Draq7 negative: a live nucleus) and 2 Cy5
(Draq7 positive, whichever the Hoechst: a dead nucleus).

A registered field's zero padding (border rows and columns of zeros in both stains) is background and
is left out of every step (:func:`~livedead.nuclei.size.data_region`). Every size is a multiple of a
nucleus diameter measured in the Hoechst channel unless given
(:class:`~livedead.nuclei.size.NucleusSizes`): lengths that must not cut a large nucleus in the
largest population's, lengths that must keep a small one in the typical nucleus's, so a plate of
large targets among small effectors is labelled at both scales. Each channel is:

1. background-corrected: the illumination's trend (a quadratic fitted to the background), then a
   grey opening of radius ``background`` x the largest diameter on a block-averaged copy, which
   follows uneven illumination but not the nuclei;
2. smoothed (Gaussian, ``smooth`` x the typical diameter);
3. thresholded locally: a pixel is foreground where it is above the Gaussian-weighted mean of
   its neighbourhood (``local`` x the largest diameter across, scikit-image's ``threshold_local``)
   and above the automatic global threshold (Otsu on log intensities by default) or the noise
   floor, so that touching nuclei keep the darker seam between them, which counting splits them at;
4. cut in basins: each basin of the peaks half a typical nucleus apart is kept above
   ``object_fraction`` of its own peak, near half-maximum, if that peak stands ``min_snr`` noise
   sigmas above the background, so dim and bright nuclei get the same kind of boundary and a dim
   nucleus is not lost below a bright neighbour's; the noise is measured in differences between
   pixels of the background's darkest blocks (:func:`~livedead.nuclei.size.noise_sigma`), not in
   the spread of intensities, which counts the nuclei of a dense field, nor in the whole field's
   differences, which count their edges and chromatin; the background's level is also taken from those
   blocks where a dense field's mode, its dim nuclei's, is higher; and a blank, constant, cell-free or clipped
   (8-bit black) channel yields no objects;
5. kept only where an object's mean stands ``min_snr`` sigmas out of the noise over its
   independent samples, which no speck of noise does;
6. cleaned: holes under ``max_hole`` of a largest nucleus's area are filled, and objects under
   ``min_area`` of a typical one's, or narrower than ``min_of_largest`` of the largest diameter, are
   dropped, so micronuclei and debris are not labelled nuclei.

``tests/nuclei/test_labels.py`` holds the floors measured on the synthetic plate (pixel IoU 0.95 for
DAPI and Cy5), on real nuclei (foreground IoU on the stardist image at 0.5x, 1x, 2x), on nuclei
among micronuclei, and on empty channels of every kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage import filters, morphology

from livedead.errors import LivedeadError
from livedead.nuclei.size import (
    MIN_OF_LARGEST,
    OBJECT_FRACTION,
    NucleusSizes,
    background_stats,
    cut_at_peak_fraction,
    dark_blocks_level,
    data_region,
    image_sizes,
    noise_sigma,
    nucleus_area,
    smallest_nucleus,
    smooth_trend,
)

THRESHOLDS = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "yen": filters.threshold_yen,
    "triangle": filters.threshold_triangle,
}


def correct_background(image: np.ndarray, radius: float, downsample: int | None = None) -> np.ndarray:
    """Subtract a smooth background estimate (grey opening of ``radius`` px), as float32.

    The estimate is made on a block-averaged copy (``downsample`` px blocks, by default a fifth
    of the radius) and repeated back to full size: the background varies over hundreds of
    pixels, so this is exact to a few counts and costs a small fraction of a full-size opening,
    whatever the radius.
    """
    img = image.astype(np.float32)
    h, w = img.shape
    f = max(1, min(int(downsample or radius / 5), h, w))
    hb, wb = -(-h // f), -(-w // f)
    padded = np.pad(img, ((0, hb * f - h), (0, wb * f - w)), mode="edge")
    small = padded.reshape(hb, f, wb, f).mean(axis=(1, 3))
    size = max(3, 2 * int(radius // f) + 1)
    # An opening cannot follow a gradient within its reach of the border (it levels it off there), so
    # the illumination's smooth trend is removed first: a quadratic fitted to the background
    trend = smooth_trend(small)
    opened = ndimage.grey_opening(small - trend, size=(size, size), mode="nearest")
    background = trend + ndimage.uniform_filter(opened, size=size, mode="nearest")
    img -= np.repeat(np.repeat(background, f, axis=0), f, axis=1)[:h, :w]
    return img


def segment_channel(
    image: np.ndarray,
    diameter: float,
    threshold: str = "otsu",
    min_snr: float = 6.0,
    background: float = 2.0,
    smooth: float = 0.08,
    local: float = 1.0,
    min_area: float = 0.15,
    max_hole: float = 0.5,
    object_fraction: float = OBJECT_FRACTION,
    min_of_largest: float = MIN_OF_LARGEST,
    largest: float | None = None,
) -> np.ndarray:
    """Foreground mask of one stain channel; an empty mask where no nucleus stands above the noise.

    ``diameter`` is the typical nucleus diameter in pixels and ``largest`` that of the population
    that carries most nucleus area (:class:`~livedead.nuclei.size.NucleusSizes`; None: the same).
    Lengths that must not cut a large nucleus (``background``, ``local``, ``max_hole``) are in
    largest diameters, those that must keep a small one (``smooth``, ``min_area``, the spacing of
    peaks) in typical ones; an object under ``min_of_largest`` of the largest diameter (a
    micronucleus, debris) is never a nucleus. ``min_area`` and ``max_hole`` are areas in nuclei.
    """
    if threshold not in THRESHOLDS:
        raise LivedeadError(f"config key 'threshold': expected one of {sorted(THRESHOLDS)}, found {threshold!r}")
    if not diameter > 0:
        raise LivedeadError(f"nucleus diameter: expected > 0 px, found {diameter}")
    largest = max(diameter, largest or diameter)
    img = correct_background(image, radius=background * largest)
    sigma_px = max(0.5, smooth * diameter) if smooth > 0 else 0.0
    if sigma_px:
        img = ndimage.gaussian_filter(img, sigma_px)
    median = min(background_stats(img)[0], dark_blocks_level(img))  # a dense field's mode is its dim nuclei's
    sigma = noise_sigma(image, img, sigma_px, background=True)
    floor = median + min_snr * sigma
    if float(img.max()) - float(img.min()) <= 1e-6 or float(img.max()) <= floor:
        return np.zeros(image.shape, bool)
    low = float(np.exp(THRESHOLDS[threshold](np.log(np.clip(img, max(sigma, 1e-3), None)))))
    block = max(3, int(local * largest) | 1)
    candidates = img > min(low, floor)
    if local > 0:
        candidates &= img > filters.threshold_local(img, block, method="gaussian")
    mask = cut_at_peak_fraction(img - median, candidates, object_fraction, 0.5 * diameter, floor - median)
    mask = significant_objects(mask, img - median, sigma, sigma_px, min_snr)
    mask = morphology.remove_small_holes(mask, max_size=max(1, int(max_hole * nucleus_area(largest))))
    smallest = smallest_nucleus(diameter, largest, min_area, min_of_largest)
    return morphology.remove_small_objects(mask, max_size=smallest - 1)


def significant_objects(
    mask: np.ndarray, above: np.ndarray, sigma: float, smoothing: float, min_snr: float
) -> np.ndarray:
    """The objects of ``mask`` whose mean stands ``min_snr`` noise sigmas out of the background, its noise
    averaged over the object's independent samples (its area over the smoothing's): a nucleus has many,
    a speck of noise that peaked above the floor has one or two, and photon noise's heavy tail makes such
    specks in every large empty field."""
    objects, n = ndimage.label(mask)
    if n == 0 or sigma <= 0:
        return mask
    area = np.bincount(objects.ravel(), minlength=n + 1).astype(np.float64)
    total = np.bincount(objects.ravel(), weights=above.ravel(), minlength=n + 1)
    samples = np.maximum(area / max(1.0, 4 * np.pi * smoothing**2), 1.0)
    snr = total / np.maximum(area, 1) / sigma * np.sqrt(samples)
    keep = snr > min_snr
    keep[0] = False
    return keep[objects]


def labels_from_stains(
    hoechst: np.ndarray,
    draq7: np.ndarray,
    diameter: float | None = None,
    sizes: NucleusSizes | None = None,
    **options: Any,
) -> np.ndarray:
    """Class map (uint8) from the two stain channels of one image; Draq7 wins over Hoechst.

    The nucleus sizes are ``sizes`` when the caller has measured them, else measured in the Hoechst
    channel (every nucleus) unless ``diameter`` (px) fixes them, or in the Draq7 channel if Hoechst
    shows none (:func:`~livedead.nuclei.size.image_sizes`). ``options`` are :func:`segment_channel`'s
    (threshold, min_snr, background, smooth, local, min_area, max_hole, ...), applied to both channels.
    """
    if hoechst.ndim != 2 or hoechst.shape != draq7.shape:
        raise LivedeadError(
            f"stain channels: expected two 2-D images of one shape, found {hoechst.shape} and {draq7.shape}"
        )
    labels = np.zeros(hoechst.shape, np.uint8)
    sizes = sizes or image_sizes(hoechst, draq7, diameter)
    if sizes is None:  # neither channel shows a nucleus
        return labels
    region = data_region(hoechst, draq7)  # a registered field's zero padding is background
    inside = labels[region]
    inside[segment_channel(hoechst[region], sizes.typical, largest=sizes.largest, **options)] = 1
    inside[segment_channel(draq7[region], sizes.typical, largest=sizes.largest, **options)] = 2
    return labels


def class_iou(pred: np.ndarray, truth: np.ndarray, num_classes: int = 3) -> np.ndarray:
    """Pixel IoU per class; NaN for a class absent from both maps."""
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        p, t = pred == c, truth == c
        union = np.logical_or(p, t).sum()
        if union:
            out[c] = np.logical_and(p, t).sum() / union
    return out
