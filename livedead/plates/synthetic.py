"""A synthetic live/dead plate: the embedded default data of a fresh clone.

It mimics the study's assay closely enough that a model trained on it has to learn what a
dead cell looks like in transmitted light, not threshold a brightness:

* Cells persist over time points and random-walk a little; death is irreversible.
* Each well has its own death rate (a dose series: well 0 is the vehicle control). Given a plate
  map's concentrations, the rate follows a known Hill curve of the concentration instead
  (``ec50``, ``hill``, ``max_hazard``), and the truth records every cell's time of death and the
  plate's true EC50 (:func:`true_ec50`).
* In transmitted light a live cell is a large, elongated, textured body with a pale halo and a
  darker nucleus; a dead cell is small, round and refractile (bright core, dark ring).
  Unstained debris has similar brightness to dead cells but no ring and no nucleus.
* Cells are placed in clusters, so many touch. Illumination is uneven, the focus drifts
  slightly, and the camera adds Poisson-Gaussian noise.
* Hoechst marks every nucleus, Draq7 dead nuclei only; brightness varies from cell to cell.

The plate is rendered one image at a time, so a full 2700x3600 well needs the memory of a
few images, never of the plate. The same seed always gives the same file.

The command line is :mod:`livedead.synthetic`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import tifffile
from rich.progress import Progress
from scipy import ndimage

from livedead.errors import LivedeadError
from livedead.files import atomic_path, check_output
from livedead.plates.images import write_ome_tiff
from livedead.plates.platefile import PLATE_CHANNELS, PlateAttrs, write_plate
from livedead.plates.sources import open_plate
from livedead.plates.stitching import ORDERS, grid_cell

_MARGIN = 18  # px at magnification 1: cell centres stay this far inside the image, so every counted cell is whole


@dataclass(frozen=True)
class PlateSpec:
    """Everything that defines a synthetic plate; the file records it in ``attrs["spec"]``."""

    wells: int = 4
    timepoints: int = 6
    height: int = 640
    width: int = 800
    seed: int = 0
    density: float = 480.0
    """Cells per megapixel at the first time point."""
    cluster_size: float = 6.0
    """Mean number of cells per cluster (touching cells)."""
    initial_dead_fraction: float = 0.01
    base_dead_fraction: float = 0.05
    """Fraction dead by the last time point in the control well."""
    max_dead_fraction: float = 0.85
    """Fraction dead by the last time point in the most toxic well."""
    debris_per_mpx: float = 120.0
    motility: float = 2.0
    """Standard deviation of a live cell's step between time points, in pixels at magnification 1."""
    time_interval_h: float = 0.25
    """Hours between time points (the study imaged a well 70 times in 18 hours)."""
    ec50: float = 1.0
    """With a plate map: the concentration at which the per-time-point death hazard is half ``max_hazard``."""
    hill: float = 1.5
    """With a plate map: the Hill slope of the hazard against concentration."""
    max_hazard: float = 0.2
    """With a plate map: the per-time-point probability of death that a saturating dose adds to the control's."""
    magnification: float = 1.0
    """The same cells at this many times the default pixel density: sizes, distances, motility and
    blur in pixels grow with it, cells and debris per megapixel fall with its square (the default
    nucleus is about 10 px across)."""

    @property
    def margin(self) -> int:
        """How far inside the image cell centres stay, so that every counted cell is whole (px)."""
        return round(_MARGIN * self.magnification)

    def validate(self) -> None:
        for key in ("wells", "timepoints"):
            if getattr(self, key) < 1:
                raise LivedeadError(f"config key '{key}': expected >= 1, found {getattr(self, key)}")
        if not self.magnification > 0:
            raise LivedeadError(f"config key 'magnification': expected > 0, found {self.magnification}")
        for key in ("height", "width"):
            if getattr(self, key) < 4 * self.margin:
                raise LivedeadError(f"config key '{key}': expected >= {4 * self.margin} px, found {getattr(self, key)}")
        for key in ("initial_dead_fraction", "base_dead_fraction", "max_dead_fraction"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise LivedeadError(f"config key '{key}': expected in [0, 1), found {getattr(self, key)}")
        if self.density <= 0:
            raise LivedeadError(f"config key 'density': expected > 0, found {self.density}")
        for key in ("ec50", "hill"):
            if not getattr(self, key) > 0:
                raise LivedeadError(f"config key '{key}': expected > 0, found {getattr(self, key)}")
        if not 0.0 <= self.max_hazard < 1.0:
            raise LivedeadError(f"config key 'max_hazard': expected in [0, 1), found {self.max_hazard}")

    def spec_json(self, dose: bool) -> str:
        """What the file records of the spec: the hazard curve's keys only where a plate map set the doses,
        so that a plate made without one is the same file, byte for byte, as before they existed."""
        record = asdict(self)
        if not dose:
            for key in ("ec50", "hill", "max_hazard"):
                del record[key]
        return json.dumps(record)


@dataclass
class Cells:
    """State of every cell in one well. Arrays are indexed by cell."""

    y: np.ndarray
    x: np.ndarray
    angle: np.ndarray
    body: np.ndarray  # (n, 2) semi-axes of the live cell body
    nucleus: np.ndarray  # (n, 2) semi-axes of the live nucleus
    dead_radius: np.ndarray  # body radius once dead (small and round)
    hoechst: np.ndarray  # per-cell stain brightness
    draq7: np.ndarray
    alive: np.ndarray  # bool


def death_hazards(spec: PlateSpec, concentrations: Sequence[float] | None = None) -> np.ndarray:
    """Per-time-point probability of death for each well: a dose series from control to toxic, or with
    ``concentrations`` (one per well) the control's hazard combined with :func:`hill_hazard`'s."""
    steps = max(spec.timepoints - 1, 1)
    if concentrations is not None:
        control = 1.0 - (1.0 - spec.base_dead_fraction) ** (1.0 / steps)
        return 1.0 - (1.0 - control) * (1.0 - hill_hazard(spec, np.asarray(concentrations, np.float64)))
    dose = np.linspace(0.0, 1.0, spec.wells) ** 1.5 if spec.wells > 1 else np.zeros(1)
    final = spec.base_dead_fraction + (spec.max_dead_fraction - spec.base_dead_fraction) * dose
    return 1.0 - (1.0 - final) ** (1.0 / steps)


def hill_hazard(spec: PlateSpec, concentration: np.ndarray) -> np.ndarray:
    """The per-time-point hazard a concentration adds: ``max_hazard`` x c^h / (ec50^h + c^h).

    >>> float(hill_hazard(PlateSpec(ec50=2.0, max_hazard=0.2), np.array(2.0)))
    0.1
    """
    c = np.maximum(concentration, 0.0) ** spec.hill
    return spec.max_hazard * c / (spec.ec50**spec.hill + c)


def true_ec50(spec: PlateSpec, time: int | None = None) -> float:
    """The concentration at which the expected dead fraction at time point ``time`` (None: the last) is halfway
    between the control's and a saturating dose's: the EC50 that a dose-response fit at that time estimates.

    After ``T`` steps the fraction alive is ``a (1 - p0)^T (1 - p(c))^T``, so halfway needs
    ``(1 - p)^T = (1 + (1 - max_hazard)^T) / 2`` whatever the control (``a``, ``p0``) does; the Hill
    curve inverted at that ``p`` gives ``c``. With one step that is the hazard's own ``ec50``:

    >>> round(true_ec50(PlateSpec(timepoints=2, ec50=3.0)), 6)
    3.0
    """
    steps = spec.timepoints - 1 if time is None else time
    if steps < 1:
        raise LivedeadError(f"true EC50: expected a time point after the first, found {steps}")
    p = 1.0 - ((1.0 + (1.0 - spec.max_hazard) ** steps) / 2.0) ** (1.0 / steps)
    return spec.ec50 * (p / (spec.max_hazard - p)) ** (1.0 / spec.hill)


def _place_clustered(rng: np.random.Generator, n: int, spec: PlateSpec) -> tuple[np.ndarray, np.ndarray]:
    """Neyman-Scott placement with a soft minimum distance, so clusters touch but rarely overlap."""
    ys: list[float] = []
    xs: list[float] = []
    m, h, w, margin = spec.magnification, spec.height, spec.width, spec.margin
    min_d2 = (17.0 * m) ** 2
    grid: dict[tuple[int, int], list[int]] = {}
    cell = 24 * m
    tries = 0
    centre = None
    while len(ys) < n and tries < 60 * n:
        tries += 1
        if centre is None or rng.random() < 1.0 / max(spec.cluster_size, 1.0):
            centre = (rng.uniform(margin, h - margin), rng.uniform(margin, w - margin))
        y = centre[0] + rng.normal(0, 22 * m)
        x = centre[1] + rng.normal(0, 22 * m)
        if not (margin <= y < h - margin and margin <= x < w - margin):
            continue
        gy, gx = int(y // cell), int(x // cell)
        near = (j for dy in (-1, 0, 1) for dx in (-1, 0, 1) for j in grid.get((gy + dy, gx + dx), ()))
        if any((ys[j] - y) ** 2 + (xs[j] - x) ** 2 < min_d2 for j in near):
            continue
        grid.setdefault((gy, gx), []).append(len(ys))
        ys.append(y)
        xs.append(x)
    return np.asarray(ys), np.asarray(xs)


def initial_cells(spec: PlateSpec, rng: np.random.Generator) -> Cells:
    m = spec.magnification
    n = max(1, rng.poisson(spec.density * spec.height * spec.width / 1e6 / m**2))
    y, x = _place_clustered(rng, n, spec)
    n = len(y)
    a = rng.uniform(11.0, 16.0, n) * m
    body = np.stack([a, a * rng.uniform(0.55, 0.85, n)], axis=1)
    nucleus = body * rng.uniform(0.42, 0.52, (n, 1))
    return Cells(
        y=y,
        x=x,
        angle=rng.uniform(0, np.pi, n),
        body=body,
        nucleus=nucleus,
        dead_radius=rng.uniform(6.5, 8.5, n) * m,
        hoechst=rng.lognormal(np.log(1400), 0.35, n),
        draq7=rng.lognormal(np.log(1600), 0.45, n),
        alive=rng.random(n) >= spec.initial_dead_fraction,
    )


def simulate_well(spec: PlateSpec, well: int, hazards: np.ndarray | None = None) -> Iterator[Cells]:
    """Yield the cell state at each time point of one well (a copy each time); ``hazards``: per well
    (default :func:`death_hazards` of the spec)."""
    rng = np.random.default_rng([spec.seed, well])
    cells = initial_cells(spec, rng)
    hazard = (death_hazards(spec) if hazards is None else hazards)[well]
    for t in range(spec.timepoints):
        if t > 0:
            n = len(cells.y)
            cells.alive &= rng.random(n) >= hazard  # death is irreversible
            step = np.where(cells.alive, spec.motility, 0.2) * spec.magnification
            cells.y = _reflect(cells.y + rng.normal(0, 1, n) * step, spec.height, spec.margin)
            cells.x = _reflect(cells.x + rng.normal(0, 1, n) * step, spec.width, spec.margin)
            cells.angle = cells.angle + np.where(cells.alive, rng.normal(0, 0.15, n), 0.0)
        yield Cells(**{f.name: np.copy(getattr(cells, f.name)) for f in fields(Cells)})


def _reflect(v: np.ndarray, size: int, margin: int) -> np.ndarray:
    lo, hi = margin, size - margin - 1
    v = np.where(v < lo, 2 * lo - v, v)
    return np.clip(np.where(v > hi, 2 * hi - v, v), lo, hi)


def _ellipse_coords(
    cy: float, cx: float, a: float, b: float, angle: float, reach: float, shape: tuple[int, int]
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Normalised elliptic radius (1 on the boundary) over a bounding box around a cell."""
    r = math.ceil(a * reach) + 2
    y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, shape[0])
    x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, shape[1])
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    c, s = math.cos(angle), math.sin(angle)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    return (slice(y0, y1), slice(x0, x1)), np.sqrt(u * u + v * v)


def _illumination(rng: np.random.Generator, h: int, w: int, strength: float) -> np.ndarray:
    """Smooth multiplicative field: vignetting plus a tilt, as from an off-centre lamp."""
    yy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    cy, cx, gy, gx = rng.uniform(-0.3, 0.3, 4)
    return 1.0 - strength * ((yy - cy) ** 2 + (xx - cx) ** 2) / 2 + 0.08 * (gy * yy + gx * xx)


def _camera(
    rng: np.random.Generator, signal: np.ndarray, out: np.ndarray, gain: float = 2.0, read: float = 6.0
) -> None:
    """Poisson-Gaussian camera noise with an offset, into ``out`` (uint16 counts).

    Done in row blocks, so the int64 and float temporaries stay small for a full well image.
    """
    for r in range(0, signal.shape[0], 256):
        block = signal[r : r + 256]
        photons = rng.poisson(np.maximum(block, 0) / gain)
        counts = gain * photons + (100.0 + read * rng.standard_normal(block.shape, dtype=np.float32))
        out[r : r + 256] = np.clip(np.rint(counts), 0, 65535)


def _thickness(rho: np.ndarray) -> np.ndarray:
    """Stain brightness at normalised radius ``rho``: a flattened nucleus is thickest in the middle,
    so a widefield image of it is a low dome (0.6 at the rim, 1 at the centre) with a soft edge."""
    inside = np.clip(rho, 0.0, 1.0)
    return np.clip((1.08 - rho) / 0.16, 0, 1) * (0.6 + 0.4 * np.sqrt(1.0 - inside * inside))


def render_image(spec: PlateSpec, cells: Cells, well: int, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image: (3, H, W) uint16 channels, the (H, W) uint8 truth class map, and the (H, W)
    truth instances (nucleus of cell ``i`` is ``i + 1``, the same over time; uint16 up to 65,534 cells)."""
    rng = np.random.default_rng([spec.seed, well, t, 7])
    shape = (spec.height, spec.width)
    bf = np.zeros(shape, np.float32)  # relative change of transmitted light
    hoechst = np.zeros(shape, np.float32)  # stain signal before optics and camera
    draq7 = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.uint8)
    instances = np.zeros(shape, np.uint16 if len(cells.y) < 65535 else np.uint32)

    for i in np.flatnonzero(cells.alive):
        a, b = cells.body[i]
        box, rho = _ellipse_coords(cells.y[i], cells.x[i], a, b, cells.angle[i], 1.35, shape)
        texture = rng.normal(0, 0.012, rho.shape).astype(np.float32)
        bf[box] += np.where(rho < 1, -0.05 + texture, 0) + 0.07 * np.exp(-(((rho - 1.08) / 0.12) ** 2))
        na, nb = cells.nucleus[i]
        nbox, nrho = _ellipse_coords(cells.y[i], cells.x[i], na, nb, cells.angle[i], 1.2, shape)
        bf[nbox] += -0.035 * (nrho < 1) - 0.04 * np.exp(-(((nrho - 1.0) / 0.12) ** 2))
        hoechst[nbox] += cells.hoechst[i] * _thickness(nrho)
        labels[nbox][nrho <= 1.0] = 1
        instances[nbox][nrho <= 1.0] = i + 1

    for i in np.flatnonzero(~cells.alive):
        r = cells.dead_radius[i]
        box, rho = _ellipse_coords(cells.y[i], cells.x[i], r, r * 0.95, cells.angle[i], 1.5, shape)
        bf[box] += 0.22 * np.exp(-((rho / 0.45) ** 2)) - 0.14 * np.exp(-(((rho - 0.9) / 0.18) ** 2))
        nr = 0.68 * r
        nbox, nrho = _ellipse_coords(cells.y[i], cells.x[i], nr, nr * 0.95, cells.angle[i], 1.2, shape)
        edge = _thickness(nrho)
        hoechst[nbox] += 1.6 * cells.hoechst[i] * edge  # condensed chromatin stains brighter
        draq7[nbox] += cells.draq7[i] * edge
        labels[nbox][nrho <= 1.0] = 2  # dead wins where nuclei touch
        instances[nbox][nrho <= 1.0] = i + 1

    m = spec.magnification
    n_debris = rng.poisson(spec.debris_per_mpx * spec.height * spec.width / 1e6 / m**2)
    for _ in range(n_debris):
        cy, cx = rng.uniform(0, spec.height), rng.uniform(0, spec.width)
        r = rng.uniform(1.5, 4.5) * m
        box, rho = _ellipse_coords(cy, cx, r, r * rng.uniform(0.4, 1.0), rng.uniform(0, np.pi), 2.0, shape)
        bf[box] += rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.25) * np.exp(-(rho**2))

    image = np.empty((3, *shape), np.uint16)
    ndimage.gaussian_filter(bf, rng.uniform(0.6, 1.4) * m, output=bf)  # slight defocus
    bf += 1.0
    bf *= 2400.0 * _illumination(rng, *shape, 0.35)
    _camera(rng, bf, image[0])
    fl_illum = _illumination(rng, *shape, 0.25)
    for k, stain, offset in ((1, hoechst, 150.0), (2, draq7, 120.0)):
        ndimage.gaussian_filter(stain, m, output=stain)
        stain *= fl_illum
        stain += offset
        _camera(rng, stain, image[k])
    return image, labels, instances


def well_names(n: int) -> list[str]:
    """The synthetic plate's well names: ``W01``, ``W02``...

    >>> well_names(2)
    ['W01', 'W02']
    """
    return [f"W{i + 1:02d}" for i in range(n)]


def generate_plate(
    path: str | Path, spec: PlateSpec, progress: bool = True, concentrations: Sequence[float] | None = None
) -> Path:
    """Write a raw plate file, truth included (layout: :mod:`livedead.plates.platefile`).

    ``concentrations`` (one per well, from a plate map) set each well's hazard by the spec's Hill curve;
    the truth then holds every cell's time of death, the concentrations and :func:`true_ec50`.
    """
    spec.validate()
    if concentrations is not None and len(concentrations) != spec.wells:
        raise LivedeadError(
            f"plate map: expected a concentration for each of {spec.wells} wells, found {len(concentrations)}"
        )
    path = check_output(path)
    w, t = spec.wells, spec.timepoints
    dose = concentrations is not None
    attrs = PlateAttrs(wells=well_names(w), time_interval_h=spec.time_interval_h, spec=spec.spec_json(dose))
    shape = (w, t, len(PLATE_CHANNELS), spec.height, spec.width)
    hazards = death_hazards(spec, concentrations)
    deaths = []
    with (
        write_plate(path, attrs, shape, np.dtype(np.uint16), PLATE_CHANNELS, death_hazard=hazards) as plate,
        Progress(disable=not progress) as bar,
    ):
        task = bar.add_task("synthetic plate", total=w * t)
        for well in range(w):
            death = None
            for tp, cells in enumerate(simulate_well(spec, well, hazards)):
                image, lab, inst = render_image(spec, cells, well, tp)
                plate.write_image(well, tp, image)
                plate.write_truth(well, tp, lab, inst, int(cells.alive.sum()), int((~cells.alive).sum()))
                death = np.full(len(cells.y), -1) if death is None else death
                death[(death < 0) & ~cells.alive] = tp
                bar.advance(task)
            deaths.append(death)
        if dose:
            ec50 = true_ec50(spec) if t > 1 else float("nan")
            plate.write_cell_truth(deaths, np.asarray(concentrations, np.float64), ec50)
    return path


@dataclass
class FieldGrid:
    """How :func:`write_fields` images each well as a microscope does: a grid of overlapping fields,
    each a little off its nominal position (the stage's error), at every time point."""

    rows: int = 3
    cols: int = 3
    overlap: float = 0.1
    """Nominal overlap of neighbouring fields, as a fraction of a field's size."""
    jitter: int = 3
    """The stage's error: each field is off its nominal position by up to this many px per axis, the
    same at every time point (a stage repeats its positions)."""
    order: str = "row-major"
    """The order the stage visits the grid in, which numbers the fields (``livedead.plates.stitching.ORDERS``)."""
    noise: float = 0.0
    """Standard deviation of each exposure's own camera noise (counts); 0: every field is an exact crop."""
    ome_tiff: bool = False
    """Write OME-TIFF with channel names, pixel size and stage positions, instead of plain CYX TIFF."""
    pixel_size_um: float = 0.65
    seed: int = 0


def write_fields(plate: str | Path, folder: str | Path, grid: FieldGrid) -> Path:
    """Cut every image of a raw plate into ``grid``'s overlapping fields; returns ``positions.csv``, the
    true (y, x) of every field in its well image.

    Field files are named as :data:`livedead.plates.stitching.FIELD_PATTERN` expects
    (``W01_f003_t000.tif``). The field size is the largest that fits the well with the jitter.
    """
    if grid.order not in ORDERS:
        raise LivedeadError(f"config key 'grid.order': expected one of {ORDERS}, found {grid.order!r}")
    folder = check_output(folder, [plate], key="fields", folder=True)
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng([grid.seed, 11])
    rows_out = ["well,field,row,col,y,x"]
    source, _ = open_plate(plate, channels=None)
    assert source.reader is not None
    names, wells, (h, w) = source.channels, source.wells, source.shape
    size, step = [], []
    for n, k in ((h, grid.rows), (w, grid.cols)):
        s = int((n - 2 * grid.jitter) / (k - (k - 1) * grid.overlap))
        while (k - 1) * round(s * (1 - grid.overlap)) + s + 2 * grid.jitter > n:  # the step rounds up
            s -= 1
        size.append(s)
        step.append(round(s * (1 - grid.overlap)))
    if min(size) < 16:
        raise LivedeadError(f"{plate}: images of {h}x{w} px are too small for a {grid.rows}x{grid.cols} grid")
    for wi, well in enumerate(wells):
        cells = [grid_cell(k, grid.rows, grid.cols, grid.order) for k in range(grid.rows * grid.cols)]
        true = [
            (r * step[0] + grid.jitter + int(rng.integers(-grid.jitter, grid.jitter + 1)),
             c * step[1] + grid.jitter + int(rng.integers(-grid.jitter, grid.jitter + 1)))
            for r, c in cells
        ]  # fmt: skip
        for k, ((r, c), (y, x)) in enumerate(zip(cells, true, strict=True)):
            rows_out.append(f"{well},{k},{r},{c},{y},{x}")
        for t in range(source.timepoints):
            read = source.reader((wi, t))
            if read.error:
                raise LivedeadError(read.error)
            image = np.stack([read.channels[c] for c in names])
            for k, (y, x) in enumerate(true):
                data = image[:, y : y + size[0], x : x + size[1]]
                if grid.noise:
                    noisy = data + rng.normal(0, grid.noise, data.shape)
                    data = np.clip(np.rint(noisy), 0, np.iinfo(data.dtype).max).astype(data.dtype)
                name = f"{well}_f{k:03d}_t{t:03d}"
                if grid.ome_tiff:
                    position = (y * grid.pixel_size_um, x * grid.pixel_size_um)
                    with atomic_path(folder / f"{name}.ome.tif") as tmp:
                        write_ome_tiff(tmp, data, names, grid.pixel_size_um, position)
                else:
                    with atomic_path(folder / f"{name}.tif") as tmp:
                        tifffile.imwrite(tmp, data, photometric="minisblack")
    positions = folder / "positions.csv"
    positions.write_text("\n".join(rows_out) + "\n")
    return positions
