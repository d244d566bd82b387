import os
import re

import h5py
import numpy as np
import pytest
import tifffile

from livedead.data.preparation import PrepareConfig, prepare
from livedead.errors import LivedeadError
from livedead.nuclei.labels import labels_from_stains
from livedead.plates.synthetic import PlateSpec, generate_plate
from tests.helpers import assert_one_line_error, run_cli


def test_final_file_layout(tiles_path):
    with h5py.File(tiles_path) as f:
        n = f["images"].shape[0]
        assert f["images"].shape == (n, 1, 160, 160)
        assert f["images"].dtype == np.uint16
        assert f["labels"].shape == (n, 160, 160)
        assert f["labels"].dtype == np.uint8
        assert f["class_counts"].shape == (n, 3)
        assert f["class_counts"].dtype == np.int64
        assert f["origin"].shape == (n, 4)
        assert f["origin"].dtype == np.int32
        for name in ("images", "labels", "class_counts", "origin"):
            assert f[name].chunks[0] == 50
            assert f[name].chunks[1:] == f[name].shape[1:]
        attrs = dict(f.attrs)
    assert attrs["tile"] == 160
    assert attrs["stride"] == 80
    assert list(attrs["class_names"]) == ["background", "dapi", "cy5"]
    assert attrs["format"] == "livedead-tiles/1"
    assert attrs["format_version"] == 1
    assert attrs["split_by"] == "well"
    assert attrs["split_seed"] == 0
    assert attrs["source"].endswith("plate.h5")
    assert 0 < attrs["n_train"] < n


def test_each_tile_is_the_raw_crop_at_its_origin_with_its_labels(tiles_path, plate_path):
    with h5py.File(tiles_path) as f, h5py.File(plate_path) as p:
        images, labels, counts, origin = (f[k][:] for k in ("images", "labels", "class_counts", "origin"))
        raw = p["images"][:]
    stain_labels = {}
    for i, (w, t, y, x) in enumerate(origin):
        np.testing.assert_array_equal(images[i, 0], raw[w, t, 0, y : y + 160, x : x + 160])
        if (w, t) not in stain_labels:
            stain_labels[w, t] = labels_from_stains(raw[w, t, 1], raw[w, t, 2])
        np.testing.assert_array_equal(labels[i], stain_labels[w, t][y : y + 160, x : x + 160])
        np.testing.assert_array_equal(counts[i], np.bincount(labels[i].ravel(), minlength=3))


def test_only_multiclass_tiles_are_kept(tiles_path):
    intermediate = tiles_path.with_name("tiles.all.h5")
    with h5py.File(intermediate) as a, h5py.File(tiles_path) as f:
        all_counts = a["class_counts"][:]
        assert a["images"].chunks[0] == 50
        multi = (all_counts > 0).sum(axis=1) > 1
        kept = f["class_counts"][:]
        assert len(kept) == multi.sum()
        assert ((kept > 0).sum(axis=1) > 1).all()
        assert f.attrs["tiles_seen"] == len(all_counts)


def test_sparse_plate_drops_single_class_tiles(tmp_path):
    plate = generate_plate(
        tmp_path / "sparse.h5", PlateSpec(wells=2, timepoints=1, height=480, width=480, density=40), progress=False
    )
    summary = prepare(plate, tmp_path / "t.h5", PrepareConfig(labels="truth", progress=False))
    assert 0 < summary.tiles_kept < summary.tiles_seen


@pytest.mark.slow
def test_split_by_well_is_disjoint_contiguous_and_seeded(tiles_path, plate_path, tmp_path):
    with h5py.File(tiles_path) as f:
        n_train = int(f.attrs["n_train"])
        wells = f["origin"][:, 0]
        val_units = list(f.attrs["val_units"])
    assert set(wells[:n_train]).isdisjoint(wells[n_train:])
    assert len(val_units) >= 1
    assert len(set(wells[n_train:])) == len(val_units)
    # A contiguous batch mixes images: the training order is shuffled, not image by image.
    assert len(set(map(tuple, f_origin_head(tiles_path)))) > 1
    again = tmp_path / "again.h5"
    prepare(plate_path, again, PrepareConfig(chunk=50, progress=False))
    with h5py.File(tiles_path) as a, h5py.File(again) as b:
        np.testing.assert_array_equal(a["origin"][:], b["origin"][:])
    other = tmp_path / "other.h5"
    prepare(plate_path, other, PrepareConfig(chunk=50, seed=1, progress=False))
    with h5py.File(tiles_path) as a, h5py.File(other) as b:
        assert not np.array_equal(a["origin"][:], b["origin"][:])


