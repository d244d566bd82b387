"""The one image reader: plain TIFF, OME-TIFF with its metadata, channel roles by position or by name."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tifffile

from livedead.errors import LivedeadError
from livedead.plates.images import ImageMeta, LazyImage, TiffBands, pick_channels, read_image, write_ome_tiff
from livedead.plates.sources import TiffLayout, open_plate


def test_ome_tiff_round_trip_keeps_channel_names_pixel_size_and_stage_position(tmp_path):
    data = np.random.default_rng(0).integers(0, 4000, (3, 40, 60), dtype=np.uint16)
    write_ome_tiff(tmp_path / "a.ome.tif", data, ["BF", "Hoechst 33342", "Draq7"], 0.325, (120.5, -40.0))
    back, meta = read_image(tmp_path / "a.ome.tif")
    np.testing.assert_array_equal(back, data)
    assert meta == ImageMeta(["BF", "Hoechst 33342", "Draq7"], 0.325, (120.5, -40.0))
    with tifffile.TiffFile(tmp_path / "a.ome.tif") as tif:  # what napari and Fiji read
        assert 'PhysicalSizeX="0.325"' in tif.ome_metadata
        assert 'Name="Hoechst 33342"' in tif.ome_metadata


def test_plain_tiff_axes_and_broken_files(tmp_path):
    data = np.arange(2 * 5 * 7, dtype=np.uint16).reshape(5, 7, 2)
    tifffile.imwrite(tmp_path / "yxc.tif", data)
    back, meta = read_image(tmp_path / "yxc.tif", "YXC")
    assert back.shape == (2, 5, 7)
    assert meta == ImageMeta()
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(LivedeadError, match="bad.tif: expected a readable TIFF"):
        read_image(tmp_path / "bad.tif")
    (tmp_path / "x.nd2").write_bytes(b"")  # bioio is the optional formats extra: without it, how to get it
    expected = "x.nd2: expected a readable .nd2 image" if importlib.util.find_spec("bioio") else "pip install"
    with pytest.raises(LivedeadError, match=expected):
        read_image(tmp_path / "x.nd2")


def test_channel_roles_by_position_or_by_name():
    data = np.stack([np.full((2, 2), v) for v in (1, 2, 3)])
    meta = ImageMeta(["BF", "DAPI", "Cy5"])
    by_order = pick_channels(data, meta, ["brightfield", "hoechst", "draq7"], {}, "f")
    assert [int(v[0, 0]) for v in by_order.values()] == [1, 2, 3]
    by_name = pick_channels(data, meta, ["brightfield", "draq7"], {"brightfield": "BF", "draq7": "Cy5"}, "f")
    assert [int(v[0, 0]) for v in by_name.values()] == [1, 3]
    with pytest.raises(LivedeadError, match=r"f: config key 'channel_names.draq7': expected a channel named 'Draq7'"):
        pick_channels(data, meta, ["draq7"], {"draq7": "Draq7"}, "f")
    with pytest.raises(LivedeadError, match="expected 2 channels"):
        pick_channels(data, meta, ["brightfield", "hoechst"], {}, "f")


def test_a_folder_of_ome_tiffs_is_a_plate_with_its_pixel_size(tmp_path):
    for well in ("A1", "B2"):
        for t in range(2):
            data = np.full((3, 30, 40), t + 1, np.uint16)
            write_ome_tiff(tmp_path / f"{well}_t{t:03d}.ome.tif", data, ["Hoechst", "TL", "Draq7"], 0.65)
    layout = TiffLayout(channel_names={"brightfield": "TL", "hoechst": "Hoechst", "draq7": "Draq7"})
    plate, images = open_plate(tmp_path, tiff=layout)
    assert (plate.wells, plate.timepoints, plate.shape, plate.pixel_size_um) == (["A1", "B2"], 2, (30, 40), 0.65)
    first = next(images)
    assert sorted(first.channels) == ["brightfield", "draq7", "hoechst"]
    wrong = TiffLayout(channel_names={"brightfield": "Phase", "hoechst": "Hoechst", "draq7": "Draq7"})
    with pytest.raises(LivedeadError, match=r"'tiff.channel_names.brightfield': expected a channel named 'Phase'"):
        open_plate(tmp_path, tiff=wrong)


def test_a_czi_file_through_bioio(tmp_path):
    """A vendor file (the formats extra): a CZI written by Zeiss's own pylibCZIrw, read with its names and scale."""
    pytest.importorskip("bioio_czi")
    czi = pytest.importorskip("pylibCZIrw.czi")
    data = (np.arange(64 * 80).reshape(64, 80) % 1000).astype(np.uint16)
    with czi.create_czi(str(tmp_path / "a.czi")) as f:
        for c in range(3):
            f.write(data=data + c * 100, plane={"C": c, "T": 0, "Z": 0})
        f.write_metadata(channel_names={0: "TL", 1: "Hoechst", 2: "Draq7"}, scale_x=0.65e-6, scale_y=0.65e-6)
    image, meta = read_image(tmp_path / "a.czi")
    np.testing.assert_array_equal(image[2], data + 200)
    assert meta == ImageMeta(["TL", "Hoechst", "Draq7"], 0.65)


