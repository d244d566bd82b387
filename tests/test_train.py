"""The training command at tiny sizes: composed configs run in-process (as lightning-hydra-template does),
the command line in-process through its entry point, and a few real processes of ``python train.py``."""

import csv
import json
import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import livedead.train  # noqa: F401  (the command registers its config schema, which the configs compose with)
from livedead.config.resolvers import run_dir
from livedead.config.training import run
from livedead.errors import LivedeadError
from tests.helpers import ROOT, CliResult, assert_one_line_error, run_cli, run_subprocess

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


def train(cwd: Path, tiles: Path, *overrides: str) -> CliResult:
    """``python train.py data=hdf5 data.path=<tiles> <TINY> <overrides>``, run in this process from ``cwd``."""
    return run_cli("livedead.train", "data=hdf5", f"data.path={tiles}", *TINY, *overrides, cwd=cwd)


def compose_train(out: Path, *overrides: str) -> DictConfig:
    """The config ``train.py`` would compose, with its run folder at ``out``; Hydra's part set as at run time."""
    with initialize_config_module("livedead.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    out.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.runtime.cwd = str(out.parent)
        cfg.hydra.job.name = "train"
    HydraConfig.instance().set_config(cfg)
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    return task


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


@pytest.mark.slow
def test_single_run_leaves_config_logs_checkpoints_and_events(tiles_path, tmp_path):
    proc = run_subprocess(str(ROOT / "train.py"), "data=hdf5", f"data.path={tiles_path}", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only((tmp_path / "outputs" / "runs").iterdir())
    assert "TensorBoard logs:" in proc.stdout
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", "train.log", "checkpoints/last.ckpt", "result.json"):
        assert (run / name).exists(), name
    result = json.loads((run / "result.json").read_text())
    assert result["status"] == "ok"
    assert 0 <= result["value"] <= 1
    assert result["best_epoch"] in (0, 1)
    acc = events(run)
    tags = acc.Tags()
    for tag in ("val/pr_auc/dapi", "val/pr_auc/cy5", "val/pr_auc/macro", "train/loss_epoch", "lr", "hp_metric"):
        assert tag in tags["scalars"], tag
    assert "val/overlay" in tags["images"]
    hparams = acc.PluginTagToContent("hparams")
    assert hparams, "the HParams dashboard has the run's config"


@pytest.mark.slow
def test_multirun_2x2_named_runs_and_summary(tiles_path, tmp_path):
    sweep = ["optimizer=adam,sgd", "scheduler=cosine,kicks", "trainer.max_epochs=1", "-m"]
    proc = run_subprocess(str(ROOT / "train.py"), "data=hdf5", f"data.path={tiles_path}", *TINY, *sweep,
                          cwd=tmp_path)  # fmt: skip
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
    assert len(rows) == 4
    assert all(r["status"] == "ok" for r in rows)
    values = [float(r["value"]) for r in rows]
    assert values == sorted(values, reverse=True)
    assert (sweep / "summary.md").read_text().count("| ok |") == 4


@pytest.mark.slow
def test_multirun_with_a_failing_job(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "model.optimizer.lr=0.01,-1", "trainer.max_epochs=1", "-m")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only((tmp_path / "outputs" / "multirun").iterdir())
    rows = {r["job"]: r for r in read_csv(sweep / "summary.csv")}
    assert len(rows) == 2
    failed = rows["1_model.optimizer.lr=-1"]
    assert failed["status"] == "failed"
    assert "model.optimizer.lr" in failed["error"]
    assert failed["rank"] == "2"
    assert rows["0_model.optimizer.lr=0.01"]["status"] == "ok"


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=paper", "data.path=/x/tiles.h5"],
        ["experiment=real", "data=hdf5", "data.path=/x/tiles.h5"],
        ["experiment=compare_optimizers"],
        ["experiment=compare_schedulers"],
        ["experiment=compare_class_weights"],
        ["hparams_search=optuna"],
        ["hydra/launcher=joblib"],
        ["hydra/launcher=submitit_slurm"],
        ["hydra/launcher=slurm"],
        ["trainer=ddp"],
        ["trainer=gpu"],
        ["debug=fdr"],
        ["debug=overfit"],
        ["debug=limit"],
        ["logger=csv"],
        ["logger=mlflow"],
        ["class_weights=custom"],
    ],
)
def test_configs_compose(overrides):
    with initialize_config_module("livedead.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    first = overrides[0]
    if first == "experiment=paper":
        assert cfg.model.net.base_channels == 64
        assert cfg.data.batch_size == 100
        assert cfg.trainer.max_epochs == 100
        assert choices["optimizer"] == "sgd"
        assert choices["scheduler"] == "kicks"
        assert cfg.trainer.precision == "bf16-mixed"
        assert cfg.data.path == "/x/tiles.h5"
    if first == "experiment=real":  # README, "Real brightfield": what the real assay measured
        assert cfg.data.normalize == "percentile"
        assert cfg.data.intensity is None  # measured: it cost every figure but one in 12 epochs
        assert choices["optimizer"] == "adam"
        assert cfg.trainer.max_epochs == 120  # measured against 12 and 48 (README)
        assert cfg.trainer.max_epochs == cfg.model.scheduler.T_0
        assert cfg.data.path == "/x/tiles.h5"
    if first.startswith("experiment=compare"):
        assert cfg.hydra.mode.name == "MULTIRUN"
        swept = {"optimizers": "optimizer", "schedulers": "scheduler", "class_weights": "class_weights"}
        key = swept[first.removeprefix("experiment=compare_")]
        assert set(cfg.hydra.sweeper.params) == {key, "seed"}  # the setting, over seeds
        assert len(str(cfg.hydra.sweeper.params[key]).split(",")) >= 2
        assert cfg.hydra.sweeper.params.seed == "range(1)"  # seeds=1 unless asked for more
    if first == "hparams_search=optuna":
        assert cfg.hydra.sweeper._target_.endswith("OptunaSweeper")
        assert cfg.hydra.sweeper.direction == "maximize"
        assert {"model.optimizer.lr", "class_weights"} <= set(cfg.hydra.sweeper.params)
    if first.startswith("hydra/launcher"):
        assert cfg.hydra.launcher._target_.split(".")[-1] in ("JoblibLauncher", "SlurmLauncher")
    if first == "hydra/launcher=slurm":
        assert cfg.hydra.launcher.max_num_timeout == 5  # requeued on pre-emption, and resumed
    if first == "trainer=ddp":
        assert cfg.trainer.strategy == "ddp"
        assert cfg.trainer.devices == 2
        assert cfg.trainer.sync_batchnorm
    if first == "trainer=gpu":
        assert cfg.trainer.accelerator == "gpu"
        assert cfg.trainer.precision == "bf16-mixed"
    if first == "debug=fdr":
        assert cfg.trainer.fast_dev_run is True
        assert cfg.data.num_workers == 0
    if first == "debug=overfit":
        assert cfg.trainer.overfit_batches == 2
        assert cfg.data.augment is False
    if first == "debug=limit":
        assert cfg.trainer.limit_train_batches == 3
        assert cfg.trainer.max_epochs == 2
    if first == "logger=csv":
        assert list(cfg.logger) == ["csv"]
        assert cfg.logger.csv._target_.endswith("CSVLogger")
    if first == "logger=mlflow":
        assert sorted(cfg.logger) == ["mlflow", "tensorboard"]  # the reports and overlays read TensorBoard
        assert OmegaConf.to_container(cfg.logger.mlflow)["tracking_uri"].startswith("sqlite:///")
    if first == "class_weights=custom":
        assert list(cfg.model.class_weights) == [1.0, 5.0, 20.0]


def test_a_composed_config_trains_in_process(tiles_path, tmp_path):
    """The task itself, on a composed config (no command line): one batch of each split, then result.json."""
    cfg = compose_train(tmp_path / "run", "data=hdf5", f"data.path={tiles_path}", *TINY, "debug=fdr")
    value = run(cfg)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "ok"
    assert result["metric"] == "val/pr_auc/macro"
    assert result["value"] == value


def test_composed_bad_values_fail_before_training(tiles_path, tmp_path):
    cfg = compose_train(tmp_path / "lr", "data=hdf5", f"data.path={tiles_path}", *TINY, "model.optimizer.lr=-0.1")
    with pytest.raises(LivedeadError, match=r"'model.optimizer.lr': expected > 0, found -0.1"):
        run(cfg)
    cfg = compose_train(tmp_path / "batch", "data=hdf5", f"data.path={tiles_path}", *TINY, "data.batch_size=80")
    with pytest.raises(LivedeadError, match="'data.batch_size': expected <= the file's chunk of 50 tiles, found 80"):
        run(cfg)
    assert json.loads((tmp_path / "batch" / "result.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_optuna_sweep_of_two_trials(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = only((tmp_path / "outputs" / "multirun").iterdir())
    rows = read_csv(sweep / "summary.csv")
    assert len(rows) == 2
    assert all(r["status"] == "ok" for r in rows)
    assert (sweep / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_last_ckpt_is_the_last_epoch_when_that_is_not_the_best(tiles_path, tmp_path):
    """``last.ckpt`` is what a resume and ``predict`` take: the last epoch, not a copy of the best (Lightning 2.6's
    ``save_last`` writes it only when a new best is saved at the same step). At lr 1e-30 no epoch beats the first."""
    proc = train(tmp_path, tiles_path, "model.optimizer.lr=1e-30")  # too small to change a float32 weight
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoints = only((tmp_path / "outputs" / "runs").iterdir()) / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", weights_only=True, map_location="cpu")
    best = torch.load(checkpoints / "epoch_000.ckpt", weights_only=True, map_location="cpu")
    assert (best["epoch"], last["epoch"]) == (0, 1)
    assert last["global_step"] == 2 * best["global_step"]
    assert not (checkpoints / "epoch_001.ckpt").exists(), "the second epoch was no better"


@pytest.mark.slow
def test_resume_continues_the_run_in_the_same_folders(tiles_path, tmp_path, recwarn):
    first = train(tmp_path, tiles_path, "trainer.max_epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    run = only((tmp_path / "outputs" / "runs").iterdir())
    (tmp_path / "elsewhere").mkdir()
    assert_one_line_error(train(tmp_path / "elsewhere", tiles_path, "ckpt_path=last"), "'ckpt_path'", "resume=")
    recwarn.clear()
    again = train(tmp_path, tiles_path, f"resume={run}", "ckpt_path=last", "trainer.max_epochs=2")
    assert again.returncode == 0, again.stderr[-3000:]
    assert not [w for w in recwarn if "exists and is not empty" in str(w.message)], "its own folder: no surprise"
    assert only((tmp_path / "outputs" / "runs").iterdir()) == run, "no new run folder"
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    assert ckpt["epoch"] == 1
    assert ckpt["lr_schedulers"]
    # one TensorBoard run: every event file of both sessions is in the run's own folder
    assert len(list(run.glob("events.out.tfevents.*"))) >= 2
    assert not list(run.glob("*/events.out.tfevents.*"))
    epochs = {int(e.value) for e in events(run).Scalars("epoch")}
    assert {0, 1} <= epochs  # (validating the best checkpoint afterwards logs epoch 2)


def test_job_names(monkeypatch):
    from livedead.config.resolvers import job_name, swept_keys

    assert swept_keys(["optimizer=adam,sgd", "trainer.max_epochs=1", "model.class_weights=[1,2,3]"], None) == [
        "optimizer"
    ]
    assert swept_keys(["x=1"], {"model.optimizer.lr": "interval(0.1, 1)"}) == ["model.optimizer.lr"]
    monkeypatch.setenv("LIVEDEAD_SWEPT_KEYS", "optimizer")
    assert job_name(["optimizer=sgd", "trainer.max_epochs=1", "data.path=/a/b.h5"]) == "optimizer=sgd"
    monkeypatch.setenv("LIVEDEAD_SWEPT_KEYS", "")
    assert job_name(["optimizer=sgd", "scheduler=kicks"]) == "optimizer=sgd,scheduler=kicks"


def test_run_folders_never_collide():
    names = {run_dir() for _ in range(5000)}  # one process, one second: only the sequence separates them
    assert len(names) == 5000
    assert all(n.startswith("outputs/runs/") and f"_{os.getpid()}-" in n for n in names)


# --- bad input: one clear line before any training starts -----------------------------------


def test_unknown_group_option_lists_the_valid_ones(tiles_path, tmp_path):
    proc = train(tmp_path, tiles_path, "optimizer=rmsprop")
    assert_one_line_error(proc, "'optimizer'", "adam, adamw, sgd", "rmsprop")
    assert proc.returncode == 2, "bad input exits 2, as the README promises"
    nope = train(tmp_path, tiles_path, "model=nope")
    assert_one_line_error(nope, "config group 'model'", "unet, unet_small", "'nope'")
    assert nope.returncode == 2


def test_missing_data_path(tmp_path):
    proc = run_cli("livedead.train", "data=hdf5", *TINY, cwd=tmp_path)
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


@pytest.mark.parametrize(
    ("override", "key", "expected"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs", "int"),
        ("data.num_workers=abc", "data.num_workers", "int"),
        ("data.augment=maybe", "data.augment", "bool"),
        ("model.net.base_channels=2.5", "model.net.base_channels", "int"),
        ("seed=xyz", "seed", "Integer"),
        ("validate_best=sometimes", "validate_best", "bool"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_before_any_data(tmp_path, override, key, expected):
    """The synthetic default data is not generated: the check comes first."""
    proc = run_cli("livedead.train", override, cwd=tmp_path)
    assert_one_line_error(proc, f"'{key}'", expected, override.partition("=")[2])
    assert proc.returncode == 2
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
def test_mlflow_logger_records_params_and_metrics_in_a_local_store(tiles_path, tmp_path):
    """``logger=mlflow``: TensorBoard as ever, and a run in a local MLflow store with the config and the metrics."""
    from mlflow.tracking import MlflowClient

    proc = run_cli("livedead.train", "logger=mlflow", "data=hdf5", f"data.path={tiles_path}", *TINY,
                   "optimizer=adam", "callbacks.progress_bar=null", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert list(run_dir.glob("events.out.tfevents.*")), "TensorBoard still logs"
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("livedead").experiment_id])
    assert run.data.params["choice/optimizer"] == "adam"
    assert run.data.params["trainer/max_epochs"] == "2"
    assert run.data.tags["run_folder"] == str(run_dir)
    history = client.get_metric_history(run.info.run_id, "val/pr_auc/macro")
    assert len(history) >= 2  # every epoch (and the validation of the best checkpoint)
    result = json.loads((run_dir / "result.json").read_text())
    assert max(m.value for m in history) == pytest.approx(result["value"], abs=1e-6)
