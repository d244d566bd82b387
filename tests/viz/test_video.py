import pytest


@pytest.mark.parametrize("fmt", [pytest.param("mp4", marks=pytest.mark.slow), "gif"])  # mp4: an ffmpeg process
def test_video_of_the_overlays(fitted, tmp_path, fmt):
    import imageio.v2 as imageio

    from livedead.viz.video import make_video

    root, _, _ = fitted
    out = make_video(root, tmp_path / f"v.{fmt}", fmt=fmt, fps=2)
    if fmt == "gif":
        frames = imageio.mimread(out, memtest=False)
        count, first = len(frames), frames[0]
    else:
        reader = imageio.get_reader(out, format="FFMPEG")
        count, first = reader.count_frames(), reader.get_data(0)
    assert count == 2
    assert first.shape[0] % 16 == 0
    assert first.shape[1] >= 4 * 160


def test_video_cli_bad_run(tmp_path):
    from tests.helpers import assert_one_line_error, run_cli

    assert_one_line_error(run_cli("livedead.video", f"run={tmp_path / 'nope'}"), "nope", "run folder not found")
    (tmp_path / "empty").mkdir()
    assert_one_line_error(run_cli("livedead.video", f"run={tmp_path / 'empty'}"), "empty", "event files")
