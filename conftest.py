"""Before any test: Qt draws on a display, which pytest-xvfb (in ``[dev]``) starts as a virtual one wherever Xvfb is
installed, so that napari's canvas has OpenGL; with no display Qt draws offscreen, where the viewer test is skipped.
The napari plugin's modules are collected only where napari is installed (the ``napari`` extra; ``[dev]`` brings it).
napari's pytest plugin is off (pyproject.toml): its options are added here, its fixtures in tests/napari/conftest.py."""

import importlib.util
import os

import pytest

if importlib.util.find_spec("napari"):
    from napari.utils._testsupport import pytest_addoption  # noqa: F401  (make_napari_viewer reads them)

    collect_ignore_glob = ["livedead/napari/widget.py"]  # no doctests; tests/napari imports it where needed
else:
    collect_ignore_glob = ["livedead/napari/*", "tests/napari/*"]


@pytest.hookimpl(trylast=True)  # after pytest-xvfb's, which sets DISPLAY when it starts Xvfb
def pytest_configure(config: pytest.Config) -> None:
    controller = config.getoption("dist", "no") != "no" and not os.environ.get("PYTEST_XDIST_WORKER")
    if not controller and not os.environ.get("DISPLAY"):  # (xdist's controller runs no test, and no Xvfb)
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
