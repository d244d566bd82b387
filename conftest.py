"""Before any test: Qt draws offscreen (napari's tests need no display), and the napari plugin's modules
are collected only where napari is installed (the ``napari`` extra; ``[dev]`` brings it)."""

import importlib.util
import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
collect_ignore_glob = [] if importlib.util.find_spec("napari") else ["livedead/napari/*", "tests/napari/*"]
