"""livedead: count live and dead cells in transmitted-light time-lapse images with a U-Net.

The folders are the pipeline, and dependencies run one way (``tests/test_layout.py`` keeps them so):

* ``data``: raw plates (synthetic, readers), labels from stains, tiling, the tile file, the datamodule;
* ``model``: the U-Net, the Lightning module, metrics, schedulers, checkpoints; never imported by ``data``;
* ``inference``: sliding windows, counting, whole plates; torch and numpy, no Lightning or Hydra;
* ``viz``: overlays, figures, videos;
* ``config``: the Hydra glue (resolvers, schemas, the sweep summary) of the commands.

The modules at this level are the commands, one per verb (``python -m livedead.<verb>``);
nothing imports them.
"""

CLASS_NAMES: tuple[str, ...] = ("background", "dapi", "cy5")
"""Pixel classes: 0 background, 1 DAPI (live nucleus, Hoechst only), 2 Cy5 (dead nucleus, Draq7)."""

__version__ = "0.1.0"
