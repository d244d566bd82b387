"""Real transmitted light: the tiny U-Net trained on a real scratch assay's oblique light, scored against hand labels.

``tests/data/ndev/scratch-assay.tif`` (BSD-3-Clause, ``tests/data/README.md``): one field over time,
oblique transmitted light and Hoechst 33342, with hand-drawn nuclei. :func:`tests.conftest.scratch_model`
prepares the training frames as ``prepare`` does (labels from the Hoechst channel), trains with the real
Lightning Trainer and predicts the held-out frames with ``predict``; here its detection is scored.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers import ScratchModel

F1_FLOOR = 0.2
"""Measured 0.298 (precision 0.259, recall 0.351: 328 found for 242 drawn); the floor leaves a margin under it."""


@pytest.mark.slow
def test_the_tiny_unet_finds_real_nuclei_in_transmitted_light(scratch_model: ScratchModel):
    """Detection F1 against the hand-drawn nuclei of the held-out frames (a found nucleus matches the drawn one its
    centroid lies in), through ``predict``'s ``metrics.json``. Measured: the model 0.298 after its 5 epochs
    (with earlier labels: 0.487 after 15, 0.28 after 20 epochs of 160-px tiles; the suite affords few steps,
    and the count runs high, 328 for 242); the labels it learnt from, Hoechst through the stain labelling,
    0.799 (356 found:
    the hand labels leave out some stained nuclei, and since the noise is measured in the background's darkest
    blocks the labels keep faint glow beside some nuclei too; 0.836 and 330 found before). A weak model,
    measured as it is, not a usable one."""
    metrics = json.loads((scratch_model.predictions / "metrics.json").read_text())
    model, stains = metrics["detection"]["model"], metrics["detection"]["stains"]
    assert model["true"] == scratch_model.drawn
    assert model["f1"] >= F1_FLOOR, (model, stains)
    assert stains["f1"] >= 0.78, stains  # the labels it was trained on hold against the hand-drawn nuclei