def test_a_large_tiff_is_opened_and_read_a_band_at_a_time(tmp_path):
    """Compressed tiles, plain strips, YXC and OME-TIFF: the channels of a file over ``lazy_px`` read what
    they are sliced to, the same pixels as reading it whole; a file at most that large is read as before."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4000, (3, 300, 200)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "tiled.tif", data, tile=(64, 64), compression="zlib", photometric="minisblack")
    tifffile.imwrite(tmp_path / "yxc.tif", np.moveaxis(data, 0, -1), photometric="minisblack", planarconfig="contig")
    write_ome_tiff(tmp_path / "a.ome.tif", data, ["BF", "DAPI", "Cy5"], 0.65)
    for name, axes in (("tiled.tif", "CYX"), ("yxc.tif", "YXC"), ("a.ome.tif", "CYX")):
        lazy, meta = read_image(tmp_path / name, axes, lazy_px=300 * 200 - 1)
        assert isinstance(lazy, LazyImage), name
        assert lazy.shape == (3, 300, 200)
        channel = lazy[2]
        assert (channel.shape, channel.dtype) == ((300, 200), np.uint16)
        np.testing.assert_array_equal(channel[17:123], data[2, 17:123])
        np.testing.assert_array_equal(channel[5:9, 60:70], data[2, 5:9, 60:70])
        assert [c.channel for c in lazy] == [0, 1, 2]
        whole, _ = read_image(tmp_path / name, axes, lazy_px=300 * 200)
        np.testing.assert_array_equal(whole, data)
    assert (meta.channel_names, meta.pixel_size_um) == (["BF", "DAPI", "Cy5"], 0.65)
    nan = np.zeros((2, 40, 40), np.float32)
    nan[1, 30, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan, photometric="minisblack")
    lazy, _ = read_image(tmp_path / "nan.tif", lazy_px=0)
    np.testing.assert_array_equal(lazy[1][:30], 0)
    with pytest.raises(LivedeadError, match="nan.tif: channel 1, rows 20 to 40: expected finite pixels, found 1 NaN"):
        lazy[1][20:40]
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((2, 3, 40, 40), np.uint8), photometric="minisblack")
    with pytest.raises(LivedeadError, match="stack.tif: expected an image of axes C, Y, X, found"):
        LazyImage.open(tmp_path / "stack.tif")
    with pytest.raises(LivedeadError, match="stack.tif: expected a 2-D or 3-D CYX image"):  # as read whole
        read_image(tmp_path / "stack.tif", lazy_px=0)


@pytest.mark.parametrize(("names", "shape"), [(None, (1, 300, 530)), (["P(a)", "P(b)"], (2, 300, 530))])
def test_a_tiff_written_band_by_band_is_the_tiff_written_whole(tmp_path, names, shape):
    """Bands of any height give the file one band gives, tile for tile; a failure leaves no file, no scratch."""
    data = np.random.default_rng(1).random(shape).astype(np.float32)
    ext = ".ome.tif" if names else ".tif"
    with TiffBands(tmp_path / f"whole{ext}", shape, np.float32, names, 0.5) as tiff:
        tiff.write(0, data)
    with TiffBands(tmp_path / f"bands{ext}", shape, np.float32, names, 0.5) as tiff:
        for y in range(0, shape[1], 77):
            tiff.write(y, data[:, y : y + 77])
            assert len(list(tmp_path.glob(f"bands{ext}.tmp-*"))) == shape[0]  # the bands wait on disk
    for name in (f"whole{ext}", f"bands{ext}"):
        pixels, meta = read_image(tmp_path / name)
        np.testing.assert_array_equal(pixels, data)
        with tifffile.TiffFile(tmp_path / name) as tif:
            assert tif.pages[0].is_tiled
            assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        if names:
            assert (meta.channel_names, meta.pixel_size_um) == (names, 0.5)

    def interrupted() -> None:
        with TiffBands(tmp_path / "broken.tif", shape, np.float32, names) as tiff:
            tiff.write(0, data[:, :100])
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"bands{ext}", f"whole{ext}"]
    tiff = TiffBands(tmp_path / "short.tif", shape, np.float32)
    tiff.write(0, data[:, :100])
    with pytest.raises(ValueError, match="expected 300 rows, found 100"):
        tiff.close()
