"""Labels from stains: segment Hoechst and Draq7 into the three training classes.

Class 0 is background, 1 DAPI (Hoechst positive, Draq7 negative: a live nucleus) and 2 Cy5
(Draq7 positive, whichever the Hoechst: a dead nucleus).

Each channel is background-corrected (a morphological opening of a downsampled copy, which
follows uneven illumination but not the nuclei), lightly smoothed, thresholded, cleaned of
small objects and hole-filled.

* The automatic threshold (Otsu by default) is computed on log intensities: stain brightness
  varies over a decade between cells, and on a linear scale a few bright (condensed, dead)
  nuclei pull Otsu above the dim live ones.
* Each detected object is then refined to the pixels above ``object_fraction`` of its own
  peak, so that dim and bright nuclei get the same, half-maximum-like boundary.
* An automatic threshold alone would invent cells in a channel that has none (Otsu splits
  pure noise in two), so the threshold is never below ``min_snr`` times the robust noise
  level of the corrected channel: a blank, constant or cell-free channel gives no objects.

On the synthetic plate this scores a pixel IoU of about 0.9 per nucleus class against the
truth (``tests/test_labels.py`` holds the floor).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage import filters, morphology

from livedead.errors import LivedeadError

THRESHOLDS = {
    "otsu": filters.threshold_otsu,
    "li": filters.threshold_li,
    "yen": filters.threshold_yen,
    "triangle": filters.threshold_triangle,
}


def correct_background(image: np.ndarray, radius: int = 24, downsample: int = 4) -> np.ndarray:
    """Subtract a smooth background estimate (grey opening larger than a nucleus), as float32.

    The estimate is made on a block-averaged copy (``downsample`` px blocks) and repeated back
    to full size: the background varies over hundreds of pixels, so this is exact to a few
    counts and costs a sixteenth of a full-size opening.
    """
    img = image.astype(np.float32)
    h, w = img.shape
    f = max(1, min(int(downsample), h, w))
    hb, wb = -(-h // f), -(-w // f)
    padded = np.pad(img, ((0, hb * f - h), (0, wb * f - w)), mode="edge")
    small = padded.reshape(hb, f, wb, f).mean(axis=(1, 3))
    size = max(3, 2 * (radius // f) + 1)
    background = ndimage.uniform_filter(ndimage.grey_opening(small, size=(size, size)), size=size)
    img -= np.repeat(np.repeat(background, f, axis=0), f, axis=1)[:h, :w]
    return img


def robust_background(image: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (MAD of the lower half) of a mostly-background image."""
    sample = image.ravel()[:: max(1, image.size // 1_000_000)]
    median = float(np.median(sample))
    low = sample[sample <= median]
    return median, (1.4826 * float(np.median(median - low)) if low.size else 0.0)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background components that do not touch the border (one labelling pass)."""
    background, _ = ndimage.label(~mask)
    outside = np.zeros(background.max() + 1, bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return mask | ~outside[background]


def segment_channel(
    image: np.ndarray,
    threshold: str = "otsu",
    log_scale: bool = True,
    object_fraction: float = 0.4,
    min_snr: float = 6.0,
    smooth_sigma: float = 1.0,
    min_size: int = 20,
    background_radius: int = 24,
) -> np.ndarray:
    """Foreground mask of one stain channel; an empty mask where no cell stands above the noise."""
    if threshold not in THRESHOLDS:
        raise LivedeadError(f"config key 'threshold': expected one of {sorted(THRESHOLDS)}, found {threshold!r}")
    if not 0.0 <= object_fraction < 1.0:
        raise LivedeadError(f"config key 'object_fraction': expected in [0, 1), found {object_fraction}")
    img = correct_background(image, radius=background_radius)
    if smooth_sigma > 0:
        img = ndimage.gaussian_filter(img, smooth_sigma)
    median, sigma = robust_background(img)
    floor = median + min_snr * sigma
    if float(img.max()) - float(img.min()) <= 1e-6 or float(img.max()) <= floor:
        return np.zeros(image.shape, bool)
    if log_scale:
        values = np.log(np.clip(img, max(sigma, 1e-3), None))
        thr = float(np.exp(THRESHOLDS[threshold](values)))
    else:
        thr = float(THRESHOLDS[threshold](img))
    mask = img > max(thr, floor)
    if object_fraction > 0:
        objects, n = ndimage.label(mask)
        ids, values = objects[mask], img[mask]
        peaks = np.zeros(n + 1, np.float32)
        np.maximum.at(peaks, ids, values)  # linear in foreground pixels; ndimage.maximum sorts the image
        mask[mask] = values > object_fraction * peaks[ids]
    mask = fill_holes(mask)
    return morphology.remove_small_objects(mask, max_size=min_size - 1) if min_size > 1 else mask


def labels_from_stains(hoechst: np.ndarray, draq7: np.ndarray, **options: Any) -> np.ndarray:
    """Class map (uint8) from the two stain channels of one image; Draq7 wins over Hoechst.

    ``options`` are :func:`segment_channel`'s (threshold, log_scale, object_fraction, min_snr,
    smooth_sigma, min_size, background_radius), applied to both channels.
    """
    if hoechst.ndim != 2 or hoechst.shape != draq7.shape:
        raise LivedeadError(
            f"stain channels: expected two 2-D images of one shape, found {hoechst.shape} and {draq7.shape}"
        )
    labels = np.zeros(hoechst.shape, np.uint8)
    labels[segment_channel(hoechst, **options)] = 1
    labels[segment_channel(draq7, **options)] = 2
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
