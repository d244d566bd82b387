"""Labels from stains on a real killing assay, scored against its hand-drawn MCF-7 nuclei.

The MCF-7 / NK killing assay (``../shared/real/mcf7-killing``, CC-BY-NC-4.0, used by path, never
copied): for each of the 62 fields, the Hoechst and propidium-iodide channels are labelled as
``prepare`` labels them and counted as ``predict`` counts the stain reference; each hand-drawn
MCF-7 nucleus is then found (at least one counted centroid inside it) or missed, and split when
two or more counted centroids fall inside it. The NK nuclei are not drawn, so precision is not
measured here.

``python benchmarks/real_labels.py [--assay PATH]``; prints one RESULT line.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from livedead.nuclei.counting import stain_reference, truth_coverage  # noqa: E402
from livedead.nuclei.labels import labels_from_stains  # noqa: E402
from livedead.nuclei.size import image_sizes  # noqa: E402

ASSAY = ROOT.parent / "shared" / "real" / "mcf7-killing"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assay", type=Path, default=ASSAY)
    args = parser.parse_args()
    if not (args.assay / "fields.csv").exists():
        sys.exit(f"benchmarks/real_labels.py: {args.assay}/fields.csv: expected the MCF-7 killing assay, not found")
    with open(args.assay / "fields.csv") as f:
        rows = list(csv.DictReader(f))
    total = found = split = 0
    counted = dead = 0
    diameters, largest, recalls = [], [], []
    start = time.perf_counter()
    for row in rows:
        image = tifffile.imread(args.assay / "plate" / f"{row['id']}_t000.tif")
        hand = tifffile.imread(args.assay / "masks" / f"{row['id']}.tif").astype(np.int64)
        hoechst, pi = image[1], image[2]
        sizes = image_sizes(hoechst, pi)
        diameters.append(sizes.typical if sizes else np.nan)
        largest.append(sizes.largest if sizes else np.nan)
        labels = labels_from_stains(hoechst, pi, sizes=sizes)
        nuclei = stain_reference(labels, sizes)
        scores = truth_coverage(nuclei, hand)
        total, found, split = total + scores["true"], found + scores["found"], split + scores["split"]
        recalls.append(scores["found"] / scores["true"] if scores["true"] else 1.0)
        counted += len(nuclei.dead)
        dead += int(nuclei.dead.sum())
    seconds = time.perf_counter() - start
    d = np.array(diameters, float)
    print(f"fields: {len(rows)}, hand-drawn MCF-7 nuclei: {total}, labelled and counted in {seconds:.1f} s")
    big = np.array(largest, float)
    for name, values in (("typical diameter", d), ("largest population's diameter", big)):
        low, mid, high = np.nanmin(values), np.nanmedian(values), np.nanmax(values)
        print(f"{name} per image (px): median {mid:.1f}, range {low:.1f}-{high:.1f}")
    print(f"counted nuclei: {counted} ({dead} dead); worst field recall {min(recalls):.2f}")
    print(
        f"RESULT mcf7_recall={found / total:.3f} mcf7_split={split / total:.3f} "
        f"worst_field_recall={min(recalls):.2f} counted={counted} dead={dead}"
    )


if __name__ == "__main__":
    main()
