"""The napari tests' fixtures: napari's own viewer fixture (its pytest plugin is off for the rest of the
suite, see pyproject.toml) and a real prediction folder (``save=ome-tiff``, one well of the session's plate)."""

from __future__ import annotations

from pathlib import Path

import pytest

# make_napari_viewer, the fixture it needs, and the hook that tells it whether a test failed
from napari.utils._testsupport import make_napari_viewer, mock_app_model, pytest_runtest_makereport  # noqa: F401

from livedead.inference.predictor import PredictConfig, run


@pytest.fixture(scope="package")
def predictions(tiny_ckpt: Path, plate_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("napari_predictions")
    cfg = PredictConfig(ckpt=str(tiny_ckpt), input=str(plate_path), output=str(out), wells=["W01"],
                        save="ome-tiff", progress=False)  # fmt: skip
    rows, failures = run(cfg)
    assert failures == 0
    assert len(rows) == 3
    return out
