"""The README's figure "A real assay": a held-out frame of the scratch assay in ``tests/data/ndev``.

Trains the tiny U-Net exactly as the suite's ``scratch_model`` fixture does (``tests.helpers.train_scratch_model``:
``prepare`` with labels from the Hoechst channel, the Lightning Trainer, ``predict``), then draws the last
held-out frame three times: its oblique transmitted light, the labels the Hoechst channel gives, and the
model's counted nuclei outlined on the transmitted light (live green, dead red), with the hand-drawn
nuclei's count and the detection F1 of the held-out frames in the titles.

``python docs/real_assay.py`` (about half a minute on 2 cores) writes ``docs/real_assay.png``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from matplotlib.figure import Figure
from PIL import Image
from skimage.segmentation import find_boundaries

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livedead.nuclei.counting import stain_reference  # noqa: E402
from livedead.nuclei.labels import labels_from_stains  # noqa: E402
from livedead.nuclei.size import image_sizes  # noqa: E402
from livedead.viz.overlays import nuclei_overlay  # noqa: E402
from tests.helpers import SCRATCH, SCRATCH_HELD_OUT, train_scratch_model  # noqa: E402


def grey(image: np.ndarray) -> np.ndarray:
    """An image stretched between its 1st and 99.8th percentiles, (H, W, 3) in [0, 1]."""
    lo, hi = np.percentile(image, (1, 99.8))
    g = np.clip((image.astype(np.float32) - lo) / (hi - lo), 0, 1)
    return np.repeat(g[..., None], 3, axis=-1)


def palette(path: Path) -> None:
    """The PNG in 256 colours: a grey image with green and red outlines needs no more, and is a third of the size."""
    Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        model = train_scratch_model(Path(tmp), save="ome-tiff")
        index = len(SCRATCH_HELD_OUT) - 1
        frame = SCRATCH_HELD_OUT[index]
        maps = tifffile.imread(model.predictions / f"S01_t{index:03d}_nuclei.ome.tif")
        metrics = json.loads((model.predictions / "metrics.json").read_text())
    data = tifffile.imread(SCRATCH)
    hoechst, oblique, drawn = data[0, frame], data[1, frame], data[2, frame]
    empty = np.zeros_like(hoechst)
    sizes = image_sizes(hoechst, empty)
    stains = stain_reference(labels_from_stains(hoechst, empty, sizes=sizes), sizes)
    instances = maps[1].astype(np.int64)
    dead = np.zeros(int(instances.max()), bool)
    if dead.size:
        dead[np.unique(instances[maps[0] == 2]) - 1] = True
    counted = nuclei_overlay(oblique, instances, dead)
    labelled = grey(hoechst)
    labelled[find_boundaries(stains.instances)] = (0.2, 0.9, 0.2)
    detection = metrics["detection"]
    fig = Figure(figsize=(9.5, 11.2), dpi=110)
    axes = fig.subplots(3, 1)
    n_drawn = len(np.unique(drawn[drawn > 0]))
    titles = [
        f"held-out frame {frame}: oblique transmitted light (0.619 µm/px), what the model sees",
        f"labels from its Hoechst 33342 channel: {len(stains.dead)} nuclei ({n_drawn} hand-drawn); "
        f"F1 {detection['stains']['f1']:.2f} over the held-out frames",
        f"the model's counted nuclei, from transmitted light alone: {int((~dead).sum())} live (green), "
        f"{int(dead.sum())} dead (red); F1 {detection['model']['f1']:.2f}",
    ]
    for ax, image, title in zip(axes, (grey(oblique), labelled, counted), titles, strict=True):
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    out = ROOT / "docs" / "real_assay.png"
    fig.savefig(out)
    palette(out)
    print(f"wrote {out}")
    for source in ("model", "stains"):
        d = detection[source]
        print(f"RESULT source={source} precision={d['precision']:.3f} recall={d['recall']:.3f} f1={d['f1']:.3f}")


if __name__ == "__main__":
    main()
