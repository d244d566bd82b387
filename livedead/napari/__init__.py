"""livedead in napari: an npe2 plugin (``napari.yaml``) with a reader of tile files and prediction folders
(:mod:`~livedead.napari.reader`), a widget that predicts, corrects and counts (:mod:`~livedead.napari.widget`,
its Qt-free work in :mod:`~livedead.napari.prediction`) and a synthetic sample plate (:mod:`~livedead.napari.sample`).

``pip install -e ".[napari]"`` brings napari and Qt. Nothing else of the package imports this folder,
so ``import livedead`` stays free of both.
"""
