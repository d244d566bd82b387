"""The output guard of :mod:`livedead.files`: an output that would destroy an input, or that cannot be written,
is one line before any work (each command's own test is in ``tests/test_hostile.py``); and files written
whole or not at all."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from livedead.errors import LivedeadError
from livedead.files import (
    atomic_path,
    check_output,
    folder_lock,
    forget_written,
    interrupted_summary,
    is_disk_full,
    no_room,
    remove_stale_temporaries,
)


def test_an_output_that_is_an_input_is_refused_however_it_is_reached(tmp_path):
    plate = tmp_path / "plate.h5"
    plate.write_bytes(b"raw plate")
    (tmp_path / "link.h5").symlink_to(plate)
    os.link(plate, tmp_path / "hard.h5")
    for output in (plate, tmp_path / "link.h5", tmp_path / "hard.h5", tmp_path / "sub" / ".." / "plate.h5"):
        with pytest.raises(LivedeadError, match="is the input .*plate.h5; writing it would destroy the input"):
            check_output(output, [plate])
    assert plate.read_bytes() == b"raw plate"
    assert check_output(tmp_path / "tiles.h5", [plate]) == tmp_path / "tiles.h5"


def test_an_output_inside_an_input_folder_is_refused(tmp_path):
    fields = tmp_path / "fields"
    fields.mkdir()
    (tmp_path / "alias").symlink_to(fields)
    for output in (fields / "W01_t000.tif", tmp_path / "alias" / "plate.h5", fields / "deeper" / "plate.h5"):
        with pytest.raises(LivedeadError, match="config key 'output': .* lies inside the input folder"):
            check_output(output, [fields])
    assert not (fields / "deeper").exists(), "nothing is made for a refused output"
    with pytest.raises(LivedeadError, match="is the input"):
        check_output(tmp_path / "alias", [fields], folder=True)


def test_an_output_folder_that_holds_an_input_is_refused(tmp_path):
    """An export replaces its whole folder: over an earlier export holding its sample, it would delete it."""
    export = tmp_path / "export"
    (export / "data").mkdir(parents=True)
    sample = export / "data" / "plate.h5"
    sample.write_bytes(b"raw plate")
    for output in (export, tmp_path / "export" / "data" / ".."):
        with pytest.raises(LivedeadError, match="'output': the input .*plate.h5 lies inside the output folder"):
            check_output(output, [tmp_path / "model.ckpt", sample], folder=True)
    assert sample.read_bytes() == b"raw plate"
    assert check_output(export / "data", [tmp_path / "model.ckpt"], folder=True) == export / "data"
    assert check_output(tmp_path / "other", [sample], folder=True) == tmp_path / "other"


def test_a_folder_where_a_file_goes_and_a_file_where_a_folder_goes_are_refused(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(LivedeadError, match="config key 'output': expected a file to write, found the folder"):
        check_output(tmp_path)
    with pytest.raises(LivedeadError, match="config key 'out': expected a folder to write into, found the file"):
        check_output(tmp_path / "file.txt", key="out", folder=True)


def test_an_output_that_cannot_be_written_is_named_before_the_work(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(LivedeadError, match=r"cannot write .*file.txt/deep/out.h5: .*file.txt is a file, not a folder"):
        check_output(tmp_path / "file.txt" / "deep" / "out.h5")
    with pytest.raises(LivedeadError, match="cannot write /proc/livedead-nowhere/out.h5"):
        check_output("/proc/livedead-nowhere/out.h5")  # a file system that even root cannot write
    made = check_output(tmp_path / "new" / "deeper" / "out.h5")
    assert made.parent.is_dir(), "the folders are made"
    assert list(made.parent.iterdir()) == [], "and no probe is left"


def test_an_interrupted_command_says_what_it_kept(tmp_path):
    forget_written()
    assert interrupted_summary() == "nothing written"
    for name in ("a.png", "b.png"):
        with atomic_path(tmp_path / name) as tmp:
            tmp.write_bytes(b"whole")

    def half_written() -> None:
        with atomic_path(tmp_path / "c.png") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        half_written()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with atomic_path(scratch / "cover.png", record=False) as tmp:  # a temporary folder's file: not kept
        tmp.write_bytes(b"whole")
    assert (scratch / "cover.png").read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "scratch"], "the half file is removed"
    assert interrupted_summary() == f"kept 2 complete files in {tmp_path}; none half-written"
    forget_written()


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


def _lockable(folder: Path) -> bool:
    """Whether a new open of ``folder`` can take its flock lock now (then lets go of it)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_forked_child_does_not_keep_the_folder_locked(tmp_path):
    """A fork-started DataLoader worker that outlives a killed run must not hold its folder's lock."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    with folder_lock(tmp_path):
        child = os.fork()
        if child == 0:  # the child: say it is up, then live on until told to go
            os.write(ready_w, b"x")
            os.read(go_r, 1)
            os._exit(0)
        try:
            os.read(ready_r, 1)
            held = {os.path.realpath(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")}
            assert str(tmp_path.resolve()) not in held
            assert not _lockable(tmp_path)  # closing the child's copy left the parent's lock alone
        except BaseException:
            os.write(go_w, b"x")
            raise
    try:
        assert _lockable(tmp_path)  # the parent let go, and the living child holds nothing
    finally:
        os.write(go_w, b"x")
        os.waitpid(child, 0)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
