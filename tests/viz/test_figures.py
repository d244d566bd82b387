"""The figures: a confusion matrix that reads by row, counts over time against the truth, seams where fields lie,
and PNGs written whole."""

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from livedead.viz.figures import confusion_figure, count_figures, plot_counts, save_figure, seams_figure
from tests.helpers import colour_mask, png_pixels


def test_the_confusion_matrix_is_normalised_by_truth_with_the_counts_written_in():
    fig = confusion_figure(np.array([[90, 10, 0], [5, 15, 0], [0, 0, 0]]), ["background", "dapi", "cy5"])
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.images[0].get_array(), [[0.9, 0.1, 0], [0.25, 0.75, 0], [0, 0, 0]])
    texts = [t.get_text() for t in ax.texts]
    assert texts[:2] == ["0.90\n90", "0.10\n10"]
    assert texts[8] == "0.00\n0", "a class never seen is no division by zero"
    assert [t.get_color() for t in ax.texts[:2]] == ["white", "black"], "legible on dark and light cells"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["background", "dapi", "cy5"]


def rows(reference: str | None, hours: bool) -> list[dict]:
    out = []
    for k, well in enumerate(("A01", "B02")):  # apart, so that no line hides another
        for t in range(4):
            row = {"well": well, "time": t, "live": 10 - t + 20 * k, "dead": t, "dead_fraction": t / 10 + 0.5 * k}
            row["time_h"] = 0.5 * t if hours else None
            if reference:
                row |= {f"{reference}_live": 11 - t + 20 * k, f"{reference}_dead": t}
            out.append(row)
    return out


@pytest.mark.parametrize(("reference", "hours"), [("true", True), ("stain", False), (None, False)])
def test_counts_are_lines_per_well_with_the_reference_dotted(reference, hours):
    counts, fraction = count_figures(rows(reference, hours))
    lines = counts.axes[0].get_lines()
    assert len(lines) == 2 * (4 if reference else 2), "live and dead per well, and the reference's"
    assert lines[0].get_color() == lines[1].get_color() == "C0"
    assert lines[0].get_ydata().tolist() == [10, 9, 8, 7]
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 0.5, 1, 1.5] if hours else [0, 1, 2, 3])
    assert counts.axes[0].get_xlabel() == ("time (h)" if hours else "time point")
    if reference:
        dotted = [ln for ln in lines if ln.get_linestyle() == ":"]
        assert dotted[0].get_ydata().tolist() == [11, 10, 9, 8]
        assert ("truth" if reference == "true" else "stains") in counts.axes[0].get_title()
    assert fraction.axes[0].get_ylim() == (0, 1)


def test_plot_counts_writes_both_pngs_with_the_lines_drawn(tmp_path):
    plot_counts(rows("true", True), tmp_path)
    for name in ("counts_over_time.png", "dead_fraction.png"):
        rgb = png_pixels(tmp_path / name)
        assert colour_mask(rgb, "C0", tol=2).sum() > 500, f"{name}: well A01"
        assert colour_mask(rgb, "C1", tol=2).sum() > 500, f"{name}: well B02"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts_over_time.png", "dead_fraction.png"], "no temporaries"


def test_save_figure_leaves_the_previous_file_when_drawing_fails(tmp_path):
    out = save_figure(confusion_figure(np.eye(2), ["a", "b"]), tmp_path / "cm.png")
    before = out.read_bytes()
    bad = confusion_figure(np.eye(2), ["a", "b"])
    bad.axes[0].text(0, 0, r"$\notacommand$")  # mathtext fails while saving
    with pytest.raises(ValueError, match="notacommand"):
        save_figure(bad, out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["cm.png"]


def test_seams_outline_each_field_where_it_was_placed():
    positions = np.array([(0, 0), (0, 90), (95, 0), (95, 90)])
    fig = seams_figure(np.random.default_rng(0).random((195, 190)), positions, (100, 100), cols=2, title="A01")
    patches = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    assert [(p.get_x(), p.get_y()) for p in patches] == [(-0.5, -0.5), (89.5, -0.5), (-0.5, 94.5), (89.5, 94.5)]
    colours = [p.get_edgecolor() for p in patches]
    assert colours[0] == colours[3] != colours[1] == colours[2], "neighbours in two colours"
    assert fig.axes[0].get_title() == "A01"
