"""Overnight runs that survive: kills, divergence, damaged data and full disks, with real processes and files."""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import shutil
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
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from livedead.config.resume import latest_checkpoint
from livedead.data.datamodule import TileDataModule
from livedead.errors import LivedeadError, one_line
from tests.helpers import ROOT, assert_one_line_error, run_cli

TINY = [
    "model.net.base_channels=2",
    "model.net.depth=1",
    "model.overlay_tiles=0",
    "data.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "callbacks.model_summary=null",
    "callbacks.progress_bar=null",
]


def only(paths):
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_weights_and_metrics(straight: Path, resumed: Path) -> None:
    """A resumed run ends with the uninterrupted run's weights (to 1e-6) and validated metrics."""
    a, b = weights(straight / "checkpoints" / "last.ckpt"), weights(resumed / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=1e-6, msg=name)
    ra, rb = (json.loads((r / "result.json").read_text())["metrics"] for r in (straight, resumed))
    for key in ("val/pr_auc/macro", "val/loss", "val/pr_auc/dapi"):
        assert rb[key] == pytest.approx(ra[key], abs=1e-6), key


# --- resume= keeps the run's own config -------------------------------------------------------


@pytest.mark.slow
def test_resume_keeps_the_runs_config_and_every_record(tiles_path, tmp_path):
    """A run started with settings that differ from the defaults resumes with those settings."""
    first = ["data=hdf5", f"data.path={tiles_path}", *TINY, "model=unet_small", "trainer.max_epochs=1",
             "++trainer.limit_train_batches=2", "seed=7", "data.batch_size=10"]  # fmt: skip
    assert run_cli("livedead.train", *first, cwd=tmp_path).returncode == 0
    run = only((tmp_path / "outputs" / "runs").iterdir())
    original = (run / ".hydra" / "config.yaml").read_text()
    # the run's own command line, with resume= added, is accepted (++ included); and only resume= too
    again = run_cli("livedead.train", *first, f"resume={run}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    cut_off = run / "checkpoints" / "last.tmp-99999999.ckpt"  # a save of a killed run (no pid is that high)
    cut_off.write_bytes(b"half a checkpoint")
    plain = run_cli("livedead.train", f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path)
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert not cut_off.exists(), "an accepted resume removes what the killed run was writing"
    assert (run / ".hydra" / "config.yaml").read_text() == original, "the first record is never overwritten"
    sessions = sorted(run.glob(".hydra/resume-*/resumed_config.yaml"))
    assert len(sessions) == 2
    resumed = OmegaConf.load(sessions[-1])
    assert resumed.seed == 7
    assert resumed.trainer.limit_train_batches == 2
    assert resumed.trainer.max_epochs == 2
    assert resumed.model.net.base_channels == 2  # unet_small's 8, overridden by TINY
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    cut_off.write_bytes(b"half a checkpoint")
    changed = run_cli("livedead.train", f"resume={run}", "seed=8", cwd=tmp_path)
    assert_one_line_error(changed, "'seed'", "keeps its config", "seed=7", "seed=8")
    assert cut_off.exists(), "a refused resume changes nothing in the folder"


# --- killed training resumes exactly ----------------------------------------------------------


EXACT = ["data.batch_size=5", "trainer.max_epochs=2", "trainer.deterministic=true", "++trainer.limit_train_batches=6",
         "model.optimizer.lr=0.01"]  # fmt: skip
"""Two epochs of 6 of the 11 batches: an epoch that stops short, as in the reported run (limit_train_batches)."""


@pytest.fixture(scope="module")
def uninterrupted(tiles_path, tmp_path_factory) -> Path:
    """The run :data:`EXACT` describes, not killed: what every killed and resumed one must end as."""
    cwd = tmp_path_factory.mktemp("uninterrupted")
    proc = run_cli("livedead.train", "data=hdf5", f"data.path={tiles_path}", *TINY, *EXACT, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only((cwd / "outputs" / "runs").iterdir())


def scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("every_n_steps", "kill_at", "resumes_at"),
    [
        (100, "train_batch_start:8", 6),  # in the second epoch, before its first step checkpoint: from last.ckpt
        (4, "train_batch_start:8", 8),  # just after the step checkpoint of step 8, before its metrics are flushed
        (3, "validation_batch_end:12", 9),  # validating the second epoch: from the step checkpoint before it
    ],
    ids=["before_a_step_checkpoint", "after_a_step_checkpoint", "during_validation"],
)
def test_a_run_killed_anywhere_resumes_exactly(tiles_path, tmp_path, uninterrupted, every_n_steps, kill_at, resumes_at):
    """SIGKILL (the process's own, at an exact point), resume: the same weights, the same logged steps, once each."""
    args = ["data=hdf5", f"data.path={tiles_path}", *TINY, *EXACT, "+callbacks.kill._target_=tests.sigkill.KillAt",
            f"callbacks.step_checkpoint.every_n_train_steps={every_n_steps}"]  # fmt: skip
    env = {**os.environ, "LIVEDEAD_KILL_AT": kill_at}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    killed = only((tmp_path / "outputs" / "runs").iterdir())
    assert not (killed / "result.json").exists()
    first_record = (killed / ".hydra" / "config.yaml").read_text()
    assert torch.load(latest_checkpoint(killed), weights_only=True)["global_step"] == resumes_at

    resumed = run_cli("livedead.train", f"resume={killed}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights_and_metrics(uninterrupted, killed)
    # every step logged once, with the uninterrupted run's values: the killed session's steps after
    # its checkpoint are purged and logged again
    for tag in ("train/loss_step", "val/loss"):
        straight, again = scalars(uninterrupted, tag), scalars(killed, tag)
        assert [s for s, _ in again] == [s for s, _ in straight], tag
        assert [v for _, v in again] == pytest.approx([v for _, v in straight], abs=1e-6), tag
    assert [s for s, _ in scalars(killed, "train/loss_step")] == list(range(12))
    assert (killed / ".hydra" / "config.yaml").read_text() == first_record, "the first record is kept"
    assert sorted(p.name for p in (killed / ".hydra").iterdir())[0] == "config.yaml"
    assert len(list(killed.glob(".hydra/resume-*/resumed_config.yaml"))) == 1


def test_a_resumed_sessions_event_file_sorts_after_the_killed_ones(tmp_path):
    """TensorBoard reads event files in name order (creation second, host, pid): a session resumed in the
    second its killed run began must wait for the next second, or its steps would be read first."""
    from livedead.config.resume import after_earlier_event_files

    now = int(time.time())
    (tmp_path / f"events.out.tfevents.{now}.host.99999.0").write_bytes(b"")
    after_earlier_event_files(tmp_path)
    assert int(time.time()) > now
    assert f"events.out.tfevents.{int(time.time())}.host.11111.0" > f"events.out.tfevents.{now}.host.99999.0"


# --- divergence -------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_diverging_job_stops_is_recorded_and_ranked_last(tiles_path, tmp_path):
    sweep = ["data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=10", "trainer.max_epochs=3",
             "model.optimizer.lr=0.01,1e30", "-m"]  # fmt: skip
    proc = run_cli("livedead.train", *sweep, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = only((tmp_path / "outputs" / "multirun").iterdir())
    results = {p.parent.name: json.loads(p.read_text()) for p in folder.glob("*/result.json")}
    diverged = results["1_model.optimizer.lr=1e+30"]  # Hydra writes the float back
    assert diverged["status"] == "diverged"
    assert diverged["diverged_step"] <= 6, "stopped within its first epoch (6 steps)"
    assert "became nan" in diverged["error"] or "became inf" in diverged["error"]
    assert results["0_model.optimizer.lr=0.01"]["status"] == "ok"
    summary = (folder / "summary.csv").read_text().splitlines()
    assert summary[-1].startswith("2,1_model.optimizer.lr=1e+30,diverged")
    single = run_cli("livedead.train", *sweep[:-2], "model.optimizer.lr=1e30", cwd=tmp_path)
    assert_one_line_error(single, "training diverged", "step")


# --- killed sweeps resume ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_killed_sweep_resumes(tiles_path, tmp_path, launcher):
    """Kill a real sweep while its second job trains; rerun it with resume_sweep=: the finished job is kept,
    the cut-off one resumed from its checkpoint, the unstarted one run, and the summary rewritten."""
    sweep = ["data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=5", "trainer.max_epochs=2",
             "++trainer.limit_train_batches=4", "++trainer.limit_val_batches=1",
             "callbacks.step_checkpoint.every_n_train_steps=2", "seed=1,2,3", f"hydra/launcher={launcher}"]  # fmt: skip
    if launcher == "joblib":
        sweep.append("hydra.launcher.n_jobs=1")  # one at a time, in a worker process
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *sweep, "-m"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if [p for p in tmp_path.glob("outputs/multirun/*/1_seed=2/checkpoints/step_*.ckpt") if ".tmp-" not in p.name]:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its workers
            break
        time.sleep(0.005)
    proc.wait(60)
    folder = only((tmp_path / "outputs" / "multirun").iterdir())
    first = (folder / "0_seed=1" / "result.json").read_text()
    assert json.loads(first)["status"] == "ok"
    assert not (folder / "1_seed=2" / "result.json").exists(), "the second job was cut off"
    assert not (folder / "2_seed=3").exists(), "the third never started"

    again = run_cli("livedead.train", *sweep, f"resume_sweep={folder}", "-m", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (folder / "0_seed=1" / "result.json").read_text() == first, "the finished job is kept as it was"
    assert "job 0_seed=1 finished before (ok): kept" in again.stdout
    assert "job 1_seed=2 was cut off: resuming it" in again.stdout
    rows = (folder / "summary.csv").read_text().splitlines()[1:]
    assert len(rows) == 3
    assert all(",ok," in r for r in rows), rows
    resumed = json.loads((folder / "1_seed=2" / "result.json").read_text())
    assert resumed["best_epoch"] in (0, 1)
    assert torch.load(folder / "1_seed=2" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 8
    assert sorted(p.name for p in (folder / "1_seed=2" / ".hydra").iterdir())[0] == "config.yaml"


# --- damaged and missing data -----------------------------------------------------------------


def checksummed_tiles(path: Path, n: int = 400, chunk: int = 50, n_train: int = 300) -> Path:
    """A tile file as prepare writes it (fletcher32 checksums), with content a model can learn from."""
    rng = np.random.default_rng(0)
    labels = np.zeros((n, 32, 32), np.uint8)
    labels[:, 8:20, 8:20] = rng.integers(1, 3, (n, 1, 1))
    images = (labels[:, None].astype(np.float64) * 500 + rng.normal(1000, 30, (n, 1, 32, 32))).astype(np.uint16)
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=images, chunks=(chunk, 1, 32, 32), fletcher32=True)
        f.create_dataset("labels", data=labels, chunks=(chunk, 32, 32), fletcher32=True)
        f.attrs["n_train"] = n_train
    return path


def damage(path: Path, dataset: str, chunk_index: int) -> None:
    """Overwrite bytes in the middle of one chunk of a dataset, on disk."""
    with h5py.File(path) as f:
        info = f[dataset].id.get_chunk_info(chunk_index)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        f.write(np.random.default_rng(1).integers(0, 255, 64, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("workers", [0, 2])
def test_a_damaged_chunk_is_one_line_naming_file_dataset_and_tiles(tmp_path, workers):
    path = checksummed_tiles(tmp_path / "tiles.h5")
    damage(path, "images", 2)  # tiles 100..149, read only once training reaches them
    dm = TileDataModule(path, batch_size=25, num_workers=workers, persistent_workers=False, normalize="none")
    dm.setup()  # (with normalize=dataset, the statistics read the chunk here, and say the same)
    with pytest.raises(LivedeadError) as err:
        for _ in dm.train_dataloader():
            pass
    assert one_line(err.value).startswith(f"{path}: dataset '/images': damaged data in tiles 100..149")
    assert "on_bad_chunk=skip" in one_line(err.value)
    assert not multiprocessing.active_children(), "the workers stop with the error, not at a later collection"


def test_unchecksummed_damage_goes_unseen_and_checksums_are_written(tiles_path, tmp_path):
    """Why prepare writes checksums: in a plain chunk the same damage reads back as other pixels."""
    with h5py.File(tiles_path) as f:
        assert all(f[k].fletcher32 for k in ("images", "labels", "class_counts", "origin"))
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("images", data=np.zeros((100, 1, 32, 32), np.uint16), chunks=(50, 1, 32, 32))
    damage(plain, "images", 1)
    with h5py.File(plain) as f:
        assert f["images"][50:].any(), "read without an error, damaged"


@pytest.mark.slow
def test_on_bad_chunk_skip_trains_without_it_and_reports(tmp_path):
    path = checksummed_tiles(tmp_path / "tiles.h5")
    damage(path, "labels", 2)
    args = ["data=hdf5", f"data.path={path}", *TINY, "data.batch_size=25", "trainer.max_epochs=2",
            "data.on_bad_chunk=skip", "model.net.depth=1"]  # fmt: skip
    proc = run_cli("livedead.train", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "left out 50 tiles of damaged chunks" in proc.stdout + proc.stderr
    result = json.loads(only((tmp_path / "outputs" / "runs").glob("*/result.json")).read_text())
    assert result["status"] == "ok"
    assert result["skipped_tiles"] == 100  # 50 tiles, two epochs
    strict = run_cli("livedead.train", *args[:-2], "model.net.depth=1", cwd=tmp_path)
    assert_one_line_error(strict, "tiles.h5: dataset '/labels': damaged data in tiles 100..149")


@pytest.mark.slow
def test_a_tile_file_changed_while_paused_is_found_at_resume(tiles_path, tmp_path):
    tiles = tmp_path / "tiles.h5"
    shutil.copy(tiles_path, tiles)
    args = ["data=hdf5", f"data.path={tiles}", *TINY, "data.batch_size=25", "trainer.max_epochs=1"]
    assert run_cli("livedead.train", *args, cwd=tmp_path).returncode == 0
    run = only((tmp_path / "outputs" / "runs").iterdir())
    shutil.copy(tiles, tmp_path / "copy.h5")
    shutil.copy(tmp_path / "copy.h5", tiles)  # a copy of the same file (a new mtime) is the same data
    assert run_cli("livedead.train", f"resume={run}", "trainer.max_epochs=2", cwd=tmp_path).returncode == 0
    with open(tiles, "ab") as f:  # changed while the run was paused (data readable: only the fingerprint tells)
        f.write(b"\0" * 4096)
    proc = run_cli("livedead.train", f"resume={run}", "trainer.max_epochs=3", cwd=tmp_path)
    assert_one_line_error(proc, "tiles.h5: expected the tile file the checkpoint was trained on", "size")


# --- full disk --------------------------------------------------------------------------------


def limited(code: str, file_size: int, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in a process that can write no file larger than ``file_size`` bytes.

    RLIMIT_FSIZE makes every write past it fail as a full disk does (EFBIG instead of ENOSPC), with
    no root needed; the tmpfs test below fills a real device where one can be mounted.
    """

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill the process

    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          preexec_fn=limit)  # fmt: skip


@pytest.mark.slow
def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path):
    code = """
import torch
from livedead.errors import LivedeadError
from livedead.model.checkpoint_io import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({"w": torch.zeros(1000)}, "last.ckpt")
try:
    io.save_checkpoint({"w": torch.ones(100_000)}, "last.ckpt")
except LivedeadError as err:
    print(err)
"""
    proc = limited(code, 50_000, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "last.ckpt: no room to write it" in proc.stdout.replace(str(tmp_path) + "/", str(tmp_path) + "/")
    assert "previous last.ckpt is kept" in proc.stdout
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["w"].shape == (1000,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.slow
def test_full_disk_while_writing_the_tile_file_leaves_nothing(plate_path, tmp_path):
    code = f"import sys; sys.argv = ['livedead.prepare', 'input={plate_path}', 'output=out/tiles.h5']\n"
    code += "from livedead.prepare import cli; cli()"
    proc = limited(code, 2_000_000, tmp_path)
    assert_one_line_error(proc, "out/tiles", "no room to write it")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_full_disk_during_training_names_the_run_and_keeps_its_checkpoints(tiles_path, tmp_path):
    args = ["data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=10", "trainer.max_epochs=50",
            "++trainer.limit_train_batches=1", "callbacks.step_checkpoint.every_n_train_steps=1"]  # fmt: skip
    code = f"import sys; sys.argv = ['train.py', *{args!r}]\nfrom livedead.train import cli; cli()"
    proc = limited(code, 150_000, tmp_path)  # the event file outgrows it after some epochs
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr  # (Lightning's own notes come before)
    last = proc.stderr.strip().splitlines()[-1]
    run = only((tmp_path / "outputs" / "runs").iterdir())
    assert last.startswith(f"train.py: error: {run}: no room to write the run's files"), last
    good = [p for p in run.glob("checkpoints/*.ckpt") if ".tmp-" not in p.name]
    assert good
    for ckpt in good:
        torch.load(ckpt, weights_only=True)  # every checkpoint left is whole


@pytest.mark.slow
def test_full_disk_while_predicting_reports_each_image(tiny_ckpt, plate_path, tmp_path):
    args = [f"ckpt={tiny_ckpt}", f"input={plate_path}", "output=pred", "progress=false"]
    code = f"import sys; sys.argv = ['livedead.predict', *{args!r}]\nfrom livedead.predict import cli; cli()"
    proc = limited(code, 20_000, tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    failed = [line for line in proc.stderr.splitlines() if ": failed: " in line]
    assert failed, proc.stderr
    assert all("no room to write it" in line for line in failed)
    assert not [p for p in (tmp_path / "pred").iterdir() if ".tmp-" in p.name], "no partial file left"


@pytest.fixture
def small_device(tmp_path):
    """A 2 MB tmpfs: a real device that fills up (ENOSPC); skipped where this user cannot mount one."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                                           capture_output=True).returncode:  # fmt: skip
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.slow
def test_a_really_full_device_while_writing_the_tile_file(plate_path, small_device):
    proc = run_cli("livedead.prepare", f"input={plate_path}", f"output={small_device / 'tiles.h5'}", "progress=false")
    assert_one_line_error(proc, "tiles", "no room to write it (No space left on device)")
    assert list(small_device.iterdir()) == []


# --- killed preparation -----------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_prepare_leaves_no_complete_looking_file_and_a_rerun_reuses_the_first_pass(tmp_path):
    from livedead.plates.synthetic import PlateSpec, generate_plate

    plate = generate_plate(
        tmp_path / "plate.h5", PlateSpec(wells=3, timepoints=4, height=480, width=640), progress=False
    )
    out = tmp_path / "out" / "tiles.h5"
    args = [sys.executable, "-m", "livedead.prepare", f"input={plate}", f"output={out}", "chunk=20",
            "keep_intermediate=true", "progress=false"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        writing = list(out.parent.glob("tiles*.tmp-*.h5")) if out.parent.exists() else []
        if len(writing) == 2:  # the tile file and the kept first pass, both being written
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists(), "no file under a final name"
    assert not (out.parent / "tiles.all.h5").exists(), "no file under a final name"
    rerun = run_cli("livedead.prepare", *args[3:], cwd=ROOT)
    assert rerun.returncode == 0, rerun.stderr
    assert "reusing" not in rerun.stdout  # nothing whole to reuse: labelled again
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiles.all.h5", "tiles.h5"], "temporaries removed"
    other_split = run_cli("livedead.prepare", *args[3:], "seed=1", cwd=ROOT)
    assert other_split.returncode == 0, other_split.stderr
    assert "reusing" in other_split.stdout
    fresh = tmp_path / "fresh.h5"
    cli = run_cli("livedead.prepare", f"input={plate}", f"output={fresh}", "chunk=20", "seed=1", "progress=false")
    assert cli.returncode == 0
    with h5py.File(out) as a, h5py.File(fresh) as b:
        for key in ("images", "labels", "origin"):
            np.testing.assert_array_equal(a[key][:], b[key][:])
        assert a.attrs["n_train"] == b.attrs["n_train"]


@pytest.mark.slow
def test_a_killed_predict_leaves_only_whole_files_and_a_rerun_finishes(tiny_ckpt, plate_path, tmp_path):
    out = tmp_path / "pred"
    args = [f"ckpt={tiny_ckpt}", f"input={plate_path}", f"output={out}", "progress=false"]
    proc = subprocess.Popen([sys.executable, "-m", "livedead.predict", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and list(out.glob("*_overlay.png")):  # one image done, the others to come
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "counts.csv").exists(), "the summary is written last"
    assert not (out / "nuclei.csv").exists(), "the nuclei table just before it"
    for path in out.iterdir():  # whatever has a final name is whole
        if path.suffix == ".tif":
            tifffile.imread(path)
        elif path.suffix == ".png":
            Image.open(path).load()
    gone = subprocess.Popen(["true"])  # a writer that is gone, and the temporary it left
    gone.wait()
    (out / f"W01_t001_overlay.tmp-{gone.pid}.png").write_bytes(b"half a file")
    rerun = run_cli("livedead.predict", *args, cwd=ROOT)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "counts.csv").exists()
    assert not [p.name for p in out.iterdir() if ".tmp-" in p.name], "what the killed run was writing is removed"


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_save_leaves_the_previous_one_loadable(tmp_path):
    """The save of B is slowed down and the process killed in the middle of it: A is still last.ckpt."""
    code = """
import io, time, torch
from livedead.model.checkpoint_io import AtomicCheckpointIO
saver = AtomicCheckpointIO()
saver.save_checkpoint({"name": "A", "w": torch.zeros(10)}, "checkpoints/last.ckpt")
real_save = torch.save
def slow_save(obj, f):  # half the bytes, then a long pause: the kill comes in the middle
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
    f.write(data[len(data) // 2 :])
torch.save = slow_save
saver.save_checkpoint({"name": "B", "w": torch.ones(100_000)}, "checkpoints/last.ckpt")
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"  # B is being written
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["name"] == "A"
    assert [p.name for p in (tmp_path / "checkpoints").glob("last.tmp-*.ckpt")], "B's partial file, under another name"
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
