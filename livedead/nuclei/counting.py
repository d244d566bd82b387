"""Count live and dead nuclei: instances in a foreground mask, split only where two nuclei touch.

One function, :func:`find_nuclei`, serves a predicted map and a map derived from stains. Its
sizes are multiples of the typical nucleus diameter ``D`` (:mod:`livedead.nuclei.size`), measured
in the foreground mask itself unless given:

* touching nuclei are split by a marker-controlled watershed of the distance transform, whose
  markers are the h-maxima of that transform with a depth of ``split_depth`` x the component's own
  widest nucleus (so a large nucleus is not cut at a small one's scale): two nuclei
  meet at a neck, a dip of the distance map, while one elongated, lobed or irregular nucleus has
  no dip that deep (the stain labelling keeps the darker seam between touching nuclei, so their
  masks have that neck);
* pieces under ``min_area`` of a typical nucleus's area, or narrower than ``min_of_largest`` of the
  largest population's diameter (debris, micronuclei), are dropped;
* a nucleus is dead where the mean of ``dead_map`` over its pixels exceeds one half: the
  fraction of Cy5 pixels of a class map, or P(Cy5) / P(nucleus) of the network.

On the stardist test image (125 hand-outlined nuclei) the stain labelling and this counting find
121 to 123 nuclei at 0.5x, 1x and 2x, with a detection F1 of 0.96 to 0.97 (``tests/nuclei``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import morphology
from skimage.segmentation import watershed

from livedead.errors import LivedeadError
from livedead.nuclei.size import MIN_OF_LARGEST, NucleusSizes, sizes_of_mask, smallest_nucleus

EIGHT = np.ones((3, 3), bool)
MAX_REACH = 8
"""How many bands below its own a band of rows looks for the end of a piece of foreground (:class:`BandCounter`)."""
SIZES_SAMPLE_PX = 16_000_000
"""The nucleus sizes of an image counted in bands are measured in its first rows of this many pixels (a
2700x3600 well whole: over a thousand nuclei, of which :func:`~livedead.nuclei.size.sizes_of_mask` samples 100)."""
MIN_DEPTH_PX = 0.8
"""Dips of a digital distance map shallower than this are its digitisation (steps of 1 and 1.41 px), not necks."""
PACK_WIDTH, PACK_PX = 1024, 1 << 18
"""The width of the shelves that :func:`reconstruct_pieces` packs pieces of foreground on, and the pixels
it reconstructs at a time (a piece larger than that, at once)."""


@dataclass
class Nuclei:
    """The nuclei of one image: instance labels (0 background, 1..n), centroids (n, 2) as (y, x), dead flags."""

    instances: np.ndarray | None
    """None where an image was counted band by band (:class:`BandCounter`): its labels were written out."""
    centroids: np.ndarray
    dead: np.ndarray
    diameter: float | None = None
    """The nucleus diameter (px) the instances were found with (None for given instances)."""
    areas: np.ndarray | None = None
    """Each nucleus's pixels (n,), kept for the nuclei table (:mod:`livedead.nuclei.table`)."""

    def counts(self) -> dict[str, float]:
        live, dead = int((~self.dead).sum()), int(self.dead.sum())
        total = live + dead
        return {"live": live, "dead": dead, "total": total, "dead_fraction": dead / total if total else 0.0}


def split_touching(mask: np.ndarray, split_depth: float) -> np.ndarray:
    """Instances of a mask: a watershed of its distance transform from the tops of peaks at least
    :func:`component_depths` deep.

    The markers are the regional maxima of the h-maxima transform (its flat tops), not the pixels
    ``skimage.morphology.h_maxima`` returns: those are a peak's exact maxima, which on a digital
    distance map can lie apart and would split one nucleus.
    """
    dist = ndimage.distance_transform_edt(mask)
    components, n = ndimage.label(mask, structure=EIGHT)
    seed = np.maximum(dist - component_depths(dist, components, n, split_depth), 0)
    tops = morphology.local_maxima(reconstruct_pieces(seed, dist, components, n)) & mask
    markers, n = ndimage.label(tops, structure=EIGHT)
    instances = watershed(-dist, markers, mask=mask)
    unseeded = mask & (instances == 0)  # a component without a top (none is left: a safeguard) is one nucleus
    if unseeded.any():
        components, _ = ndimage.label(unseeded)
        instances[unseeded] = components[unseeded] + n
    return instances


