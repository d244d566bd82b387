"""Shared fixtures: a small real synthetic plate and its tile file, made once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from livedead.prepare import PrepareConfig, prepare
from livedead.synthetic import PlateSpec, generate_plate

ROOT = Path(__file__).resolve().parents[1]
SMALL = PlateSpec(wells=3, timepoints=3, height=256, width=320, seed=3)


@pytest.fixture(scope="session")
def plate_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_plate(tmp_path_factory.mktemp("plate") / "plate.h5", SMALL, progress=False)


@pytest.fixture(scope="session")
def tiles_path(plate_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiles") / "tiles.h5"
    prepare(plate_path, out, PrepareConfig(chunk=50, keep_intermediate=True, progress=False))
    return out


def run_cli(module: str, *overrides: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of the package's Hydra CLIs as a user would, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=300,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Bad input: non-zero exit, one line on stderr naming what was wrong, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[0], lines[0]
