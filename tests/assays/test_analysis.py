"""The assay step on a small plate of known answer: tracks, times of death and the EC50 recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from livedead.assays.analysis import AssayConfig, run_assay
from livedead.assays.figures import write_html
from livedead.assays.platemap import WellEntry, write_plate_map
from livedead.assays.truth import score_tracks, true_plate
from livedead.inference.evaluation import read_counts
from livedead.plates.synthetic import well_names
from tests.assays.conftest import DOSE
from tests.helpers import assert_one_line_error, run_cli


@pytest.mark.slow
def test_the_true_counts_give_the_plate_s_answer(dose_plate, truth_predictions, tmp_path):
    """From the saved class maps (nuclei re-derived) to tracks, deaths and the EC50, looser than the benchmark."""
    plate, plate_map = dose_plate
    cfg = AssayConfig(
        predictions=str(truth_predictions), output=str(tmp_path), plate_map=str(plate_map), progress=False
    )
    result = run_assay(cfg, read_counts(truth_predictions))
    score = score_tracks(result.tracks, result.fates, plate, well_names(DOSE.wells))
    assert score.link_recall >= 0.9
    assert score.death_time_mae <= 1
    assert score.deaths_found >= 0.8
    _, _, truth = true_plate(plate)
    (fit,) = result.dose_response
    assert fit.status == "ok"
    assert abs(fit.ec50 - truth.ec50) / truth.ec50 < 0.3
    assert fit.ec50_lower < truth.ec50 < fit.ec50_upper
    tracks = pd.read_csv(tmp_path / "tracks.csv")
    assert list(tracks.columns) == ["well", "track", "time", "time_h", "y", "x", "state", "observed"]
    assert set(tracks["state"]) == {"live", "dead"}
    conditions = pd.read_csv(tmp_path / "conditions.csv")
    assert conditions.loc[conditions["condition"] == "control", "logrank_p_vs_control"].item() == "control"
    top = conditions[conditions["condition"] == "drug 10 uM"]
    assert float(top["logrank_p_vs_control"].item()) < 0.01
    html = (tmp_path / "assay.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert 'src="http' not in html
    assert {p.name for p in tmp_path.glob("*.png")} == {"wells.png", "conditions.png", "dose_response.png"}


@pytest.mark.slow
def test_the_command_runs_from_a_prediction_folder(dose_plate, truth_predictions, tmp_path):
    proc = run_cli("livedead.assay", f"predictions={truth_predictions}", f"plate_map={dose_plate[1]}",
                   f"output={tmp_path / 'assay'}", "progress=false")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "EC50" in proc.stderr
    assert pd.read_csv(tmp_path / "assay" / "dose_response.csv")["status"].tolist() == ["ok"]


def test_a_bad_plate_map_row_is_one_line(truth_predictions, tmp_path):
    bad = tmp_path / "map.csv"
    bad.write_text("well,condition,compound,concentration,unit,replicate\nW01,a,drug,1,uM,1\nW01,a,drug,2,uM,2\n")
    proc = run_cli("livedead.assay", f"predictions={truth_predictions}", f"plate_map={bad}", f"output={tmp_path / 'o'}")
    assert_one_line_error(proc, "row 3", "W01 mapped twice")
    assert proc.returncode == 2


def test_the_html_page_embeds_its_figures(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    page = write_html("T", [("figure", png), ("table", pd.DataFrame({"a": [1]})), ("text", "<b>")])
    assert "data:image/png;base64,iVBORw0KGgo=" in page
    assert "&lt;b&gt;" in page
    assert "<table" in page


@pytest.mark.parametrize("key", ["tracker=nope", "max_distance=0"])
def test_bad_settings_are_one_line(truth_predictions, tmp_path, key):
    proc = run_cli("livedead.assay", f"predictions={truth_predictions}", f"output={tmp_path}", key)
    assert_one_line_error(proc, key.split("=")[0])


@pytest.mark.slow
def test_an_extra_plate_map_column_groups_conditions_and_dose_series(tmp_path, capsys):
    """Two cell lines (the extra column ``line``): each drug condition is tested against its own line's control,
    and each line is its own dose series; an unmapped well is shown as such; progress is shown."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(6) * 20.0 + 20, np.arange(5) * 20.0 + 20), -1).reshape(-1, 2)
    lines, doses = {"MCF7": 0.1, "HeLa": 0.6}, [0.0, 1.0, 3.0]  # HeLa dies faster
    entries, rows, parts = [], [], []
    for w, (line, conc) in enumerate((line, c) for line in lines for c in doses):
        well = f"W{w + 1:02d}"
        name = "control" if conc == 0 else f"drug {conc:g} uM"
        entries.append(WellEntry(well, name, "vehicle" if conc == 0 else "drug", conc, "uM", "1", {"line": line}))
        death = np.where(rng.random(len(grid)) < (lines[line] * conc / 3 + 0.02) * 4, rng.integers(1, 5, len(grid)), 99)
        for t in range(5):
            dead = death <= t
            rows.append({"well": well, "time": t, "time_h": t * 0.5, "live": int((~dead).sum()),
                         "dead": int(dead.sum()), "total": len(grid)})  # fmt: skip
            parts.append(pd.DataFrame({"well": well, "time": t, "time_h": t * 0.5, "y": grid[:, 0] + t,
                                       "x": grid[:, 1], "dead": dead}))  # fmt: skip
    rows += [{**r, "well": "W07"} for r in rows[:5]]  # a well the map leaves out
    parts += [p.assign(well="W07") for p in parts[:5]]
    plate_map = write_plate_map(tmp_path / "map.csv", entries)
    cfg = AssayConfig(predictions=str(tmp_path), output=str(tmp_path / "out"), plate_map=str(plate_map))
    result = run_assay(cfg, rows, pd.concat(parts, ignore_index=True))
    err = capsys.readouterr().err
    assert "wells not in the plate map, shown as 'unmapped': W07" in err
    assert "tracking" in err  # the progress bar
    conditions = result.conditions.set_index("condition")
    assert list(conditions.index) == [f"{c} [line={line}]" for line in lines for c in
                                      ("control", "drug 1 uM", "drug 3 uM")] + ["unmapped"]  # fmt: skip
    assert conditions.loc["unmapped", "cells"] == len(grid)
    assert conditions.loc["control [line=HeLa]", "logrank_p_vs_control"] == "control"
    assert float(conditions.loc["drug 3 uM [line=HeLa]", "logrank_p_vs_control"]) < 1e-6
    assert {f.compound for f in result.dose_response} == {"drug [line=MCF7]", "drug [line=HeLa]"}
    assert all(f.status == "fewer than 4 concentrations" for f in result.dose_response)
