"""What a hostile new user tried on every command (issue 23): nothing lost, nothing silently wrong, one line each.

Outputs that are inputs, outputs that cannot be written, pixels training cannot read, ``channels``
on a plate that names its own, the order of predict's files, Ctrl-C and ``kill -9`` of prepare
with its workers, two trainings in one folder, damaged checkpoints and bad ``resume=``, the run's
log and Ctrl-C of a training: each through the real command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from livedead.files import folder_lock
from livedead.plates.platefile import PLATE_CHANNELS, PlateAttrs, write_plate
from livedead.plates.synthetic import FieldGrid, write_fields
from tests.helpers import ROOT, assert_one_line_error, run_cli
from tests.test_unattended import TINY

UNWRITABLE = "/proc/livedead-nowhere"
"""A folder that cannot be made, even by root (the tests may run as root, to whom permissions are no bar)."""


def copy_plate(plate_path: Path, path: Path, dtype: type = np.uint16, wells: int = 3, scale: int = 1) -> Path:
    """The session plate's images as a plate of another pixel type (or ``scale`` times larger each way)."""
    with h5py.File(plate_path) as f:
        images = np.tile(f["images"][:wells], (1, 1, 1, scale, scale)).astype(dtype)
    with write_plate(path, PlateAttrs([f"W{i + 1:02d}" for i in range(wells)]), images.shape, images.dtype,
                     PLATE_CHANNELS) as plate:  # fmt: skip
        for w in range(images.shape[0]):
            for t in range(images.shape[1]):
                plate.write_image(w, t, images[w, t])
    return path


def tiff_folder(plate_path: Path, folder: Path, dtype: type = np.uint16) -> Path:
    """Two wells of the session plate, one time point, as a folder of TIFFs (``A1_t000.tif``, ``A2_t000.tif``)."""
    folder.mkdir()
    with h5py.File(plate_path) as f:
        for w in (0, 1):
            tifffile.imwrite(folder / f"A{w + 1}_t000.tif", f["images"][w, 0].astype(dtype), photometric="minisblack")
    return folder


# --- outputs that are inputs ------------------------------------------------------------------


def test_prepare_refuses_to_write_over_its_input(plate_path, tmp_path):
    plate = tmp_path / "same.h5"
    plate.write_bytes(plate_path.read_bytes())
    for output in (plate, tmp_path / "sub" / ".." / "same.h5"):
        proc = run_cli("livedead.prepare", f"input={plate}", f"output={output}", "progress=false")
        assert_one_line_error(proc, "config key 'output'", "is the input", "same.h5")
    (tmp_path / "alias.h5").symlink_to(plate)
    proc = run_cli("livedead.prepare", f"input={plate}", f"output={tmp_path / 'alias.h5'}", "progress=false")
    assert_one_line_error(proc, "alias.h5 is the input")
    assert plate.read_bytes() == plate_path.read_bytes(), "the raw plate is untouched"
    named = tmp_path / "t.all.h5"  # the name of the first pass that keep_intermediate writes beside t.h5
    plate.rename(named)
    proc = run_cli("livedead.prepare", f"input={named}", f"output={tmp_path / 't.h5'}", "keep_intermediate=true")
    assert_one_line_error(proc, "t.all.h5 is the input")
    assert named.read_bytes() == plate_path.read_bytes()
    folder = tiff_folder(plate_path, tmp_path / "tiffs")
    before = (folder / "A1_t000.tif").read_bytes()
    proc = run_cli("livedead.prepare", f"input={folder}", f"output={folder / 'A1_t000.tif'}", "progress=false")
    assert_one_line_error(proc, "config key 'output'", "A1_t000.tif lies inside the input folder")
    proc = run_cli("livedead.prepare", f"input={folder}", f"output={folder / 'tiles.h5'}", "progress=false")
    assert_one_line_error(proc, "lies inside the input folder", "tiffs")
    assert (folder / "A1_t000.tif").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["A1_t000.tif", "A2_t000.tif"]