def component_depths(dist: np.ndarray, components: np.ndarray, n: int, split_depth: float) -> np.ndarray:
    """The split depth (px) of each pixel's component (``components``, 1..n): ``split_depth`` of the component's
    own widest nucleus (twice its distance map's peak), so a large nucleus is judged at its size, not a small one's."""
    inside = components > 0
    widest = np.zeros(n + 1)
    np.maximum.at(widest, components[inside], dist[inside])
    return np.maximum(split_depth * 2 * widest[components], MIN_DEPTH_PX)


def reconstruct_pieces(seed: np.ndarray, image: np.ndarray, components: np.ndarray, n: int) -> np.ndarray:
    """``skimage.morphology.reconstruction(seed, image)`` (by dilation, 8-connected) of images that are zero
    outside the pieces that ``components`` labels (8-connected, 1..n): the same array, several times as fast.

    skimage's reconstruction visits the pixels in the order of their values, all over the image, so on an
    image of millions of pixels nearly every step misses the cache, and it sorts the background too,
    though nothing crosses it: each piece is its own reconstruction. So the pieces' boxes are packed side
    by side on shelves ``PACK_WIDTH`` px wide (one zero row or column between boxes, other pieces' pixels in
    a box left zero), and the shelves reconstructed a slab of about ``PACK_PX`` pixels at a time.
    """
    out = np.zeros(image.shape, np.result_type(seed, image))
    if n == 0:
        return out
    ys, xs = np.nonzero(components)
    ids = components[ys, xs]
    y0, x0 = np.full(n + 1, ys.max() + 1), np.full(n + 1, xs.max() + 1)
    y1, x1 = np.zeros(n + 1, ys.dtype), np.zeros(n + 1, xs.dtype)
    for ufunc, bound, at in ((np.minimum, y0, ys), (np.minimum, x0, xs), (np.maximum, y1, ys), (np.maximum, x1, xs)):
        ufunc.at(bound, ids, at)
    heights, widths = (y1 - y0 + 1)[1:], (x1 - x0 + 1)[1:]
    width = max(PACK_WIDTH, int(widths.max()))
    order = np.argsort(-heights, kind="stable")  # tallest first: shelves of like heights
    ends = np.cumsum(widths[order] + 1)  # where each box and its gap end, were they all on one shelf
    shift_y, shift_x = np.zeros(n + 1, np.int64), np.zeros(n + 1, np.int64)
    shelves, first = [0], 0
    while first < n:
        base = int(ends[first - 1]) if first else 0
        last = max(first + 1, int(np.searchsorted(ends, base + width + 1, side="right")))
        on = order[first:last]
        shift_y[on + 1] = shelves[-1] - y0[on + 1]
        shift_x[on + 1] = ends[first:last] - widths[on] - 1 - base - x0[on + 1]
        shelves.append(shelves[-1] + int(heights[on[0]]) + 1)
        first = last
    at = ys + shift_y[ids], xs + shift_x[ids]
    packed_seed, packed_image = np.zeros((shelves[-1], width), seed.dtype), np.zeros((shelves[-1], width), image.dtype)
    packed_seed[at], packed_image[at] = seed[ys, xs], image[ys, xs]
    packed = np.zeros(packed_seed.shape, out.dtype)
    top = 0
    for k, bottom in enumerate(shelves[1:], 1):  # a slab of shelves every PACK_PX pixels, and the last
        if (bottom - top) * width >= PACK_PX or k == len(shelves) - 1:
            packed[top:bottom] = morphology.reconstruction(packed_seed[top:bottom], packed_image[top:bottom])
            top = bottom
    out[ys, xs] = packed[at]
    return out


