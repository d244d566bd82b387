"""livedead: count live and dead cells in transmitted-light time-lapse images with a U-Net.

The folders are the pipeline, and dependencies run one way (``tests/test_layout.py`` keeps them so):

* ``plates``: raw plates in and out: readers (TIFF, OME-TIFF, bioio), the plate file, stitching, the
  synthetic generator; no torch;
* ``nuclei``: nucleus size, labels from stains, instances and counts, matching against truth; no torch;
* ``data``: tiling, the tile file, preparation, the sampler, dataset, transforms and datamodule;
* ``model``: the U-Net, the Lightning module, metrics, schedulers, checkpoints; never imported by ``data``;
* ``inference``: sliding windows and whole plates, and their evaluation; torch, numpy and the image
  libraries, no Lightning or Hydra;
* ``viz``: overlays, figures, videos;
* ``config``: the Hydra glue (resolvers, schemas, the sweep summary) of the commands.

Beside them, ``errors`` (the one-line :class:`~livedead.errors.LivedeadError`), ``files`` (files written
whole or not at all) and ``allocator`` (glibc's malloc told to keep freed memory) serve every folder.
The modules at this level are the commands, one per verb (``python -m livedead.<verb>``);
nothing imports them.
"""

CLASS_NAMES: tuple[str, ...] = ("background", "dapi", "cy5")
"""Pixel classes: 0 background, 1 DAPI (live nucleus, Hoechst only), 2 Cy5 (dead nucleus, Draq7)."""

__version__ = "0.1.0"
