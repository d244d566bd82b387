import importlib.util

import pytest

import livedead.config.resolvers as resolvers
from livedead.config.resolvers import DATA_CODE, spec_hash


def test_the_code_that_makes_the_synthetic_data_is_found_by_module_name():
    assert all(importlib.util.find_spec(name) is not None for name in DATA_CODE)
    assert "livedead.plates.synthetic" in DATA_CODE


def test_the_synthetic_cache_key_follows_the_spec_and_the_code(monkeypatch, tmp_path):
    spec = {"wells": 8, "timepoints": 4}
    assert spec_hash(spec) == spec_hash(dict(reversed(spec.items())))
    assert spec_hash(spec) != spec_hash({**spec, "wells": 9})
    # a change to the generator remakes the data: a copy of it stands in for the real one
    generator = tmp_path / "fake_generator.py"
    generator.write_text("# version 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = tuple("fake_generator" if n == "livedead.plates.synthetic" else n for n in DATA_CODE)
    monkeypatch.setattr(resolvers, "DATA_CODE", names)
    before = spec_hash(spec)
    generator.write_text("# version 2\n")
    assert spec_hash(spec) != before


def test_a_module_missing_from_the_cache_key_is_named(monkeypatch):
    monkeypatch.setattr(resolvers, "DATA_CODE", ("livedead.plates.no_such_module",))
    with pytest.raises(LookupError, match="no_such_module"):
        spec_hash({"wells": 1})
