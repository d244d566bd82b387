"""The suite's hooks and its shared fixtures: a small real synthetic plate, its tile file, a tiny trained run,
the real scratch assay's model and a real sweep, each made once per test process.

The helpers the tests call are in :mod:`tests.helpers`. They are imported here only inside the fixtures: the
pytest-xdist controller loads this file but runs no test, and it starts the test processes sooner when this
file does not import torch and Lightning first (measured: about 5 s of a quick loop).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import lightning as L

    from livedead.model.module import LiveDeadModule
    from tests.helpers import ScratchModel

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    # pytest-xdist runs a test process a core: one thread each, for it and the commands it starts,
    # or their thread pools would take turns on the same cores (measured: 9 min against 5.8)
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

SLOW_FIXTURES = {"sweep", "scratch_model"}
"""Fixtures that run a multirun or a multi-epoch fit: a test that uses one is slow itself."""

SHARED = ("sweep", "scratch_model", "uninterrupted", "sized_ckpt", "truth_predictions", "dose_plate")
"""Fixtures of seconds each that several tests use: under ``--dist loadgroup`` the tests that use one run in the
same test process (an ``xdist_group`` of the fixture's name), which then makes it once, not once per process."""


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups in the test ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that uses a slow fixture without the ``slow`` mark: ``-m 'not slow'`` would run the fixture.
    Put each test that uses a :data:`SHARED` fixture in that fixture's ``xdist_group``."""
    unmarked = [
        item.nodeid
        for item in items
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("slow") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests using a slow fixture ({sorted(SLOW_FIXTURES)}) must be marked slow: {unmarked}")
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        group = next((name for name in SHARED if name in used), None)
        if group is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_collection_finish() -> None:
    """What the imports made lives as long as the process: leave it out of every later garbage collection.

    Each full collection otherwise walks the 600k objects of torch, Lightning and napari (0.3 s each, measured),
    as pytest does five times over at the end of every test process.
    """
    gc.freeze()


@pytest.fixture(scope="session")
def plate_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from livedead.plates.synthetic import generate_plate
    from tests.helpers import SMALL

    return generate_plate(tmp_path_factory.mktemp("plate") / "plate.h5", SMALL, progress=False)


@pytest.fixture(scope="session")
def tiles_path(plate_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from livedead.data.preparation import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("tiles") / "tiles.h5"
    prepare(plate_path, out, PrepareConfig(chunk=50, keep_intermediate=True, progress=False))
    return out


@pytest.fixture(scope="session")
def fitted(tiles_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, L.Trainer, LiveDeadModule]:
    """A two-epoch fit of the tiny module on the session's tile file: (root, trainer, module)."""
    import torch

    from tests.helpers import data_for, make_module, make_trainer

    root = tmp_path_factory.mktemp("fit")
    torch.manual_seed(0)
    module = make_module()
    datamodule = data_for(module, tiles_path)
    trainer = make_trainer(root, 2)
    trainer.fit(module, datamodule=datamodule)
    return root, trainer, module


@pytest.fixture(scope="session")
def tiny_ckpt(fitted: tuple[Path, L.Trainer, LiveDeadModule]) -> Path:
    """The last checkpoint of :func:`fitted`."""
    return fitted[0] / "ckpt" / "last.ckpt"


@pytest.fixture(scope="session")
def scratch_model(tmp_path_factory: pytest.TempPathFactory) -> ScratchModel:
    """:func:`tests.helpers.train_scratch_model`, once per session."""
    from tests.helpers import train_scratch_model

    return train_scratch_model(tmp_path_factory.mktemp("scratch"))


@pytest.fixture(scope="session")
def sweep(tiles_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real sweep, ``experiment=compare_optimizers seeds=2``: adam and sgd with seeds 0 and 1 (4 jobs, 3 epochs)."""
    from tests.helpers import run_cli

    cwd = tmp_path_factory.mktemp("sweep")
    tiny = ["model.net.base_channels=4", "model.net.depth=2", "model.overlay_tiles=2", "data.num_workers=0",
            "data.batch_size=10", "trainer.accelerator=cpu", "callbacks.model_summary=null",
            "callbacks.progress_bar=null", "trainer.max_epochs=3"]  # fmt: skip
    proc = run_cli("livedead.train", "experiment=compare_optimizers", "seeds=2", "data=hdf5",
                   f"data.path={tiles_path}", *tiny, cwd=cwd)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = (cwd / "outputs" / "multirun").iterdir()
    return folder
