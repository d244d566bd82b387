"""The schedule comparison: a loss with plateaus, each scheduler stepped as Lightning steps it, and the figure."""

from functools import partial

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg

from livedead.model.schedulers import CosineAnnealingWithKicks
from livedead.viz.schedules import metric_sequence, plot, trajectory
from tests.helpers import colour_mask


def test_the_loss_is_flat_on_its_plateaus_and_seeded():
    loss = metric_sequence(40, [[10, 20]], noise=0.0, seed=0)
    assert np.all(np.diff(loss[:10]) < 0)
    assert np.ptp(loss[9:20]) == 0
    assert np.all(np.diff(loss[20:]) < 0)
    assert 0.3 < loss[-1] < loss[0] <= 1.0
    noisy = metric_sequence(40, [[10, 20]], noise=0.01, seed=1)
    np.testing.assert_array_equal(noisy, metric_sequence(40, [[10, 20]], noise=0.01, seed=1))
    assert not np.array_equal(noisy, metric_sequence(40, [[10, 20]], noise=0.01, seed=2))


def test_trajectories_are_the_rate_at_the_start_of_each_epoch():
    metric = metric_sequence(12, [[3, 12]], noise=0.0, seed=0)
    np.testing.assert_array_equal(trajectory(None, False, 0.1, metric), np.full(12, 0.1))
    step = trajectory(partial(torch.optim.lr_scheduler.StepLR, step_size=4, gamma=0.5), False, 0.1, metric)
    np.testing.assert_allclose(step, [0.1] * 4 + [0.05] * 4 + [0.025] * 4)
    # ReduceLROnPlateau gets the metric even when not asked: it cannot step without one
    plateau = partial(torch.optim.lr_scheduler.ReduceLROnPlateau, patience=2, factor=0.1)
    lrs = trajectory(plateau, False, 0.1, metric)
    assert lrs[0] == 0.1
    assert lrs[-1] < 0.1, "cut once the loss stopped falling"
    kicks = trajectory(partial(CosineAnnealingWithKicks, T_0=4, patience=1), True, 0.1, metric)
    assert (np.diff(kicks) > 0).any(), "kicked back up on the plateau"


def test_the_figure_draws_every_schedule_and_the_loss():
    metric = metric_sequence(20, [[5, 10]], noise=0.0, seed=0)
    schedules = {"constant": np.full(20, 0.1), "halved": np.repeat([0.1, 0.05], 10)}
    fig = plot(schedules, metric, "two schedules")
    top, bottom = fig.axes
    assert [line.get_label() for line in top.get_lines()] == ["constant", "halved"]
    assert top.get_title() == "two schedules"
    np.testing.assert_array_equal(bottom.get_lines()[0].get_ydata(), metric)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    assert colour_mask(rgb, "C0", tol=2).sum() > 100
    assert colour_mask(rgb, "C1", tol=2).sum() > 100
    assert colour_mask(rgb, "black", tol=30).sum() > 100
