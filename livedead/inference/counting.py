"""Count live and dead nuclei in a class map (predicted, or derived from stains: the same function).

Nuclei are instances within the foreground (DAPI or Cy5 pixels): connected components, with
touching nuclei split by a watershed of the distance transform (scikit-image), and objects
smaller than ``min_size`` pixels dropped. A nucleus whose pixels are mostly class 2 (Cy5) is
dead; otherwise it is live.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed


@dataclass
class Nuclei:
    """Instances of one image: centroids (n, 2) as (y, x), and whether each is dead."""

    centroids: np.ndarray
    dead: np.ndarray

    def counts(self) -> dict[str, float]:
        live, dead = int((~self.dead).sum()), int(self.dead.sum())
        total = live + dead
        return {"live": live, "dead": dead, "total": total, "dead_fraction": dead / total if total else 0.0}


def find_nuclei(class_map: np.ndarray, min_size: int = 20, min_distance: int = 5, split: bool = True) -> Nuclei:
    """Instances of the nuclei in a class map (0 background, 1 live, 2 dead)."""
    mask = class_map > 0
    if split:
        distance = ndimage.distance_transform_edt(mask)
        components, _ = ndimage.label(mask)
        peaks = peak_local_max(distance, min_distance=min_distance, labels=components, exclude_border=False)
        markers = np.zeros(class_map.shape, np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
        # components without a peak (tiny or flat) still get one marker
        missing = np.setdiff1d(np.unique(components[mask]), np.unique(components[tuple(peaks.T)]))
        for k, comp in enumerate(missing, len(peaks) + 1):
            ys, xs = np.nonzero(components == comp)
            markers[ys[len(ys) // 2], xs[len(xs) // 2]] = k
        instances = watershed(-distance, markers, mask=mask)
    else:
        instances, _ = ndimage.label(mask)
    return nuclei_from_instances(instances, class_map, min_size)


def nuclei_from_instances(instances: np.ndarray, class_map: np.ndarray | None, min_size: int = 1) -> Nuclei:
    """Nuclei of an instance mask (0 background, one id per nucleus) of at least ``min_size`` pixels;
    a nucleus is dead where its pixels are mostly class 2 of ``class_map``."""
    mask = instances > 0
    ids = instances[mask]
    if ids.size == 0:
        return Nuclei(np.zeros((0, 2)), np.zeros(0, bool))
    n = int(ids.max())
    sizes = np.bincount(ids, minlength=n + 1)
    ys, xs = np.nonzero(mask)
    cy = np.bincount(ids, weights=ys, minlength=n + 1) / np.maximum(sizes, 1)
    cx = np.bincount(ids, weights=xs, minlength=n + 1) / np.maximum(sizes, 1)
    dead_px = np.bincount(ids, weights=class_map[mask] == 2, minlength=n + 1) if class_map is not None else sizes * 0
    keep = np.flatnonzero(sizes >= max(min_size, 1))
    keep = keep[keep > 0]
    return Nuclei(np.stack([cy[keep], cx[keep]], axis=1), dead_px[keep] * 2 > sizes[keep])


def count_cells(
    class_map: np.ndarray, min_size: int = 20, min_distance: int = 5, split: bool = True
) -> dict[str, float]:
    """``live``, ``dead``, ``total`` and ``dead_fraction`` of the nuclei in a class map."""
    return find_nuclei(class_map, min_size, min_distance, split).counts()


def per_tile_counts(nuclei: Nuclei, shape: tuple[int, int], tile: int = 160) -> np.ndarray:
    """Live and dead nuclei whose centroid falls in each tile of a ``tile``-px grid: (tiles, 2)."""
    ny, nx = -(-shape[0] // tile), -(-shape[1] // tile)
    cell = (nuclei.centroids[:, 0] // tile).astype(int) * nx + (nuclei.centroids[:, 1] // tile).astype(int)
    live = np.bincount(cell[~nuclei.dead], minlength=ny * nx)
    dead = np.bincount(cell[nuclei.dead], minlength=ny * nx)
    return np.stack([live, dead], axis=1)
