"""The commands' error handling: bad input is one line and exit 2, from Hydra's composition or from the task."""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path

import hydra
import pytest
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ValidationError

from livedead.config.app import cli_errors, describe_config_error, run_app
from livedead.config.schema import TrainSettings
from livedead.errors import LivedeadError


def test_an_omegaconf_error_names_its_key_also_inside_hydras():
    settings = OmegaConf.structured(TrainSettings)
    with pytest.raises(ValidationError) as err:
        settings.seed = "many"
    line = "config key 'seed': Value 'many' of type 'str' could not be converted to Integer"
    assert describe_config_error(err.value) == line
    wrapped = HydraException("Error merging override seed=many")
    wrapped.__cause__ = err.value  # as Hydra raises it: from the OmegaConf error
    assert describe_config_error(wrapped) == line


def test_a_missing_group_option_lists_the_options():
    missing = MissingConfigException("not found", "optimizer/rmsprop", options=["sgd", "adam", "adamw"])
    line = "config group 'optimizer': expected one of adam, adamw, sgd, found 'rmsprop'"
    assert describe_config_error(missing) == line
    assert describe_config_error(HydraException("Could not\n   override   'x'")) == "Could not override 'x'"


def test_cli_errors_turns_the_tasks_errors_into_one_line_and_exit_2(capsys):
    @cli_errors("livedead.thing")
    def task(kind: str) -> str:
        if kind == "data":
            raise LivedeadError("tiles.h5: expected a tile file, found none")
        if kind == "config":
            OmegaConf.structured(TrainSettings).seed = "x"
        return "done"

    assert task("fine") == "done"
    for kind, line in (("data", "tiles.h5: expected a tile file, found none"), ("config", "config key 'seed': ")):
        with pytest.raises(SystemExit) as exit_:
            task(kind)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"livedead.thing: error: {line}")
        assert err.count("\n") == 1
    with pytest.raises(ZeroDivisionError):  # a bug is no input error: its traceback stays
        cli_errors("p")(lambda: 1 / 0)()


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real ``@hydra.main`` app with one group (``colour``: red, blue) and an int key, run with given argv."""
    (tmp_path / "colour").mkdir()
    (tmp_path / "colour" / "red.yaml").write_text("name: red\n")
    (tmp_path / "colour" / "blue.yaml").write_text("name: blue\n")
    quiet = "  - override hydra/job_logging: none\n  - override hydra/hydra_logging: none\n"  # as conf/hydra/tool.yaml
    (tmp_path / "app.yaml").write_text(f"defaults:\n  - colour: red\n{quiet}  - _self_\nsize: 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)  # run_app sets its own
    seen: list[DictConfig] = []

    @hydra.main(version_base="1.3", config_path=str(tmp_path), config_name="app")
    @cli_errors("app")
    def main(cfg: DictConfig) -> None:
        seen.append(cfg)
        if cfg.size < 0:
            raise LivedeadError(f"config key 'size': expected >= 0, found {cfg.size}")

    def run(*argv: str) -> list[DictConfig]:
        monkeypatch.setattr(sys, "argv", ["app", "hydra.run.dir=.", "hydra.output_subdir=null", *argv])
        GlobalHydra.instance().clear()
        run_app(main, "app")
        return seen

    return run


def test_run_app_composes_and_runs(app):
    (cfg,) = app("colour=blue", "size=5")
    assert (cfg.colour.name, cfg.size) == ("blue", 5)
    assert "HYDRA_FULL_ERROR" not in os.environ, "set for the call only"


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["colour=green"], "app: error: config group 'colour': expected one of blue, red, found 'green'"),
        (["size=-1"], "app: error: config key 'size': expected >= 0, found -1"),
        (["size=="], "app: error: "),
    ],
)
def test_bad_input_anywhere_is_one_line_and_exit_2(app, capsys, argv, line):
    with pytest.raises(SystemExit) as exit_:
        app(*argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(line), err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def test_a_full_disk_in_a_background_writer_is_left_to_the_command(app, capsys):
    app()

    def fail(error: BaseException) -> None:
        thread = threading.Thread(target=lambda: (_ for _ in ()).throw(error))
        thread.start()
        thread.join()

    fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert capsys.readouterr().err == ""
    fail(ValueError("a real bug"))
    assert "ValueError: a real bug" in capsys.readouterr().err
