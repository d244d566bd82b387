"""A small synthetic plate made from a plate map, and its truth laid out as a prediction folder."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest
import tifffile

from livedead.assays.platemap import dose_series, write_plate_map
from livedead.assays.truth import true_plate
from livedead.inference.evaluation import write_counts
from livedead.plates.synthetic import PlateSpec, generate_plate, well_names

DOSE = PlateSpec(wells=11, timepoints=6, height=256, width=256, seed=5, ec50=1.0, hill=1.5, max_hazard=0.35)
CONCENTRATIONS = [0.1, 0.3, 1.0, 3.0, 10.0]


@pytest.fixture(scope="session")
def dose_plate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(plate, plate map): 5 concentrations x 2 replicates and one control well."""
    folder = tmp_path_factory.mktemp("dose")
    plate_map = write_plate_map(folder / "map.csv", dose_series(well_names(DOSE.wells), CONCENTRATIONS, 2))
    concentrations = [0.0 if i >= 10 else CONCENTRATIONS[i // 2] for i in range(DOSE.wells)]
    return generate_plate(folder / "plate.h5", DOSE, progress=False, concentrations=concentrations), plate_map


@pytest.fixture(scope="session")
def truth_predictions(dose_plate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plate's true class maps and counts, as ``predict save=tiff`` lays out its folder."""
    out = tmp_path_factory.mktemp("truth_predictions")
    rows, _, _ = true_plate(dose_plate[0])
    with h5py.File(dose_plate[0]) as f:
        for row in rows:
            w = well_names(DOSE.wells).index(row["well"])
            tifffile.imwrite(out / f"{row['well']}_t{row['time']:03d}_classes.tif", f["truth/labels"][w, row["time"]])
    write_counts(rows, out)
    return out