def test_stitch_refuses_an_output_inside_its_fields_folder(plate_path, tmp_path):
    fields = tmp_path / "fields"
    write_fields(plate_path, fields, FieldGrid(rows=2, cols=2, jitter=2))
    before = {p.name: p.read_bytes() for p in fields.iterdir()}
    args = [f"input={fields}", "rows=2", "cols=2", "progress=false"]
    for figure in ("true", "false"):  # the seams figure would go beside the plate, into the folder too
        proc = run_cli("livedead.stitch", *args, f"output={fields / 'W01_f000_t000.tif'}", f"figure={figure}")
        assert_one_line_error(proc, "config key 'output'", "fields", "input")
    assert {p.name: p.read_bytes() for p in fields.iterdir()} == before, "no field overwritten, no _seams.png"


def test_synthetic_fields_may_not_be_the_plate(tmp_path):
    plate = tmp_path / "plate.h5"
    proc = run_cli("livedead.synthetic", f"output={plate}", f"fields={plate}", "wells=1", "timepoints=1",
                   "height=128", "width=128", "progress=false")  # fmt: skip
    assert_one_line_error(proc, "config key 'fields'", "is the input")
    assert not plate.exists(), "refused before the plate is made"


def test_predict_and_export_refuse_to_write_over_their_inputs(tiny_ckpt, plate_path, tmp_path):
    folder = tiff_folder(plate_path, tmp_path / "tiffs")
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={folder}", f"output={folder}", "progress=false")
    assert_one_line_error(proc, "config key 'output'", "is the input")
    assert sorted(p.name for p in folder.iterdir()) == ["A1_t000.tif", "A2_t000.tif"]
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(tiny_ckpt.read_bytes())
    for module, args in (("livedead.predict", [f"input={folder}"]), ("livedead.export", [])):
        proc = run_cli(module, f"ckpt={ckpt}", *args, f"output={ckpt}")
        assert_one_line_error(proc, "config key 'output'", "last.ckpt is the input")
    assert ckpt.read_bytes() == tiny_ckpt.read_bytes()


def test_video_refuses_to_replace_an_event_file(tmp_path):
    events = tmp_path / "run" / "tb" / "events.out.tfevents.1.host.1.0"
    events.parent.mkdir(parents=True)
    events.write_bytes(b"events")
    proc = run_cli("livedead.video", f"run={tmp_path / 'run'}", f"output={events}")
    assert_one_line_error(proc, "config key 'output'", "is the input")
    assert events.read_bytes() == b"events"


# --- outputs that cannot be written, or are folders -------------------------------------------


