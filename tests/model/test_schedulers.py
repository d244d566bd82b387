import csv
import itertools
import math
from functools import partial

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger

from livedead.errors import LivedeadError
from livedead.model.module import LiveDeadModule
from livedead.model.schedulers import CosineAnnealingWithKicks
from livedead.model.unet import UNet
from tests.helpers import assert_one_line_error, data_for, run_cli


def optimizer(lr=1.0, groups=1):
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr * (i + 1)} for i in range(groups)]
    return torch.optim.SGD(params, lr=lr)


def run(scheduler, metrics):
    out = []
    for m in metrics:
        scheduler.step(m)
        out.append(scheduler.get_last_lr()[0])
    return out


def cos_step(floor, peak, t, T):
    return floor + (peak - floor) * (1 + math.cos(math.pi * min(t, T) / T)) / 2


def test_without_plateau_it_is_cosine_annealing_then_eta_min():
    opt_a, opt_b = optimizer(0.1), optimizer(0.1)
    kicks = CosineAnnealingWithKicks(opt_a, T_0=7, eta_min=0.001, patience=1000)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt_b, T_max=7, eta_min=0.001)
    ours = run(kicks, [1.0] * 12)
    for epoch in range(7):
        cosine.step()
        assert ours[epoch] == pytest.approx(cosine.get_last_lr()[0], rel=1e-9, abs=1e-12)
    assert ours[7:] == pytest.approx([0.001] * 5)


def test_kick_1_factor_1_restarts_to_the_previous_peak():
    s = CosineAnnealingWithKicks(optimizer(1.0), T_0=4, kick=1.0, factor=1.0, patience=0)
    lrs = run(s, [3.0, 3.0])
    # step 1 improves (lr on the cosine), step 2 does not: kick back to the first peak
    assert lrs[0] == pytest.approx(cos_step(0, 1, 1, 4))
    assert lrs[1] == pytest.approx(1.0)
    assert s.floor[0] == pytest.approx(lrs[0])  # factor 1: the new floor is the rate at the kick


def test_hand_computed_plateau_kick_and_t_mult():
    s = CosineAnnealingWithKicks(optimizer(1.0), T_0=4, T_mult=2, kick=0.5, factor=0.5, patience=1, threshold=0)
    lrs = run(s, [5, 4, 4, 4, 3, 3.5])
    # steps 1-3 follow the first cosine from 1 to 0 over T=4
    assert lrs[:3] == pytest.approx([(1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2])
    # step 4: the third epoch without improvement (> patience 1): kick from x = lrs[2]
    x = lrs[2]
    peak, floor = x + 0.5 * (1 - x), 0.5 * x
    assert lrs[3] == pytest.approx(peak)
    assert s.T == [8]
    # step 5 improves, step 6 does not (one bad epoch, not more than patience): on the new cosine, T = 8
    assert lrs[4] == pytest.approx(cos_step(floor, peak, 1, 8))
    assert lrs[5] == pytest.approx(cos_step(floor, peak, 2, 8))


def test_hand_computed_cooldown():
    s = CosineAnnealingWithKicks(optimizer(1.0), T_0=10, kick=0.5, factor=0.5, patience=0, cooldown=2)
    lrs = run(s, [1.0] * 5)
    a = cos_step(0, 1, 1, 10)  # step 1: first value, an improvement
    assert lrs[0] == pytest.approx(a)
    peak, floor = a + 0.5 * (1 - a), 0.5 * a  # step 2: no improvement, patience 0: kick
    assert lrs[1] == pytest.approx(peak)
    # steps 3-4: cooldown keeps num_bad_epochs at 0: no kick
    assert lrs[2] == pytest.approx(cos_step(floor, peak, 1, 10))
    assert lrs[3] == pytest.approx(cos_step(floor, peak, 2, 10))
    x = lrs[3]  # step 5: cooldown over, no improvement: kick towards the last peak
    assert lrs[4] == pytest.approx(x + 0.5 * (peak - x))


def test_mode_max_and_per_group_state():
    s = CosineAnnealingWithKicks(optimizer(1.0, groups=2), T_0=5, mode="max", patience=0, threshold_mode="abs")
    s.step(0.5)
    s.step(0.9)  # improvement in max mode: no kick
    assert s.t == [2, 2]
    s.step(0.9)  # no improvement: kick both groups, each from its own rate
    assert s.t == [0, 0]
    assert s.peak[1] == pytest.approx(2 * s.peak[0])


def test_state_dict_round_trip_mid_cycle():
    metrics = [5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2]
    straight = CosineAnnealingWithKicks(optimizer(1.0), T_0=5, T_mult=1.5, patience=1, cooldown=1)
    expected = run(straight, metrics)
    first = CosineAnnealingWithKicks(optimizer(1.0), T_0=5, T_mult=1.5, patience=1, cooldown=1)
    head = run(first, metrics[:6])
    opt = optimizer(1.0)
    resumed = CosineAnnealingWithKicks(opt, T_0=1)
    resumed.load_state_dict(first.state_dict())
    opt.param_groups[0]["lr"] = head[-1]  # the optimizer's own state is restored with it
    assert head + run(resumed, metrics[6:]) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"T_0": 0}, "T_0"),
        ({"kick": 1.5}, "kick"),
        ({"kick": -0.1}, "kick"),
        ({"factor": 0.0}, "factor"),
        ({"factor": 1.2}, "factor"),
        ({"mode": "median"}, "mode"),
    ],
)
def test_bad_arguments(kwargs, key):
    with pytest.raises(LivedeadError, match=f"'{key}'"):
        CosineAnnealingWithKicks(optimizer(), **{"T_0": 5, **kwargs})


def test_step_without_metric():
    with pytest.raises(LivedeadError, match="expected the monitored metric"):
        CosineAnnealingWithKicks(optimizer(), T_0=5).step()


@pytest.mark.slow
def test_trainer_logs_the_same_trajectory_as_driving_it_by_hand(tiles_path, tmp_path):
    torch.manual_seed(0)
    factory = partial(CosineAnnealingWithKicks, T_0=3, patience=0, kick=0.6, factor=0.5, threshold=0.0)
    module = LiveDeadModule(
        net=UNet(base_channels=4, depth=2),
        optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9),
        scheduler=factory,
        scheduler_config={"interval": "epoch", "monitor": "val/loss", "reduce_on_plateau": True},
        overlay_tiles=0,
    )
    trainer = L.Trainer(
        max_epochs=5,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="csv", version="v"),
        callbacks=[LearningRateMonitor(logging_interval="epoch")],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=data_for(module, tiles_path))
    with open(tmp_path / "csv" / "v" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    logged_lr = [float(r["lr"]) for r in rows if r.get("lr")]
    val_loss = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert len(logged_lr) == 5
    assert len(val_loss) == 5
    by_hand = factory(optimizer(0.05))
    expected = [0.05]
    for loss in val_loss[:-1]:
        by_hand.step(loss)
        expected.append(by_hand.get_last_lr()[0])
    assert logged_lr == pytest.approx(expected, rel=1e-6)
    assert any(b > a for a, b in itertools.pairwise(expected)), "the run should contain a kick"


def test_plot_schedules_draws_every_configured_schedule(tmp_path):
    out = tmp_path / "schedules.png"
    proc = run_cli("livedead.plot_schedules", f"output={out}", "epochs=30")
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 10_000
    assert_one_line_error(run_cli("livedead.plot_schedules", "epochs=1"), "'epochs'", ">= 2", "1")
