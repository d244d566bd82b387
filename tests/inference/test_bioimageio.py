"""A trained network as a bioimage.io package: built and validated by bioimageio.spec itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bioimageio.spec import load_description

from livedead.errors import LivedeadError
from livedead.inference.bioimageio import ExportConfig, export_bioimageio
from livedead.inference.sliding_window import load_model
from tests.helpers import assert_one_line_error, run_cli


@pytest.mark.slow
def test_an_exported_model_passes_bioimageio_validation_and_reproduces_its_test_output(tiny_ckpt, tmp_path):
    out = tmp_path / "package"
    proc = run_cli("livedead.export", f"ckpt={tiny_ckpt}", f"output={out}", "test_size=64", "authors=[A Lab]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    descr = load_description(out / "rdf.yaml")
    assert descr.validation_summary.status in ("valid-format", "passed"), descr.validation_summary.format()
    assert [c for c in descr.outputs[0].axes[1].channel_names] == ["background", "dapi", "cy5"]
    pre = next(p for p in descr.inputs[0].preprocessing if p.id == "fixed_zero_mean_unit_variance")
    model = load_model(tiny_ckpt)
    assert pre.kwargs.mean == pytest.approx(model.normalization.mean)  # the training normalisation
    # what a consumer runs: the declared preprocessing, the TorchScript weights, the softmax
    raw = np.load(out / "test_input.npy")
    x = torch.from_numpy((raw - pre.kwargs.mean) / pre.kwargs.std).float()
    with torch.no_grad():
        probs = torch.jit.load(str(out / "weights_torchscript.pt"))(x).softmax(1).numpy()
    np.testing.assert_allclose(probs, np.load(out / "test_output.npy"), atol=1e-4)
    assert probs.shape == (1, 3, 64, 64)
    bigger = torch.randn(1, 1, 96, 128)  # the traced network takes any size its poolings divide
    with torch.no_grad():
        np.testing.assert_allclose(
            torch.jit.load(str(out / "weights_torchscript.pt"))(bigger).numpy(),
            model.net.to(memory_format=torch.contiguous_format)(bigger).numpy(),
            atol=1e-5,
        )


def test_exporting_what_is_not_a_livedead_checkpoint_is_one_line(tmp_path):
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, other)
    proc = run_cli("livedead.export", f"ckpt={other}", f"output={tmp_path / 'out'}")
    assert_one_line_error(proc, "other.ckpt", "livedead checkpoint")
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("months of work")
    proc = run_cli("livedead.export", f"ckpt={other}", f"output={tmp_path / 'mine'}")
    assert_one_line_error(proc, "mine", "config key 'output'", "expected a new folder or an earlier export")
    assert (tmp_path / "mine" / "thesis.tex").exists()


@pytest.mark.slow
def test_exporting_over_an_earlier_export_that_holds_an_input_is_refused(tiny_ckpt, plate_path, tmp_path):
    """The export replaces its whole folder: an input kept in an earlier export would be deleted with it."""
    out = tmp_path / "pkg"
    out.mkdir()
    (out / "rdf.yaml").write_text("format_version: 0.5.4\n")
    ckpt, sample = out / "best.ckpt", out / "plate.h5"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    sample.write_bytes(plate_path.read_bytes())
    with pytest.raises(LivedeadError, match="'output': the input .*best.ckpt lies inside the output folder"):
        export_bioimageio(ckpt, out, ExportConfig())
    with pytest.raises(LivedeadError, match="'output': the input .*plate.h5 lies inside the output folder"):
        export_bioimageio(tiny_ckpt, out, ExportConfig(sample=str(sample)))
    assert sorted(p.name for p in out.iterdir()) == ["best.ckpt", "plate.h5", "rdf.yaml"]


def test_bioimageio_core_runs_the_package(tiny_ckpt, tmp_path):
    """bioimageio.core's own model test (the optional bioimageio-core extra): both weight formats
    reproduce the test output, at batch sizes 1 and 2 and several input sizes."""
    core = pytest.importorskip("bioimageio.core")
    assert run_cli("livedead.export", f"ckpt={tiny_ckpt}", f"output={tmp_path / 'p'}", "test_size=64").returncode == 0
    summary = core.test_model(tmp_path / "p" / "rdf.yaml")
    assert summary.status == "passed", summary.format()
