from livedead.config.resolvers import DATA_CODE, spec_hash


def test_the_synthetic_cache_key_follows_the_spec_and_the_code(monkeypatch, tmp_path):
    spec = {"wells": 8, "timepoints": 4}
    assert spec_hash(spec) == spec_hash(dict(reversed(spec.items())))
    assert spec_hash(spec) != spec_hash({**spec, "wells": 9})
    # a change to the code that makes the data remakes it
    import livedead.config.resolvers as resolvers

    fake = tmp_path / "livedead" / "config" / "resolvers.py"
    (tmp_path / "livedead" / "data").mkdir(parents=True)
    fake.parent.mkdir(parents=True)
    for name in DATA_CODE:
        (tmp_path / "livedead" / "data" / f"{name}.py").write_text("# version 1\n")
    monkeypatch.setattr(resolvers, "__file__", str(fake))
    before = spec_hash(spec)
    (tmp_path / "livedead" / "data" / "labels.py").write_text("# version 2\n")
    assert spec_hash(spec) != before
