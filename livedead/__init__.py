"""livedead: count live and dead cells in transmitted-light time-lapse images with a U-Net.

Data flows one way: ``synthetic``/``plates`` (raw plates) -> ``labels`` (classes from stains)
-> ``tiling`` + ``store`` (the chunked HDF5 tile file, written by ``prepare``) -> training.
"""

CLASS_NAMES: tuple[str, ...] = ("background", "dapi", "cy5")
"""Pixel classes: 0 background, 1 DAPI (live nucleus, Hoechst only), 2 Cy5 (dead nucleus, Draq7)."""

__version__ = "0.1.0"
