"""The plate map (CSV): the condition, compound and concentration of each well; its one reader and writer.

Columns ``well``, ``condition``, ``compound``, ``concentration``, ``unit``, ``replicate`` (the
condition of concentration 0, or the one named by the caller, is the control); any other column
(an effector-to-target ratio, a cell line, a donor) is a grouping key: wells of one condition
with different values of it are different groups (``drug 1 uM [line=MCF7]``), each compared with
the control of the same values and fitted as its own dose series. Every bad row is one line
naming the file, the row and the value: an unknown well, a well mapped twice, a non-numeric or
negative concentration.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from livedead.errors import LivedeadError
from livedead.files import atomic_path

COLUMNS = ("well", "condition", "compound", "concentration", "unit", "replicate")


@dataclass(frozen=True)
class WellEntry:
    """One well of the map."""

    well: str
    condition: str
    compound: str
    concentration: float
    unit: str
    replicate: str
    extra: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class PlateMap:
    """The wells of a plate map by name, and the wells of the plate it leaves unmapped."""

    entries: dict[str, WellEntry]
    unmapped: list[str]
    path: Path | None = None

    def keys(self) -> list[str]:
        """The extra columns that tell wells apart (one with a single value throughout groups nothing)."""
        columns = dict.fromkeys(k for e in self.entries.values() for k in e.extra)
        return [k for k in columns if len({e.extra.get(k, "") for e in self.entries.values()}) > 1]

    def _suffix(self, entry: WellEntry) -> str:
        pairs = [f"{k}={entry.extra.get(k, '')}" for k in self.keys()]
        return f" [{', '.join(pairs)}]" if pairs else ""

    def group_of(self, well: str) -> str:
        """The group of a mapped well: its condition, with its grouping keys' values where they differ.

        >>> m = PlateMap({w: WellEntry(w, c, "d", 1.0, "uM", "1", {"line": l, "lab": "x"})
        ...               for w, c, l in [("A", "d 1", "MCF7"), ("B", "d 1", "HeLa")]}, [])
        >>> m.keys(), m.group_of("A")
        (['line'], 'd 1 [line=MCF7]')
        """
        return self.entries[well].condition + self._suffix(self.entries[well])

    def series_of(self, well: str) -> str:
        """The dose series of a mapped well: its compound, with its grouping keys' values where they differ."""
        return self.entries[well].compound + self._suffix(self.entries[well])

    def conditions(self) -> dict[str, list[str]]:
        """Each group's wells (:meth:`group_of`), in the map's order."""
        out: dict[str, list[str]] = {}
        for well in self.entries:
            out.setdefault(self.group_of(well), []).append(well)
        return out

    def controls(self, name: str | None) -> dict[str, str]:
        """Each group's control group: the control condition (:meth:`control`) with the same grouping keys'
        values; a group with no such control is left out (it is compared with none)."""
        control = self.control(name)
        keys = self.keys()

        def values(e: WellEntry) -> tuple[str, ...]:
            return tuple(e.extra.get(k, "") for k in keys)

        reference = {values(e): self.group_of(e.well) for e in self.entries.values() if e.condition == control}
        return {self.group_of(w): reference[values(e)] for w, e in self.entries.items() if values(e) in reference}

    def control(self, name: str | None) -> str:
        """The control condition: ``name``, else the one of concentration 0 (one line if none or several)."""
        conditions = dict.fromkeys(e.condition for e in self.entries.values())
        if name is not None:
            if name not in conditions:
                raise LivedeadError(
                    f"config key 'control': expected a condition of the plate map ({', '.join(conditions)}), "
                    f"found {name!r}"
                )
            return name
        zero = sorted({e.condition for e in self.entries.values() if e.concentration == 0})
        if len(zero) != 1:
            raise LivedeadError(
                f"{self.path}: expected one condition of concentration 0 as the control, found {zero or 'none'}; "
                "name it with control=<condition>"
            )
        return zero[0]


def read_plate_map(path: str | Path, wells: Sequence[str]) -> PlateMap:
    """Read and check a plate map against the plate's ``wells``.

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "map.csv"
    >>> header = "well,condition,compound,concentration,unit,replicate\\n"
    >>> _ = p.write_text(header + "W01,ctrl,none,0,uM,1\\nW02,drug 1uM,drug,1,uM,1\\n")
    >>> m = read_plate_map(p, ["W01", "W02", "W03"])
    >>> m.entries["W02"].concentration, m.unmapped
    (1.0, ['W03'])
    """
    path = Path(path)
    if not path.is_file():
        raise LivedeadError(f"config key 'plate_map': expected a CSV file, found no file at {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise LivedeadError(
                f"{path}: expected the columns {', '.join(COLUMNS)}, found {', '.join(header)} "
                f"(missing {', '.join(missing)})"
            )
        entries: dict[str, WellEntry] = {}
        first_row: dict[str, int] = {}
        known = set(wells)
        for n, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path}: row {n}"
            well = row["well"]
            if well not in known:
                raise LivedeadError(f"{where}: unknown well {well!r} (the plate has {', '.join(wells)})")
            if well in entries:
                raise LivedeadError(f"{where}: well {well} mapped twice (first in row {first_row[well]})")
            try:
                conc = float(row["concentration"])
            except ValueError:
                raise LivedeadError(
                    f"{where}: column 'concentration': expected a number, found {row['concentration']!r}"
                ) from None
            if not conc >= 0:
                raise LivedeadError(f"{where}: column 'concentration': expected >= 0, found {row['concentration']!r}")
            if not row["condition"]:
                raise LivedeadError(f"{where}: column 'condition': expected a name, found an empty cell")
            extra = {k: v for k, v in row.items() if k not in COLUMNS}
            entries[well] = WellEntry(
                well, row["condition"], row["compound"], conc, row["unit"], row["replicate"], extra
            )
            first_row[well] = n
    if not entries:
        raise LivedeadError(f"{path}: expected at least one well, found an empty plate map")
    return PlateMap(entries, [w for w in wells if w not in entries], path)


def write_plate_map(path: str | Path, entries: Sequence[WellEntry]) -> Path:
    """A plate map CSV of ``entries`` (their extra columns after the standard ones)."""
    path = Path(path)
    extra = list(dict.fromkeys(k for e in entries for k in e.extra))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([*COLUMNS, *extra])
        for e in entries:
            conc = f"{e.concentration:g}"
            writer.writerow(
                [e.well, e.condition, e.compound, conc, e.unit, e.replicate, *(e.extra.get(k, "") for k in extra)]
            )
    return path


def dose_series(
    wells: Sequence[str], concentrations: Sequence[float], replicates: int, compound: str = "drug", unit: str = "uM"
) -> list[WellEntry]:
    """A dose series laid out well after well: each concentration ``replicates`` times, then the vehicle
    control in the wells left (concentration 0), as a plate is often pipetted.

    >>> [(e.well, e.condition) for e in dose_series(["A", "B", "C"], [1.0], 2)]
    [('A', 'drug 1 uM'), ('B', 'drug 1 uM'), ('C', 'control')]
    """
    out = []
    for i, well in enumerate(wells):
        k = i // replicates
        if k < len(concentrations):
            c = concentrations[k]
            out.append(WellEntry(well, f"{compound} {c:g} {unit}", compound, c, unit, str(i % replicates + 1)))
        else:
            rep = i - len(concentrations) * replicates + 1
            out.append(WellEntry(well, "control", "vehicle", 0.0, unit, str(rep)))
    return out
