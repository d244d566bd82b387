"""napari's sample data: a small synthetic plate, rendered in memory by livedead's own generator.

Two wells of three time points (256 x 320 px): a well with few deaths and the most toxic one, so
the dead nuclei show. Transmitted light (what the model sees), the two stains (hidden) and the
true classes, each stacked as (well, time, y, x).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from livedead.plates.platefile import PLATE_CHANNELS
from livedead.plates.synthetic import PlateSpec, render_image, simulate_well, well_names

SPEC = PlateSpec(wells=2, timepoints=3, height=256, width=320, seed=1)


def synthetic_plate(spec: PlateSpec = SPEC) -> list[tuple[Any, dict[str, Any], str]]:
    """The plate's layers (npe2 sample data command)."""
    images = np.zeros((spec.wells, spec.timepoints, len(PLATE_CHANNELS), spec.height, spec.width), np.uint16)
    truth = np.zeros((spec.wells, spec.timepoints, spec.height, spec.width), np.uint8)
    for well in range(spec.wells):
        for t, cells in enumerate(simulate_well(spec, well)):
            images[well, t], truth[well, t], _ = render_image(spec, cells, well, t)
    axes = {"axis_labels": ("well", "t", "y", "x"), "metadata": {"wells": well_names(spec.wells)}}
    layers: list[tuple[Any, dict[str, Any], str]] = []
    for c, channel in enumerate(PLATE_CHANNELS):
        stain = channel != "brightfield"
        colour = {"hoechst": "blue", "draq7": "magenta"}.get(channel, "gray")
        kw = {"name": f"synthetic {channel}", "colormap": colour, "visible": not stain, **axes}
        layers.append((images[:, :, c], {**kw, "blending": "additive" if stain else "translucent"}, "image"))
    layers.append((truth, {"name": "synthetic truth", "visible": False, **axes}, "labels"))
    return layers
