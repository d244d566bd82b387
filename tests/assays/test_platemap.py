"""The plate map: every bad row is one line naming it; unmapped wells are kept as such."""

from __future__ import annotations

import pytest

from livedead.assays.platemap import dose_series, read_plate_map, write_plate_map
from livedead.errors import LivedeadError

HEADER = "well,condition,compound,concentration,unit,replicate,donor\n"
WELLS = ["W01", "W02", "W03"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("W01,c,none,0,uM,1,a\nW09,d,drug,1,uM,1,a\n", "row 3: unknown well 'W09'"),
        ("W01,c,none,0,uM,1,a\nW01,d,drug,1,uM,1,a\n", "row 3: well W01 mapped twice (first in row 2)"),
        (
            "W01,c,none,0,uM,1,a\nW02,d,drug,one,uM,1,a\n",
            "row 3: column 'concentration': expected a number, found 'one'",
        ),
    ],
)
def test_each_bad_row_is_one_line_naming_it(tmp_path, rows, message):
    path = tmp_path / "map.csv"
    path.write_text(HEADER + rows)
    with pytest.raises(LivedeadError, match="^" + str(path)) as err:
        read_plate_map(path, WELLS)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_round_trip_keeps_extra_columns_and_names_the_unmapped(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text(HEADER + "W01,control,none,0,uM,1,a\nW02,drug 1 uM,drug,1,uM,1,b\n")
    plate_map = read_plate_map(path, WELLS)
    assert plate_map.unmapped == ["W03"]
    assert plate_map.entries["W02"].extra == {"donor": "b"}
    assert plate_map.control(None) == "control"
    again = read_plate_map(write_plate_map(tmp_path / "again.csv", list(plate_map.entries.values())), WELLS)
    assert again.entries == plate_map.entries
    assert again.entries["W02"].extra == {"donor": "b"}


def test_a_missing_column_and_an_unknown_control_are_one_line(tmp_path):
    path = tmp_path / "map.csv"
    path.write_text("well,condition\nW01,a\n")
    with pytest.raises(LivedeadError, match="missing compound, concentration, unit, replicate"):
        read_plate_map(path, WELLS)
    series = read_plate_map(write_plate_map(path, dose_series(WELLS, [1.0], 2)), WELLS)
    with pytest.raises(LivedeadError, match="config key 'control'"):
        series.control("vehicle")


def test_an_extra_column_that_differs_splits_conditions_each_with_its_own_control(tmp_path):
    path = tmp_path / "map.csv"
    rows = ["W01,control,none,0,uM,1,MCF7,x", "W02,control,none,0,uM,1,HeLa,x", "W03,drug 1 uM,drug,1,uM,1,MCF7,x",
            "W04,drug 1 uM,drug,1,uM,2,MCF7,x", "W05,drug 1 uM,drug,1,uM,1,HeLa,x",
            "W06,drug 1 uM,drug,1,uM,1,A549,x"]  # fmt: skip
    path.write_text("well,condition,compound,concentration,unit,replicate,line,lab\n" + "\n".join(rows) + "\n")
    plate_map = read_plate_map(path, [f"W0{i}" for i in range(1, 7)])
    assert plate_map.keys() == ["line"]  # 'lab' is the same throughout: it groups nothing
    assert plate_map.conditions() == {
        "control [line=MCF7]": ["W01"],
        "control [line=HeLa]": ["W02"],
        "drug 1 uM [line=MCF7]": ["W03", "W04"],
        "drug 1 uM [line=HeLa]": ["W05"],
        "drug 1 uM [line=A549]": ["W06"],
    }
    assert plate_map.controls(None) == {
        "control [line=MCF7]": "control [line=MCF7]",
        "control [line=HeLa]": "control [line=HeLa]",
        "drug 1 uM [line=MCF7]": "control [line=MCF7]",
        "drug 1 uM [line=HeLa]": "control [line=HeLa]",
    }  # A549 has no control of its own: compared with none
    assert plate_map.series_of("W05") == "drug [line=HeLa]"