def f_origin_head(path, n=20):
    with h5py.File(path) as f:
        return f["origin"][:n, :2]


def test_split_by_image_is_about_ninety_ten(plate_path, tmp_path):
    out = tmp_path / "img.h5"
    summary = prepare(plate_path, out, PrepareConfig(split_by="image", progress=False))
    with h5py.File(out) as f:
        origin = f["origin"][:]
        n_train = int(f.attrs["n_train"])
    train = set(map(tuple, origin[:n_train, :2]))
    val = set(map(tuple, origin[n_train:, :2]))
    assert train.isdisjoint(val)
    assert 0.08 <= 1 - summary.n_train / summary.tiles_kept <= 0.3


@pytest.mark.slow
def test_tiff_folder_gives_the_same_tiles_as_hdf5(plate_path, tiles_path, tmp_path):
    folder = tmp_path / "tiffs"
    folder.mkdir()
    with h5py.File(plate_path) as p:
        for w in range(p["images"].shape[0]):
            for t in range(p["images"].shape[1]):
                tifffile.imwrite(folder / f"A{w + 1}_t{t:03d}.tif", p["images"][w, t], photometric="minisblack")
    out = tmp_path / "from_tiff.h5"
    cli = run_cli("livedead.prepare", f"input={folder}", f"output={out}", "chunk=50", "progress=false")
    assert cli.returncode == 0, cli.stderr
    assert "tiles kept" in cli.stdout
    with h5py.File(out) as a, h5py.File(tiles_path) as b:
        np.testing.assert_array_equal(a["images"][:], b["images"][:])
        np.testing.assert_array_equal(a["labels"][:], b["labels"][:])
        assert list(a.attrs["wells"]) == ["A1", "A2", "A3"]


@pytest.mark.slow
def test_two_workers_write_the_file_one_process_writes(plate_path, tmp_path):
    """Parallel labelling changes nothing in the output: every dataset and attribute is the same."""
    files = {n: tmp_path / f"w{n}.h5" for n in (1, 2)}
    summaries = [prepare(plate_path, f, PrepareConfig(chunk=50, workers=n, progress=False)) for n, f in files.items()]
    with h5py.File(files[1]) as a, h5py.File(files[2]) as b:
        for name in ("images", "labels", "class_counts", "origin"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
        assert {k: str(v) for k, v in a.attrs.items()} == {k: str(v) for k, v in b.attrs.items()}
    assert summaries[0].tiles_kept == summaries[1].tiles_kept > 0


def test_workers_take_images_of_other_sizes_than_the_first(plate_path, tmp_path):
    """A TIFF folder's images may differ in size. The workers' shared result slots are sized by the
    first image: a smaller one fills part of a slot, a larger one comes back whole. The file is
    the one a single process writes."""
    folder = tmp_path / "tiffs"
    folder.mkdir()
    sizes = {(0, 0): (256, 240), (0, 1): (256, 320), (1, 0): (176, 240), (1, 1): (256, 320)}
    with h5py.File(plate_path) as p:
        for (w, t), (h, wide) in sizes.items():
            image = p["images"][w, t][:, :h, :wide]
            tifffile.imwrite(folder / f"A{w + 1}_t{t:03d}.tif", image, photometric="minisblack")
    files = {n: tmp_path / f"w{n}.h5" for n in (1, 2)}
    for n, f in files.items():
        prepare(folder, f, PrepareConfig(chunk=20, workers=n, progress=False))
    with h5py.File(files[1]) as a, h5py.File(files[2]) as b:
        for name in ("images", "labels", "class_counts", "origin"):
            np.testing.assert_array_equal(a[name][:], b[name][:])
        origin = a["origin"][:]
    for (w, t), size in sizes.items():  # every image's tiles, the larger ones' too, reach as far as it does
        ends = origin[(origin[:, 0] == w) & (origin[:, 1] == t), 2:] + 160
        assert len(ends)
        assert (ends <= size).all()
        assert (ends == size).any(axis=0).all()


def test_the_plan_deals_whole_images_into_seeded_groups_training_first(plate_path):
    """Every image once; groups of about shuffle_chunks chunks of tiles; no group mixes the splits."""
    from livedead.data.preparation import plan_images
    from livedead.plates.sources import open_plate

    plate, _ = open_plate(plate_path)
    cfg = PrepareConfig(chunk=9, shuffle_chunks=2)  # 3x3 tiles of 256x256 px at stride 80: 2 images a group
    plan = plan_images(plate, cfg)
    assert sorted(plan.order) == plate.index
    assert all(len(g) <= 2 for g in plan.groups)
    assert len(plan.groups[0]) == 2
    val_wells = {plate.wells.index(u.removeprefix("well ")) for u in plan.val_units}
    sides = [{w in val_wells for w, _ in g} for g in plan.groups]
    assert all(len(side) == 1 for side in sides)
    assert [side.pop() for side in sides] == [False] * plan.n_train_groups + [True] * (len(sides) - plan.n_train_groups)
    assert plan.order != plate.index  # shuffled
    assert plan_images(plate, cfg).groups == plan.groups
    assert plan_images(plate, PrepareConfig(chunk=9, shuffle_chunks=2, seed=1)).groups != plan.groups


@pytest.mark.slow
def test_memory_does_not_grow_with_tiles(tmp_path):
    """Peak memory of prepare is a group of images and a chunk, not the plate (measured with tracemalloc;
    groups of one chunk of tiles, so that both plates hold several)."""
    import tracemalloc

    peaks = []
    for wells in (2, 6):
        plate = generate_plate(
            tmp_path / f"p{wells}.h5", PlateSpec(wells=wells, timepoints=2, height=320, width=320), progress=False
        )
        tracemalloc.start()
        cfg = PrepareConfig(chunk=20, shuffle_chunks=1, labels="truth", progress=False)
        prepare(plate, tmp_path / f"t{wells}.h5", cfg)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < 1.3 * peaks[0], peaks


# --- bad input: one clear line, a non-zero exit, nothing half-written -----------------------


def _write_plate(path, images, channels=("brightfield", "hoechst", "draq7")):
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("images", data=images)
        ds.attrs["channels"] = list(channels)
    return path


@pytest.fixture
def out(tmp_path):
    yield tmp_path / "tiles.h5"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith("tiles")]
    assert leftovers == [], f"a failed run left {leftovers}"