@pytest.mark.parametrize("where", ["under a file", "unwritable", "a folder"])
def test_an_output_that_cannot_be_written_is_one_line_before_the_work(where, plate_path, tiny_ckpt, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    fields = tmp_path / "fields"
    write_fields(plate_path, fields, FieldGrid(rows=2, cols=2, jitter=2))
    commands = {
        "livedead.prepare": [f"input={plate_path}", "progress=false"],
        "livedead.stitch": [f"input={fields}", "rows=2", "cols=2", "progress=false"],
        "livedead.synthetic": ["wells=1", "timepoints=1", "height=128", "width=128", "progress=false"],
        "livedead.predict": [f"ckpt={tiny_ckpt}", f"input={plate_path}", "progress=false"],
        "livedead.export": [f"ckpt={tiny_ckpt}", "test_size=64"],
    }
    folders = {"livedead.predict", "livedead.export"}  # their output is a folder: for them an existing file
    for module, args in commands.items():
        output = {
            "under a file": blocker / "out" / "x.h5",
            "unwritable": Path(UNWRITABLE) / "x.h5",
            "a folder": blocker if module in folders else tmp_path,
        }[where]
        proc = run_cli(module, *args, f"output={output}")
        expected = {"under a file": "a-file is a file, not a folder", "unwritable": f"cannot write {UNWRITABLE}/x"}
        expected["a folder"] = "expected a folder to write into" if module in folders else "expected a file to write"
        assert_one_line_error(proc, "config key 'output'", expected[where])
        assert not [p for p in tmp_path.iterdir() if p.name not in ("a-file", "fields")], module
    proc = run_cli("livedead.synthetic", *commands["livedead.synthetic"], f"output={tmp_path / 'p.h5'}",
                   f"fields={blocker}")  # fmt: skip
    assert_one_line_error(proc, "config key 'fields'", "expected a folder to write into")
    assert not (tmp_path / "p.h5").exists(), "refused before the plate is made"


# --- pixels and channels ------------------------------------------------------------------------


def test_prepare_refuses_pixels_that_training_cannot_read(plate_path, tmp_path):
    plate = copy_plate(plate_path, tmp_path / "int32.h5", np.int32)
    proc = run_cli("livedead.prepare", f"input={plate}", f"output={tmp_path / 'tiles.h5'}", "progress=false")
    assert_one_line_error(proc, "int32.h5", "expected uint8, uint16 or float32 pixels", "found int32")
    assert not (tmp_path / "tiles.h5").exists()


def test_nan_pixels_are_one_line_naming_the_image(plate_path, tiny_ckpt, tmp_path):
    plate = copy_plate(plate_path, tmp_path / "nan.h5", np.float32)
    with h5py.File(plate, "r+") as f:  # one NaN in the transmitted light of every image
        images = f["images"][:]
        images[:, :, 0, 5, 7] = np.nan
        f["images"][:] = images
    proc = run_cli("livedead.prepare", f"input={plate}", f"output={tmp_path / 'tiles.h5'}", "progress=false")
    assert_one_line_error(proc, "nan.h5: image (well ", "channel 'brightfield'", "1 NaN or infinite")
    assert not (tmp_path / "tiles.h5").exists()
    folder = tiff_folder(plate_path, tmp_path / "tiffs", np.float32)
    image = tifffile.imread(folder / "A2_t000.tif")
    image[0, 0, :3] = np.inf
    tifffile.imwrite(folder / "A2_t000.tif", image, photometric="minisblack")
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={folder}", f"output={tmp_path / 'pred'}",
                   "progress=false", "overlays=false", "save=none")  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert "A2_t000: failed" in line
    assert "A2_t000.tif: channel 'brightfield': expected finite pixels, found 3 NaN or infinite" in line


@pytest.mark.slow
def test_a_tiff_image_of_another_pixel_type_than_the_first_is_one_line_naming_it(plate_path, tmp_path):
    """The plate's pixel type is the first image's; a later int32 image would be cast silently into its buffers."""
    folder = tiff_folder(plate_path, tmp_path / "tiffs")
    image = tifffile.imread(folder / "A2_t000.tif").astype(np.int32)
    tifffile.imwrite(folder / "A2_t000.tif", image, photometric="minisblack")
    proc = run_cli("livedead.prepare", f"input={folder}", f"output={tmp_path / 'tiles.h5'}", "progress=false")
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc, "A2_t000.tif: expected uint16 pixels", "found int32")
    assert not (tmp_path / "tiles.h5").exists()


@pytest.mark.slow
def test_channels_of_a_plate_that_names_its_own_are_honoured_or_refused(plate_path, tmp_path):
    out = tmp_path / "tiles.h5"
    for channels in ("[brightfield,hoechst]", "[hoechst,brightfield,draq7]"):
        proc = run_cli("livedead.prepare", f"input={plate_path}", f"output={out}", f"channels={channels}")
        assert_one_line_error(proc, "config key 'channels'", "['brightfield', 'hoechst', 'draq7']")
    assert not out.exists()
    same = run_cli("livedead.prepare", f"input={plate_path}", f"output={out}", "channels=[brightfield,hoechst,draq7]",
                   "progress=false", "chunk=50")  # fmt: skip
    assert same.returncode == 0, same.stderr


# --- predict's own settings and files -----------------------------------------------------------


