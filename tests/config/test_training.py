import json

from livedead.config.training import _previous_result


def test_an_earlier_result_cut_off_by_a_kill_is_no_record(tmp_path, capsys):
    path = tmp_path / "result.json"
    assert _previous_result(path) == {}
    path.write_text(json.dumps({"status": "ok", "value": 0.9}))
    assert _previous_result(path) == {"status": "ok", "value": 0.9}
    path.write_text('{"status": "ok", "val')
    assert _previous_result(path) == {}
    assert "cannot be read" in capsys.readouterr().out