def test_missing_file(tmp_path, out):
    proc = run_cli("livedead.prepare", f"input={tmp_path / 'nope.h5'}", f"output={out}")
    assert_one_line_error(proc, "nope.h5", "not found")


def test_missing_input_key(out):
    proc = run_cli("livedead.prepare", f"output={out}")
    assert_one_line_error(proc, "input")


def test_missing_dataset_key(tmp_path, out):
    path = tmp_path / "nokey.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("pixels", data=np.zeros(3))
    proc = run_cli("livedead.prepare", f"input={path}", f"output={out}")
    assert_one_line_error(proc, "nokey.h5", "'/images'", "pixels")


def test_wrong_dimensions(tmp_path, out):
    path = _write_plate(tmp_path / "dims.h5", np.zeros((2, 3, 64, 64), np.uint16))
    proc = run_cli("livedead.prepare", f"input={path}", f"output={out}")
    assert_one_line_error(proc, "dims.h5", "5 dims", "(2, 3, 64, 64)")


def test_channels_do_not_match(tmp_path, out):
    path = _write_plate(tmp_path / "ch.h5", np.zeros((1, 1, 2, 200, 200), np.uint16))
    proc = run_cli("livedead.prepare", f"input={path}", f"output={out}")
    assert_one_line_error(proc, "ch.h5", "2 channels")
    path = _write_plate(tmp_path / "names.h5", np.zeros((1, 1, 3, 200, 200), np.uint16), ("bf", "dapi", "cy5"))
    proc = run_cli("livedead.prepare", f"input={path}", f"output={out}")
    assert_one_line_error(proc, "names.h5", "brightfield", "'channels'")


def test_tile_larger_than_image(plate_path, out):
    proc = run_cli("livedead.prepare", f"input={plate_path}", f"output={out}", "tile=300")
    assert_one_line_error(proc, "'tile'", "256", "300")


@pytest.mark.parametrize("stride", [0, -80])
def test_stride_not_positive(plate_path, out, stride):
    proc = run_cli("livedead.prepare", f"input={plate_path}", f"output={out}", f"stride={stride}")
    assert_one_line_error(proc, "'stride'", "> 0", str(stride))


def test_no_tile_with_two_classes(tmp_path, out):
    rng = np.random.default_rng(0)
    path = _write_plate(tmp_path / "blank.h5", rng.normal(500, 5, (2, 1, 3, 200, 200)).astype(np.uint16))
    proc = run_cli("livedead.prepare", f"input={path}", f"output={out}")
    assert_one_line_error(proc, "blank.h5", "more than one class", "none")