def test_predict_settings_that_would_fail_every_image_are_one_line(tiny_ckpt, plate_path, tmp_path):
    args = [f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={tmp_path / 'pred'}", "progress=false"]
    assert_one_line_error(run_cli("livedead.predict", *args, "tile=0"), "config key 'tile'", "expected >= 1, found 0")
    assert_one_line_error(run_cli("livedead.predict", *args, "device=gpu7"), "config key 'device'", "'gpu7'")
    if not torch.cuda.is_available():
        assert_one_line_error(run_cli("livedead.predict", *args, "device=cuda"), "config key 'device'", "'cuda'")
    assert not (tmp_path / "pred").exists()


@pytest.mark.slow
def test_predict_writes_counts_csv_after_the_figures(tiny_ckpt, plate_path, tmp_path):
    """A figure that cannot be written (here a folder holds its name) leaves no table that looks complete."""
    folder = tiff_folder(plate_path, tmp_path / "tiffs")
    out = tmp_path / "pred"
    (out / "counts_over_time.png").mkdir(parents=True)
    (out / "counts.csv").write_text("well,time\nW09,0\n")  # an earlier run's tables
    (out / "nuclei.csv").write_text("well,time,label,y,x,area_px,state\nW09,0,1,5.0,5.0,80,live\n")
    proc = run_cli("livedead.predict", f"ckpt={tiny_ckpt}", f"input={folder}", f"output={out}", "progress=false",
                   "overlays=false", "save=none")  # fmt: skip
    assert_one_line_error(proc, "counts_over_time.png")
    assert not (out / "counts.csv").exists()
    assert not (out / "nuclei.csv").exists()


# --- the command line ---------------------------------------------------------------------------


def test_a_path_hydra_cannot_parse_gets_the_hint_to_quote_it(tmp_path):
    proc = run_cli("livedead.plot_schedules", f"output={tmp_path}/a=b.png")
    assert_one_line_error(proc, f"cannot parse the override 'output={tmp_path}/a=b.png'", "quote", "output='")


# --- signals: Ctrl-C and kill -9 of prepare and its workers -------------------------------------


def children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (a zombie that nobody reaps has ended)."""
    out = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.add(pid)
    return out


def busy_prepare(plate_path: Path, tmp_path: Path, **popen) -> tuple[subprocess.Popen, set[int], Path]:
    """A real prepare with 2 workers on a plate large enough to keep them labelling for seconds; returns it
    once its workers run, with their pids."""
    plate = copy_plate(plate_path, tmp_path / "big.h5", wells=2, scale=4)
    out = tmp_path / "out" / "tiles.h5"
    args = [sys.executable, "-m", "livedead.prepare", f"input={plate}", f"output={out}", "workers=2", "progress=false"]
    proc = subprocess.Popen(args, cwd=ROOT, **popen)
    deadline = time.time() + 60
    while len(children(proc.pid)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    workers = children(proc.pid)
    assert len(workers) == 2, "prepare started its 2 workers"
    assert proc.poll() is None
    return proc, workers, out


def kill_survivors(pids: set[int]) -> None:
    for pid in alive(pids):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_kill_9_of_prepare_takes_its_workers_with_it(plate_path, tmp_path):
    proc, workers, _ = busy_prepare(plate_path, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        deadline = time.time() + 5
        while alive(workers) and time.time() < deadline:
            time.sleep(0.02)
        assert not alive(workers), "no worker outlives its prepare"
    finally:
        kill_survivors(workers)


@pytest.mark.slow
def test_ctrl_c_stops_prepare_and_its_workers_in_one_line(plate_path, tmp_path):
    """SIGINT to the process group, as a terminal's Ctrl-C sends it: exit 130, one line, no tile file."""
    proc, workers, out = busy_prepare(
        plate_path, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        time.sleep(0.2)  # the workers are labelling
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 130, stderr
        assert stderr.splitlines() == ["livedead.prepare: interrupted; nothing written"], stderr
        assert not list(out.parent.iterdir()), "no tile file, no temporary"
        deadline = time.time() + 5
        while alive(workers) and time.time() < deadline:
            time.sleep(0.02)
        assert not alive(workers)
    finally:
        kill_survivors(workers)


@pytest.mark.slow
def test_ctrl_c_stops_predict_in_one_line_leaving_no_counts_table(plate_path, tiny_ckpt, tmp_path):
    """SIGINT to the process group once the first image's files are written: exit 130, one line saying what
    was kept, and no counts.csv that would look like the whole plate's."""
    plate = copy_plate(plate_path, tmp_path / "big.h5", wells=3, scale=3)
    out = tmp_path / "pred"
    args = [sys.executable, "-m", "livedead.predict", f"ckpt={tiny_ckpt}", f"input={plate}", f"output={out}",
            "progress=false", "save=none"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    stderr = interrupt_once("*_overlay.png", out, proc)  # the first image is done, the next ones are being predicted
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    kept = len(list(out.iterdir()))
    plural = "s" if kept > 1 else ""
    assert stderr.splitlines() == [f"livedead.predict: interrupted; kept {kept} complete file{plural} in {out}; "
                                   "none half-written"], stderr  # fmt: skip
    assert not (out / "counts.csv").exists(), "no table that looks complete"
    assert not [p for p in out.iterdir() if ".tmp-" in p.name], "no half-written file"


@pytest.mark.slow
def test_ctrl_c_stops_stitch_in_one_line_leaving_no_plate(plate_path, tmp_path):
    """SIGINT to the process group while the stitched plate is being written: exit 130, one line, and
    neither the plate nor its temporary is left."""
    fields = tmp_path / "fields"
    write_fields(copy_plate(plate_path, tmp_path / "big.h5", scale=4), fields, FieldGrid(rows=2, cols=2, jitter=2))
    out = tmp_path / "out"
    args = [sys.executable, "-m", "livedead.stitch", f"input={fields}", f"output={out / 'stitched.h5'}", "rows=2",
            "cols=2", "progress=false"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not list(out.glob("stitched.tmp-*.h5")):  # registered: the mosaics are being written
            assert proc.poll() is None, "stitch ended before it wrote its plate"
            assert time.time() < deadline, "stitch never started writing its plate"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert stderr.splitlines() == ["livedead.stitch: interrupted; nothing written"], stderr
    assert not list(out.iterdir()), "no plate, no temporary, no seams figure"


# --- training: one run a folder, damaged checkpoints, resume= of no run, the log, Ctrl-C ---------


def training(tiles_path: Path, cwd: Path, *args: str, **popen) -> subprocess.Popen:
    """A real training process of many tiny epochs, with a step checkpoint every 2 steps (stopped by the test)."""
    argv = [sys.executable, str(ROOT / "train.py"), "data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=10",
            "trainer.max_epochs=100", "callbacks.step_checkpoint.every_n_train_steps=2", *args]  # fmt: skip
    return subprocess.Popen(argv, cwd=cwd, text=True, **popen)


def wait_for(pattern: str, folder: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not [p for p in folder.glob(pattern) if ".tmp-" not in p.name]:
        assert proc.poll() is None, f"the process ended before {pattern} appeared in {folder}"
        assert time.time() < deadline, f"no {pattern} in {folder}"
        time.sleep(0.02)


def interrupt_once(pattern: str, folder: Path, proc: subprocess.Popen) -> str:
    """Ctrl-C (SIGINT to the process group) once ``pattern`` appears in ``folder``; the process's stderr."""
    try:
        wait_for(pattern, folder, proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return stderr


@pytest.mark.slow
def test_a_run_folder_in_use_is_refused_untouched_and_freed_by_kill_9(tiles_path, tmp_path):
    run = tmp_path / "run"
    first = training(tiles_path, tmp_path, f"hydra.run.dir={run}", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("events.out.tfevents.*", run, first)  # training: the folder is held
        # the second training is this process: the same command line, in the same folder
        second = run_cli("livedead.train", "data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=10",
                         "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=tmp_path)  # fmt: skip
        assert_one_line_error(second, f"run folder {run} is in use", f"(pid {first.pid})")
        assert second.returncode == 2
        assert not list(run.glob(".hydra/resume-*")), "the second run wrote no record"
        assert {p.name.split(".")[5] for p in run.glob("events.out.tfevents.*")} == {str(first.pid)}
        assert not list(run.glob("checkpoints/*-v1.ckpt"))
        assert_one_line_error(run_cli("livedead.train", f"resume={run}", cwd=tmp_path), "is in use", str(first.pid))
    finally:
        first.kill()
        first.wait(30)
    with folder_lock(run):  # the kernel let go of the killed run's lock
        pass


@pytest.fixture
def one_epoch_run(tiles_path: Path, tmp_path: Path) -> Path:
    """A finished one-epoch tiny run: ``last.ckpt`` and ``epoch_000.ckpt``, both at its last step."""
    proc = run_cli("livedead.train", "data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=25",
                   "trainer.max_epochs=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path / "run"


@pytest.mark.slow
def test_train_log_holds_the_runs_log(one_epoch_run):
    log = (one_epoch_run / "train.log").read_text()
    assert "livedead: class weights (inverse):" in log
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in log, "Lightning's own lines too"


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))}


@pytest.mark.slow
def test_resume_falls_back_past_a_truncated_checkpoint_and_refuses_what_is_no_run(one_epoch_run, tmp_path):
    run = one_epoch_run
    last = run / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a broken copy
    proc = run_cli("livedead.train", f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if "cannot be read" in ln]
    assert lines == [f"train.py: last.ckpt in {run / 'checkpoints'} cannot be read (kept as *.unreadable): "
                     "resuming from epoch_000.ckpt (step 3), the furthest that loads"], proc.stderr  # fmt: skip
    assert torch.load(last, weights_only=True)["epoch"] == 1, "the second epoch trained, and saved whole"
    assert not list(run.glob("checkpoints/last-v*.ckpt"))
    assert (run / "checkpoints" / "last.ckpt.unreadable").exists()
    assert json.loads((run / "result.json").read_text())["status"] == "ok"

    before = listing(run)
    changed = run_cli("livedead.train", f"resume={run}", "seed=8", cwd=tmp_path)
    assert_one_line_error(changed, "'seed'", "keeps its config")
    assert listing(run) == before, "a refused resume leaves no record behind"
    ckpt = run / "checkpoints" / "epoch_000.ckpt"
    assert_one_line_error(run_cli("livedead.train", f"resume={ckpt}", cwd=tmp_path), "'resume'", f"a file at {ckpt}")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("livedead.train", f"resume={empty}", cwd=tmp_path), "'resume'", ".hydra/config.yaml")
    assert not list(empty.iterdir()), "no .hydra/, no train.log"
    for ckpt in run.glob("checkpoints/*.ckpt"):
        ckpt.write_bytes(b"")
    before = listing(run)
    proc = run_cli("livedead.train", f"resume={run}", cwd=tmp_path)
    assert_one_line_error(proc, "expected a checkpoint that loads", "found only unreadable ones")
    assert listing(run) == before


@pytest.mark.slow
def test_ctrl_c_stops_a_training_in_one_line_keeping_its_checkpoints(tiles_path, tmp_path):
    """SIGINT to the process group, as a terminal's Ctrl-C sends it: exit 130, one line saying what was kept."""
    run = tmp_path / "run"
    proc = training(tiles_path, tmp_path, f"hydra.run.dir={run}", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                    start_new_session=True)  # fmt: skip
    stderr = interrupt_once("checkpoints/step_*.ckpt", run, proc)
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr, "Lightning's own note is left to the command's line"
    line = stderr.strip().splitlines()[-1]
    assert line.startswith(f"train.py: interrupted; kept the checkpoints in {run / 'checkpoints'} (the furthest: ")
    assert line.endswith(f"); continue with resume={run}"), line
    assert [ln for ln in stderr.splitlines() if "interrupt" in ln.lower()] == [line]
    for ckpt in run.glob("checkpoints/*.ckpt"):
        assert ".tmp-" not in ckpt.name
        torch.load(ckpt, weights_only=True)  # whole
    assert json.loads((run / "result.json").read_text())["status"] == "interrupted"
