"""Sharding a plate over a Hydra multirun of ``livedead.predict`` and joining its parts with ``livedead.merge``."""

import numpy as np
import pytest

from livedead.errors import LivedeadError
from livedead.inference.evaluation import read_counts, write_counts
from livedead.plates.omezarr import open_zarr_plate, read_labels
from tests.helpers import assert_one_line_error, run_cli, run_subprocess


@pytest.mark.slow
def test_a_multirun_over_wells_merges_into_what_one_process_writes(tiny_ckpt, plate_path, tmp_path):
    common = [f"ckpt={tiny_ckpt}", f"input={plate_path}", "save=ome-zarr", "overlays=false", "progress=false"]
    one = run_cli("livedead.predict", *common, f"output={tmp_path / 'one'}", "wells=[W01,W03]")
    assert one.returncode == 0, one.stderr[-3000:]
    out = tmp_path / "sharded"
    jobs = ["wells=W01,W03", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "-m"]  # -m after the overrides
    proc = run_subprocess("-m", "livedead.predict", *common, f"output={out}", *jobs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (out / "parts").iterdir() if p.is_dir()) == ["0", "1"]
    assert [r["well"] for r in read_counts(out / "parts" / "1")] == ["W03"] * 3
    with pytest.raises(LivedeadError, match="expected an OME-Zarr HCS plate"):
        open_zarr_plate(out / "predictions.ome.zarr")  # no plate until the parts are merged
    merged = run_cli("livedead.merge", f"output={out}")
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert read_counts(out) == read_counts(tmp_path / "one")
    assert (out / "nuclei.csv").read_text() == (tmp_path / "one" / "nuclei.csv").read_text()  # each nucleus once
    assert (out / "predictions.ome.zarr" / "counts.csv").read_text() == (out / "counts.csv").read_text()
    assert open_zarr_plate(out / "predictions.ome.zarr").wells == ["W01", "W03"]
    for col in ("01", "03"):
        ours = read_labels(out / "predictions.ome.zarr" / "W" / col / "0", probs=False)
        theirs = read_labels(tmp_path / "one" / "predictions.ome.zarr" / "W" / col / "0", probs=False)
        np.testing.assert_array_equal(ours.nuclei, theirs.nuclei)
        assert ours.colours == theirs.colours


def test_parts_that_do_not_join_are_one_line(tmp_path):
    for part, well in (("0", "W01"), ("1", "W01")):
        (tmp_path / "parts" / part).mkdir(parents=True)
        write_counts([{"well": well, "time": 0, "live": 3, "dead": 1}], tmp_path / "parts" / part)
    assert_one_line_error(run_cli("livedead.merge", f"output={tmp_path}"), "well W01, time 0", "parts/0")
    (tmp_path / "parts" / "1" / "counts.csv").unlink()
    (tmp_path / "parts" / "2").mkdir()
    assert_one_line_error(run_cli("livedead.merge", f"output={tmp_path}"), "parts/1", "did not finish")
    assert_one_line_error(run_cli("livedead.merge", f"output={tmp_path / 'parts' / '0'}"), "found none")
    assert not (tmp_path / "counts.csv").exists()