def find_nuclei(
    foreground: np.ndarray,
    diameter: float | None = None,
    dead_map: np.ndarray | None = None,
    split_depth: float = 0.05,
    min_area: float = 0.15,
    split: bool = True,
    largest: float | None = None,
    min_of_largest: float = MIN_OF_LARGEST,
) -> Nuclei:
    """The nuclei of a foreground mask (see the module docstring); ``diameter`` (typical) and ``largest``
    in px (:class:`~livedead.nuclei.size.NucleusSizes`), None: measured in the mask."""
    mask = np.asarray(foreground, bool)
    sizes = NucleusSizes(float(diameter), float(largest or diameter)) if diameter else sizes_of_mask(mask)
    if sizes is None or not mask.any():  # nothing that looks like a nucleus
        return nuclei_from_instances(np.zeros(mask.shape, np.int32), dead_map)
    if not sizes.typical > 0:
        raise LivedeadError(f"nucleus diameter: expected > 0 px, found {diameter}")
    instances = split_touching(mask, split_depth) if split else ndimage.label(mask)[0]
    smallest = smallest_nucleus(sizes.typical, sizes.largest, min_area, min_of_largest)
    found = nuclei_from_instances(instances, dead_map, smallest)
    found.diameter = sizes.typical
    return found


def nuclei_from_instances(instances: np.ndarray, dead_map: np.ndarray | None, min_px: int = 1) -> Nuclei:
    """The nuclei of an instance mask of at least ``min_px`` pixels, relabelled 1..n; dead where the
    mean of ``dead_map`` over a nucleus exceeds one half (all live without one)."""
    mask = instances > 0
    ids = instances[mask]
    n = int(ids.max()) if ids.size else 0
    sizes = np.bincount(ids, minlength=n + 1)
    keep = sizes >= max(min_px, 1)
    keep[0] = False
    kept = np.flatnonzero(keep)
    relabel = np.zeros(n + 1, np.int32)
    relabel[kept] = np.arange(1, len(kept) + 1)
    ys, xs = np.nonzero(mask)
    cy = np.bincount(ids, weights=ys, minlength=n + 1)[kept] / sizes[kept]
    cx = np.bincount(ids, weights=xs, minlength=n + 1)[kept] / sizes[kept]
    if dead_map is None:
        dead = np.zeros(len(kept), bool)
    else:
        dead_px = np.bincount(ids, weights=np.asarray(dead_map, np.float64)[mask], minlength=n + 1)
        dead = dead_px[kept] > sizes[kept] / 2
    return Nuclei(relabel[instances], np.stack([cy, cx], axis=1).reshape(-1, 2), dead, areas=sizes[kept])


def nuclei_from_class_map(class_map: np.ndarray, **options: float | None) -> Nuclei:
    """The nuclei of a class map (0 background, 1 live, 2 dead): dead where most pixels are class 2."""
    return find_nuclei(class_map > 0, dead_map=class_map == 2, **options)


def nuclei_from_probabilities(probs: np.ndarray, threshold: float | None, **options: float) -> Nuclei:
    """The nuclei of the network's class probabilities (C, H, W), C = 3.

    Foreground is P(nucleus) = 1 - P(background) above ``threshold`` (calibrated on the validation
    split, not the argmax of a class-weighted network; None: the argmax); a nucleus is dead where
    its mean P(Cy5) / P(nucleus) exceeds one half.
    """
    foreground, dead_map = probability_maps(probs, threshold)
    return find_nuclei(foreground, dead_map=dead_map, **options)


