"""The real ``train.py`` CLI, as subprocesses, at tiny sizes."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from livedead.config import run_dir

from .conftest import ROOT, assert_one_line_error

TINY = [
    "model.net.base_channels=4",
    "model.net.depth=2",
    "model.overlay_tiles=2",
    "data.batch_size=25",
    "data.num_workers=0",
    "trainer.max_epochs=2",
    "trainer.accelerator=cpu",
    "trainer.log_every_n_steps=1",
    "callbacks.model_summary=null",
]


def train(cwd: Path, tiles: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, str(ROOT / "train.py"), "data=hdf5", f"data.path={tiles}", *TINY, *overrides]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def events(folder: Path) -> EventAccumulator:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def only(paths):
    paths = list(paths)
    assert len(paths) == 1, paths
    return paths[0]


def test_single_run_leaves_config_logs_checkpoints_and_events(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only((tmp_path / "outputs" / "runs").iterdir())
    assert "TensorBoard logs:" in proc.stdout
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "checkpoints/last.ckpt", "result.json"):
        assert (run / name).exists(), name
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "ok" and 0 <= result["value"] <= 1 and result["best_epoch"] in (0, 1)
    acc = events(run)
    tags = acc.Tags()
    for tag in ("val/pr_auc/dapi", "val/pr_auc/cy5", "val/pr_auc/macro", "train/loss_epoch", "lr", "hp_metric"):
        assert tag in tags["scalars"], tag
    assert "val/overlay" in tags["images"]
    hparams = acc.PluginTagToContent("hparams")
    assert hparams, "the HParams dashboard has the run's config"


def test_multirun_2x2_named_runs_and_summary(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "optimizer=adam,sgd", "scheduler=cosine,kicks", "trainer.max_epochs=1", "-m")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only((tmp_path / "outputs" / "multirun").iterdir())
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == [
        "0_optimizer=adam,scheduler=cosine",
        "1_optimizer=adam,scheduler=kicks",
        "2_optimizer=sgd,scheduler=cosine",
        "3_optimizer=sgd,scheduler=kicks",
    ]
    for job in jobs:
        assert list((sweep / job).glob("events.out.tfevents.*")), job
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert (sweep / "summary.md").read_text().count("| ok |") == 4


def test_multirun_with_a_failing_job(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "model.optimizer.lr=0.01,-1", "trainer.max_epochs=1", "-m")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only((tmp_path / "outputs" / "multirun").iterdir())
    rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
    assert len(rows) == 2
    failed = rows["1_model.optimizer.lr=-1"]
    assert failed["status"] == "failed" and "model.optimizer.lr" in failed["error"] and failed["rank"] == "2"
    assert rows["0_model.optimizer.lr=0.01"]["status"] == "ok"


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=paper", "data.path=/x/tiles.h5"],
        ["experiment=compare_optimizers"],
        ["experiment=compare_schedulers"],
        ["experiment=compare_class_weights"],
        ["hparams_search=optuna"],
        ["hydra/launcher=joblib"],
        ["hydra/launcher=submitit_slurm"],
        ["trainer=ddp"],
        ["trainer=gpu"],
        ["debug=fdr"],
        ["debug=overfit"],
        ["debug=limit"],
        ["logger=csv"],
        ["class_weights=custom"],
    ],
)
def test_configs_compose(overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    if overrides[0] == "experiment=paper":
        assert cfg.model.net.base_channels == 64 and cfg.data.batch_size == 100 and cfg.trainer.max_epochs == 100
        assert choices["optimizer"] == "sgd" and choices["scheduler"] == "kicks"
    if overrides[0].startswith("experiment=compare"):
        assert cfg.hydra.mode.name == "MULTIRUN" and len(cfg.hydra.sweeper.params) == 1
    if overrides[0] == "hparams_search=optuna":
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper") and cfg.hydra.sweeper.direction == "maximize"
    if overrides[0].startswith("hydra/launcher"):
        assert cfg.hydra.launcher._target_.split(".")[-1] in ("JoblibLauncher", "SlurmLauncher")


def test_optuna_sweep_of_two_trials(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only((tmp_path / "outputs" / "multirun").iterdir())
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert (sweep / "optimization_results.yaml").exists()


def test_resume_continues_the_run_in_the_same_folders(tiles_path, tmp_path):
    first = train(tmp_path, tiles_path, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    run = only((tmp_path / "outputs" / "runs").iterdir())
    (tmp_path / "elsewhere").mkdir()
    assert_one_line_error(train(tmp_path / "elsewhere", tiles_path, "ckpt_path=last"), "'ckpt_path'", "resume=")
    again = train(tmp_path, tiles_path, f"resume={run}", "ckpt_path=last", "trainer.max_epochs=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert only((tmp_path / "outputs" / "runs").iterdir()) == run, "no new run folder"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["epoch"] == 1 and ckpt["lr_schedulers"]
    # one TensorBoard run: every event file of both sessions is in the run's own folder
    assert len(list(run.glob("events.out.tfevents.*"))) >= 2 and not list(run.glob("*/events.out.tfevents.*"))
    epochs = {int(e.value) for e in events(run).Scalars("epoch")}
    assert {0, 1} <= epochs  # (validating the best checkpoint afterwards logs epoch 2)


def test_job_names():
    from livedead.config import job_name, swept_keys

    assert swept_keys(["optimizer=adam,sgd", "trainer.max_epochs=1", "model.class_weights=[1,2,3]"], None) == [
        "optimizer"
    ]
    assert swept_keys(["x=1"], {"model.optimizer.lr": "interval(0.1, 1)"}) == ["model.optimizer.lr"]
    os.environ["LIVEDEAD_SWEPT_KEYS"] = "optimizer"
    assert job_name(["optimizer=sgd", "trainer.max_epochs=1", "data.path=/a/b.h5"]) == "optimizer=sgd"
    os.environ["LIVEDEAD_SWEPT_KEYS"] = ""
    assert job_name(["optimizer=sgd", "scheduler=kicks"]) == "optimizer=sgd,scheduler=kicks"
    del os.environ["LIVEDEAD_SWEPT_KEYS"]


def test_run_folders_never_collide():
    names = {run_dir() for _ in range(5000)}  # one process, one second: only the sequence separates them
    assert len(names) == 5000
    assert all(n.startswith("outputs/runs/") and f"_{os.getpid()}-" in n for n in names)


# --- bad input: one clear line before any training starts -----------------------------------


def test_unknown_group_option_lists_the_valid_ones(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "optimizer=rmsprop")
    assert_one_line_error(proc, "'optimizer'", "adam, adamw, sgd", "rmsprop")


def test_missing_data_path(tmp_path):
    args = [sys.executable, str(ROOT / "train.py"), "data=hdf5", *TINY]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "data.path", "Missing mandatory value")


def test_negative_learning_rate(tiles_path, tmp_path):
    assert_one_line_error(train(tmp_path, tiles_path, "model.optimizer.lr=-0.1"), "model.optimizer.lr", "> 0", "-0.1")


def test_batch_larger_than_the_chunk(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "data.batch_size=80")
    assert_one_line_error(proc, "data.batch_size", "chunk of 50", "80")
    assert "Epoch 0" not in proc.stdout


def test_output_folder_that_cannot_be_written(tiles_path, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    proc = train(tmp_path, tiles_path, f"hydra.run.dir={blocker}/run")
    assert_one_line_error(proc, "not_a_folder", "writable")