def test_truncated_hdf5(plate_path, tmp_path, out):
    path = tmp_path / "cut.h5"
    data = plate_path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    proc = run_cli("livedead.prepare", f"input={path}", f"output={out}")
    assert_one_line_error(proc, "cut.h5", "HDF5")


def test_failure_midway_leaves_nothing(plate_path, tmp_path):
    """An error after tiles have been written leaves no output under any name."""
    with pytest.raises(LivedeadError):
        prepare(plate_path, tmp_path / "t.h5", PrepareConfig(split_by="well", val_fraction=0.1, seed=0, labels="x"))
    single = generate_plate(tmp_path / "one.h5", PlateSpec(wells=1, timepoints=1, height=200, width=200))
    with pytest.raises(LivedeadError, match="at least 2 wells"):
        prepare(single, tmp_path / "t.h5", PrepareConfig(progress=False, keep_intermediate=True))  # before any tile
    assert sorted(os.listdir(tmp_path)) == ["one.h5"]
    rng = np.random.default_rng(0)
    blank = _write_plate(tmp_path / "blank.h5", rng.normal(500, 5, (2, 1, 3, 200, 200)).astype(np.uint16))
    with pytest.raises(LivedeadError, match="more than one class"):  # found once every image is tiled
        prepare(blank, tmp_path / "t.h5", PrepareConfig(progress=False, keep_intermediate=True))
    # no output; the kept first pass is whole (and marked so): a rerun with other settings reuses it
    assert sorted(os.listdir(tmp_path)) == ["blank.h5", "one.h5", "t.all.h5"]
    with h5py.File(tmp_path / "t.all.h5") as f:
        assert f.attrs["complete"]


def test_failure_while_writing_leaves_nothing(plate_path, tmp_path):
    """The third of four images is unreadable: two images' tiles are already in the file (chunks of 5)."""
    folder = tmp_path / "tiffs"
    folder.mkdir()
    with h5py.File(plate_path) as p:
        for w, t in ((0, 0), (0, 1), (0, 2), (1, 0)):
            tifffile.imwrite(folder / f"A{w + 1}_t{t:03d}.tif", p["images"][w, t], photometric="minisblack")
    (folder / "A1_t002.tif").write_bytes(b"II*\x00 damaged in transfer")
    out = tmp_path / "out"
    with pytest.raises(LivedeadError, match=r"A1_t002.tif: expected a"):  # raised in a worker
        prepare(folder, out / "t.h5", PrepareConfig(chunk=5, keep_intermediate=True, workers=2, progress=False))
    assert sorted(os.listdir(out)) == []


def test_a_value_of_the_wrong_type_is_one_line(plate_path, out):
    proc = run_cli("livedead.prepare", f"input={plate_path}", f"output={out}", "tile=abc")
    assert_one_line_error(proc, "'tile'", "abc", "Integer")
    assert proc.returncode == 2


def test_val_wells_hold_out_exactly_those_wells(plate_path, tmp_path):
    """A plate whose wells come in groups (the fields of one experiment day) is validated on whole groups."""
    out = tmp_path / "given.h5"
    summary = prepare(plate_path, out, PrepareConfig(chunk=50, val_wells=["W02"], progress=False))
    with h5py.File(out) as f:
        wells = f["origin"][:, 0]
        n_train = int(f.attrs["n_train"])
        assert list(f.attrs["val_units"]) == ["well W02"]
    assert set(wells[n_train:]) == {1}
    assert 1 not in set(wells[:n_train])
    assert summary.val_units == ["well W02"]


@pytest.mark.parametrize(
    ("overrides", "found"),
    [
        ({"val_wells": ["W09"]}, "found unknown wells ['W09']"),
        ({"val_wells": ["W01", "W02", "W03"]}, "found 3 of the 3 wells"),
        ({"val_wells": ["W01"], "split_by": "image"}, "split_by=well, found split_by=image"),
    ],
)
def test_bad_val_wells_are_one_line(plate_path, tmp_path, overrides, found):
    with pytest.raises(LivedeadError, match=r"config key 'val_wells': expected .*" + re.escape(found)):
        prepare(plate_path, tmp_path / "t.h5", PrepareConfig(progress=False, **overrides))
    assert not (tmp_path / "t.h5").exists()
