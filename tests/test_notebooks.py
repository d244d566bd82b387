"""The notebooks run, top to bottom, on tiny data made by the tests: a notebook that breaks fails CI."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT, run_cli

NOTEBOOKS = ROOT / "notebooks"


def predict_folder(ckpt: Path, plate: Path, out: Path, save: str) -> Path:
    """A real ``livedead.predict`` output folder (no overlays), saving ``save``."""
    proc = run_cli("livedead.predict", f"ckpt={ckpt}", f"input={plate}", f"output={out}", "progress=false",
                   "overlays=false", f"save={save}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def predictions(tiny_ckpt: Path, plate_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return predict_folder(tiny_ckpt, plate_path, tmp_path_factory.mktemp("predictions"), "none")


@pytest.fixture(scope="module")
def assay_predictions(tiny_ckpt: Path, plate_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prediction folder with its class maps (``save=tiff``), which the assay step tracks nuclei in."""
    return predict_folder(tiny_ckpt, plate_path, tmp_path_factory.mktemp("assay_predictions"), "tiff")


def test_every_notebook_is_tested_and_saved_without_outputs():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == [
        "01_tiles.ipynb", "02_sweep.ipynb", "03_counts.ipynb", "04_assay.ipynb"
    ]  # fmt: skip
    for path in NOTEBOOKS.glob("*.ipynb"):
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in book.cells
                   if c.cell_type == "code"), f"{path.name} was saved with outputs"  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "variable", "data"),
    [
        ("01_tiles.ipynb", "LIVEDEAD_TILES", "tiles_path"),
        # the sweep fixture is asked for by name in the test: its xdist group is named here (tests/conftest.py SHARED)
        pytest.param("02_sweep.ipynb", "LIVEDEAD_SWEEP", "sweep", marks=pytest.mark.xdist_group("sweep")),
        ("03_counts.ipynb", "LIVEDEAD_PREDICTIONS", "predictions"),
        ("04_assay.ipynb", "LIVEDEAD_PREDICTIONS", "assay_predictions"),
    ],
)
def test_notebook_runs(name, variable, data, request, monkeypatch):
    monkeypatch.setenv(variable, str(request.getfixturevalue(data)))
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    outputs = [o for c in book.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert [o for o in outputs if "image/png" in o.get("data", {})], "it shows figures"
