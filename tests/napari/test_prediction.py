"""The widget's work without Qt: a bioimage.io package predicts and counts as its checkpoint does."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import yaml

from livedead.errors import LivedeadError
from livedead.inference.bioimageio import ExportConfig, export_bioimageio
from livedead.napari import prediction
from livedead.plates.sources import open_plate


@pytest.mark.slow
def test_an_exported_package_counts_as_its_checkpoint_and_an_older_one_is_refused(tiny_ckpt, plate_path, tmp_path):
    package = export_bioimageio(tiny_ckpt, tmp_path / "package", ExportConfig(test_size=64)).parent
    _, images = open_plate(plate_path)
    image = next(images).channels["brightfield"]
    found = {}
    for source in (tiny_ckpt, package, package / "rdf.yaml"):
        model, device = prediction.load(str(source), "cpu")
        found[source] = prediction.predict_plane(model, device, image)
    ckpt_model, _ = prediction.load(str(tiny_ckpt), "cpu")
    assert model.foreground_threshold == ckpt_model.foreground_threshold is not None  # the record travelled
    for nuclei in found.values():
        np.testing.assert_array_equal(nuclei.instances, found[tiny_ckpt].instances)
        np.testing.assert_array_equal(nuclei.dead, found[tiny_ckpt].dead)
    assert found[tiny_ckpt].counts()["total"] > 0
    older = tmp_path / "older"  # a package without livedead's record: exported before it carried one
    shutil.copytree(package, older)
    rdf = yaml.safe_load((older / "rdf.yaml").read_text())
    rdf.pop("config", None)
    (older / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    with pytest.raises(LivedeadError, match="export the checkpoint again"):
        prediction.load(str(older))
    with pytest.raises(LivedeadError, match="expected a checkpoint"):
        prediction.load(str(tmp_path / "nothing.ckpt"))
