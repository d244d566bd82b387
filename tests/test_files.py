import os
import subprocess
import sys

import pytest

from livedead.errors import LivedeadError
from livedead.files import atomic_path, is_disk_full, no_room, remove_stale_temporaries


def test_atomic_path_renames_into_place_only_on_success(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def fail() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fail()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    with atomic_path(target) as tmp:
        assert tmp.name.startswith("table.tmp-")
        assert tmp.suffix == ".csv"  # tools still see the format
        tmp.write_text("new\n")
    assert target.read_text() == "new\n"


def test_a_scratch_file_is_always_removed(tmp_path):
    with atomic_path(tmp_path / "scratch.h5", keep=False) as tmp:
        tmp.write_bytes(b"x")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_naming_the_file(tmp_path):
    target = tmp_path / "big.h5"
    err = OSError(28, os.strerror(28))
    assert is_disk_full(err)
    assert no_room(err) == os.strerror(28)
    assert is_disk_full(RuntimeError("Can't write data (file write failed: errno = 28, ...)"))
    assert not is_disk_full(ValueError("something else"))

    def fill() -> None:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"x")
            raise err

    with pytest.raises(LivedeadError, match=r"big.h5: no room to write it .* previous big.h5 is kept"):
        fill()


def test_only_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"tiles.tmp-{dead.stdout.strip()}.h5"
    alive = tmp_path / f"tiles.tmp-{os.getpid()}.h5"
    other = tmp_path / "tiles.h5"
    for p in (stale, alive, other):
        p.write_bytes(b"x")
    remove_stale_temporaries(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])
    stale.write_bytes(b"x")
    remove_stale_temporaries(tmp_path)  # a folder: every temporary in it
    assert not stale.exists()
    assert alive.exists()
