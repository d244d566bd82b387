"""Before any test: Qt draws offscreen (napari's tests need no display), and the napari plugin's modules
are collected only where napari is installed (the ``napari`` extra; ``[dev]`` brings it). napari's pytest
plugin is off (pyproject.toml): its options are added here, its fixtures in tests/napari/conftest.py."""

import importlib.util
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
if importlib.util.find_spec("napari"):
    from napari.utils._testsupport import pytest_addoption  # noqa: F401  (make_napari_viewer reads them)

    collect_ignore_glob = ["livedead/napari/widget.py"]  # no doctests; tests/napari imports it where needed
else:
    collect_ignore_glob = ["livedead/napari/*", "tests/napari/*"]
