"""Evaluation of counts, :mod:`livedead.inference.evaluation`: the scores on known numbers, and the files."""

import json

import numpy as np
import pytest
from rich.console import Console

from livedead.errors import LivedeadError
from livedead.inference.evaluation import count_errors, detection_scores, read_counts, write_counts, write_metrics


def test_count_errors_on_known_numbers():
    errors = count_errors(np.array([[10, 2], [5, 5]]), np.array([[8, 2], [5, 7]]))
    assert errors == pytest.approx(
        {
            "mse_live": 2.0,
            "mse_dead": 2.0,
            "mse": 2.0,
            "mae_live": 1.0,
            "mae_dead": 1.0,
            "relative_error_total": (2 / 10 + 2 / 12) / 2,
            "n": 2,
        }
    )
    assert count_errors(np.array([[0, 0]]), np.array([[0, 0]]))["relative_error_total"] == 0.0  # no cells: no error


def test_detection_scores_sum_over_images():
    scores = detection_scores([{"tp": 8, "found": 10, "true": 9}, {"tp": 1, "found": 2, "true": 4}])
    assert scores == pytest.approx({"precision": 9 / 12, "recall": 9 / 13, "f1": 18 / 25, "found": 12, "true": 13})
    assert detection_scores([{"tp": 0, "found": 0, "true": 0}])["f1"] == 1.0  # nothing to find, nothing found
    assert detection_scores([{"tp": 0, "found": 3, "true": 0}])["precision"] == 0.0


def test_counts_round_trip_with_numbers_as_numbers(tmp_path):
    rows = [
        {"well": "W01", "time": 0, "live": 12, "dead_fraction": 0.25, "diameter_px": None},
        {"well": "W02", "time": 1, "live": 3, "dead_fraction": 0.5, "diameter_px": 9.5, "time_h": 0.25},
    ]
    write_counts(rows, tmp_path)
    back = read_counts(tmp_path)
    assert back[0] == {**rows[0], "time_h": None}  # a column only some rows have: empty elsewhere
    assert back[1] == rows[1]
    assert (tmp_path / "counts.csv").read_text().splitlines()[0] == "well,time,live,dead_fraction,diameter_px,time_h"
    with pytest.raises(LivedeadError, match="expected the counts of a livedead.predict output folder"):
        read_counts(tmp_path / "elsewhere")


def test_metrics_file_holds_the_scores_of_the_model_and_the_stains(tmp_path):
    rows = [{"live": 10, "dead": 2, "true_live": 8, "true_dead": 2, "stain_live": 8, "stain_dead": 3},
            {"live": 5, "dead": 5, "true_live": 5, "true_dead": 7, "stain_live": 5, "stain_dead": 7}]  # fmt: skip
    tiles = {"model": [np.array([[3, 1], [2, 0]])], "stains": [np.array([[2, 1], [2, 0]])],
             "truth": [np.array([[2, 1], [2, 0]])]}  # fmt: skip
    detection = {"model": [{"tp": 8, "found": 10, "true": 9}], "stains": [{"tp": 9, "found": 9, "true": 9}]}
    console = Console(record=True, width=200)
    metrics = write_metrics(rows, tiles, detection, tmp_path, 160, console)
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert metrics["per_image"]["model"] == count_errors(np.array([[10, 2], [5, 5]]), np.array([[8, 2], [5, 7]]))
    assert metrics["per_image"]["stains"]["mse_live"] == 0.0
    assert metrics["per_image"]["stains"]["mse_dead"] == 0.5
    assert metrics["per_tile"]["stains"]["mse"] == 0.0
    assert metrics["per_tile"]["model"]["mse_live"] == 0.5
    assert metrics["per_tile"]["tile_px"] == 160
    assert metrics["detection"]["stains"]["f1"] == 1.0
    text = console.export_text()
    assert "count MSE per image: live 2.00, dead 2.00" in text
    assert "nucleus detection: precision 0.800" in text