def probability_maps(probs: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """What counting takes of the class probabilities (C, H, W): the foreground, and P(Cy5) / P(nucleus)."""
    nucleus = 1.0 - probs[0]
    foreground = probs.argmax(0) > 0 if threshold is None else nucleus > threshold
    return foreground, probs[2] / np.maximum(nucleus, 1e-6)


class BandCounter:
    """The nuclei of an image whose foreground comes in bands of rows, top to bottom, counted each once.

    Each band counts the connected pieces of foreground (8-connected) whose top row lies in its rows,
    whole: it looks below its rows as far as they reach, and one row above them, which tells a piece
    that starts in it from one that comes from above. Everything :func:`find_nuclei` computes
    (distances, split depths, the watershed, areas, dead fractions) is local to a piece, so every
    nucleus, cut by a band's border or not, is found once and as in the whole image. A piece that
    reaches further than ``MAX_REACH`` bands (a confluent sheet) is counted as far as that, and its
    nuclei in :attr:`cut`, which the caller reports.

    The nucleus sizes are ``diameter`` (and ``largest``) when given, else measured
    (:func:`~livedead.nuclei.size.sizes_of_mask`) in the image's first rows of ``SIZES_SAMPLE_PX``
    pixels, whatever the bands: the whole of an image up to that size, so that it is counted exactly
    as :func:`find_nuclei` counts it, in one band or many; a larger one is counted the same in bands
    of any height. (If those rows show no nucleus, the next rows are measured, and those rows count
    none, as :func:`find_nuclei` counts none in a mask without one.)

    :meth:`add` and :meth:`finish` return the finished rows of the instance labels (1..n over the
    whole image) and of the class map, as (first row, instances, classes); :meth:`nuclei` the result.
    """

    def __init__(
        self, shape: tuple[int, int], diameter: float | None = None, largest: float | None = None, **options: float
    ) -> None:
        (self.height, width), self.options = shape, options
        self.sizes = NucleusSizes(float(diameter), float(largest or diameter)) if diameter else None
        self.pending: list[tuple[int, int]] = []
        """Bands received and not yet counted: (first row, end row)."""
        self.start, self.fg, self.dead_map = 0, np.zeros((0, width), bool), np.zeros((0, width), np.float32)
        """The foreground and dead maps held, from row ``start``."""
        self.lab_start, self.lab = 0, np.zeros((0, width), np.int32)
        """The instance labels of the rows not handed out yet, from row ``lab_start``."""
        self.centroids: list[np.ndarray] = [np.zeros((0, 2))]
        self.dead: list[np.ndarray] = [np.zeros(0, bool)]
        self.areas: list[np.ndarray] = [np.zeros(0, np.int64)]
        self.n = 0
        self.cut = 0
        """Nuclei of pieces that reach further than ``MAX_REACH`` bands, counted only that far."""

    def add(self, start: int, foreground: np.ndarray, dead_map: np.ndarray) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Take the next band's foreground and dead maps; return the label rows that are finished."""
        if start != self.start + self.fg.shape[0]:
            raise ValueError(f"band at row {start}: expected the band at row {self.start + self.fg.shape[0]}")
        self.fg, self.dead_map = np.concatenate([self.fg, foreground]), np.concatenate([self.dead_map, dead_map])
        end = start + foreground.shape[0]
        self.pending.append((start, end))
        if self.sizes is None:
            first = self.pending[0][0]
            rows = max(1, SIZES_SAMPLE_PX // max(1, foreground.shape[1]))
            if end - first < rows and end < self.height:  # the sample is not all here yet
                return []
            self.sizes = sizes_of_mask(self.fg[first - self.start : first - self.start + rows])
            if self.sizes is None:  # nothing that looks like a nucleus yet: these rows count none
                self.pending.clear()
                return self._emit(end, end - 1)
        return self._count()

    def finish(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The rows still held, once the last band was added."""
        if self.start + self.fg.shape[0] != self.height:
            raise ValueError(f"expected rows up to {self.height}, found {self.start + self.fg.shape[0]}")
        return self._count()

    def nuclei(self) -> Nuclei:
        """The nuclei counted: centroids (whole-image rows), dead flags and areas; their labels were handed out."""
        areas = np.concatenate(self.areas)
        found = Nuclei(None, np.concatenate(self.centroids), np.concatenate(self.dead), areas=areas)
        found.diameter = self.sizes.typical if self.sizes is not None and self.n else None
        return found

    def _count(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        done: list[tuple[int, np.ndarray, np.ndarray]] = []
        while self.pending:
            a, b = self.pending[0]
            held = self.start + self.fg.shape[0]
            e0 = max(0, a - 1)
            end = min(held, 2 * b - a + 1)  # the pieces are labelled in rows e0:end, grown while one reaches row end
            while True:
                pieces, owned, reach = self._pieces(e0, end, a, b)
                if reach < end or end == held:  # no owned piece reaches the last row: they are whole
                    break
                end = min(held, end + 2 * (end - e0))
            if reach >= held and held < self.height and held - a < MAX_REACH * (b - a):
                return done  # a piece of this band goes on below the rows here: wait for them
            e1 = max(b, min(held, reach + 1))  # a row below the pieces, where the image goes on
            self._count_band(e0, e1, pieces[: e1 - e0], owned, cut=reach >= e1 and e1 < self.height)
            self.pending.pop(0)
            done += self._emit(b, b - 1)
        return done

    def _pieces(self, e0: int, end: int, a: int, b: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The pieces of foreground in rows ``e0:end``, which of them the band of rows ``a:b`` owns (their top row is
        in it: one in row a - 1 comes from above, one below b is the next band's), and how far down they reach."""
        pieces, n = ndimage.label(self.fg[e0 - self.start : end - self.start], structure=EIGHT)
        ys, xs = np.nonzero(pieces)  # not find_objects: it makes a box of slices for each of 10^5 specks of noise
        ids = pieces[ys, xs]
        tops, bottoms = np.full(n + 1, end - e0), np.zeros(n + 1, ys.dtype)
        np.minimum.at(tops, ids, ys)
        np.maximum.at(bottoms, ids, ys)
        owned = (tops + e0 >= a) & (tops + e0 < b)
        owned[0] = False
        return pieces, owned, int(bottoms[owned].max()) + e0 + 1 if owned.any() else b

    def _count_band(self, e0: int, e1: int, pieces: np.ndarray, owned: np.ndarray, cut: bool) -> None:
        """Count rows ``e0:e1`` and keep the nuclei of the ``owned`` pieces (their labels in ``pieces``)."""
        assert self.sizes is not None
        window = slice(e0 - self.start, e1 - self.start)
        mask = self.fg[window]
        found = find_nuclei(mask, self.sizes.typical, self.dead_map[window], largest=self.sizes.largest, **self.options)
        assert found.instances is not None
        piece_of = np.zeros(len(found.dead) + 1, np.int64)
        piece_of[found.instances[mask]] = pieces[mask]
        own = owned[piece_of[1:]]
        if cut:  # owned pieces that go on below the rows held: counted only this far
            self.cut += int(own[np.isin(piece_of[1:], np.unique(pieces[-1]))].sum())
        relabel = np.zeros(len(own) + 1, np.int32)
        relabel[1:][own] = np.arange(self.n + 1, self.n + 1 + int(own.sum()))
        ids = relabel[found.instances]
        grow = e1 - self.lab_start - self.lab.shape[0]
        if grow > 0:
            self.lab = np.concatenate([self.lab, np.zeros((grow, self.lab.shape[1]), np.int32)])
        skip = self.lab_start - e0  # the row above was handed out: no piece of this band is in it
        labels, ids = self.lab[: e1 - self.lab_start], ids[skip:]
        labels[ids > 0] = ids[ids > 0]
        self.centroids.append(found.centroids[own] + [e0, 0])
        self.dead.append(found.dead[own])
        assert found.areas is not None
        self.areas.append(found.areas[own])
        self.n += int(own.sum())

    def _emit(self, upto: int, keep_from: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Hand out the label rows before ``upto`` and drop the foreground rows before ``keep_from``."""
        drop = max(0, keep_from - self.start)
        self.fg, self.dead_map, self.start = self.fg[drop:], self.dead_map[drop:], self.start + drop
        n = upto - self.lab_start
        if n <= 0:
            return []
        if n > self.lab.shape[0]:  # rows no band has counted (none showed a nucleus yet): no nuclei
            self.lab = np.concatenate([self.lab, np.zeros((n - self.lab.shape[0], self.lab.shape[1]), np.int32)])
        out, self.lab, first = self.lab[:n], self.lab[n:], self.lab_start
        self.lab_start = upto
        classes = np.zeros(self.n + 1, np.uint8)
        classes[1:] = np.where(np.concatenate(self.dead), 2, 1)
        return [(first, out, classes[out])]


def stain_reference(class_map: np.ndarray, sizes: NucleusSizes | None, **options: float) -> Nuclei:
    """The nuclei of a class map labelled from the stains, counted at the sizes it was labelled with
    (not measured again in the map): the reference ``predict`` scores the model against."""
    if sizes is None:
        return nuclei_from_class_map(class_map, **options)
    return nuclei_from_class_map(class_map, diameter=sizes.typical, largest=sizes.largest, **options)


def class_map_of(nuclei: Nuclei) -> np.ndarray:
    """The class map (uint8: 0 background, 1 live, 2 dead) of counted nuclei: what was counted, pixel by pixel."""
    classes = np.zeros(len(nuclei.dead) + 1, np.uint8)
    classes[1:] = np.where(nuclei.dead, 2, 1)
    return classes[nuclei.instances]


def count_cells(class_map: np.ndarray, **options: float) -> dict[str, float]:
    """``live``, ``dead``, ``total`` and ``dead_fraction`` of the nuclei in a class map."""
    return nuclei_from_class_map(class_map, **options).counts()


def match_nuclei(found: Nuclei, truth: np.ndarray) -> dict[str, float]:
    """Detection scores against true instances: a found nucleus matches the true one its centroid lies
    in, one to one. Returns ``tp``, ``found``, ``true``, ``precision``, ``recall`` and ``f1``."""
    n_true = len(np.unique(truth[truth > 0]))
    n_found = len(found.centroids)
    if n_found:
        ys = np.clip(np.round(found.centroids[:, 0]).astype(int), 0, truth.shape[0] - 1)
        xs = np.clip(np.round(found.centroids[:, 1]).astype(int), 0, truth.shape[1] - 1)
        hit = truth[ys, xs]
        tp = len(np.unique(hit[hit > 0]))
    else:
        tp = 0
    return {
        "tp": tp,
        "found": n_found,
        "true": n_true,
        "precision": tp / n_found if n_found else float(n_true == 0),
        "recall": tp / n_true if n_true else float(n_found == 0),
        "f1": 2 * tp / (n_found + n_true) if n_found + n_true else 1.0,
    }


def truth_coverage(found: Nuclei, truth: np.ndarray) -> dict[str, int]:
    """How the true nuclei fare, where only some populations are drawn (the targets of a killing assay,
    not its effectors): ``true`` nuclei, those ``found`` (at least one counted centroid inside) and those
    ``split`` (two or more). Precision needs every nucleus drawn, so it is not asked here."""
    ids = np.unique(truth[truth > 0])
    ys = np.clip(np.round(found.centroids[:, 0]).astype(int), 0, truth.shape[0] - 1)
    xs = np.clip(np.round(found.centroids[:, 1]).astype(int), 0, truth.shape[1] - 1)
    per = np.bincount(truth[ys, xs], minlength=int(truth.max()) + 1)[ids] if ids.size else np.zeros(0, int)
    return {"true": len(ids), "found": int((per >= 1).sum()), "split": int((per >= 2).sum())}


def per_tile_counts(nuclei: Nuclei, shape: tuple[int, int], tile: int = 160) -> np.ndarray:
    """Live and dead nuclei whose centroid falls in each tile of a ``tile``-px grid: (tiles, 2)."""
    ny, nx = -(-shape[0] // tile), -(-shape[1] // tile)
    cell = (nuclei.centroids[:, 0] // tile).astype(int) * nx + (nuclei.centroids[:, 1] // tile).astype(int)
    live = np.bincount(cell[~nuclei.dead], minlength=ny * nx)
    dead = np.bincount(cell[nuclei.dead], minlength=ny * nx)
    return np.stack([live, dead], axis=1)
