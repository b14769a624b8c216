"""Image reading and atomic writing."""

import json
import os
import re
import struct
import warnings
import zlib

import jax
import numpy as np
import pytest
from PIL import Image

from saliency_jax import io


def test_bundled_photos_are_real_rgb_photos():
    for name in io.BUNDLED_PHOTOS:
        photo = io.bundled_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and photo.shape[-1] == 3
        assert min(photo.shape[:2]) >= 200 and photo.std() > 20
    with pytest.raises(ValueError, match="name must be one of"):
        io.bundled_photo("unicorn")


def test_load_image_converts_grey_and_composites_transparency_over_white(tmp_path):
    grey = (np.arange(20 * 30) % 256).astype(np.uint8).reshape(20, 30)
    Image.fromarray(grey).save(tmp_path / "g.png")
    g = io.load_image(tmp_path / "g.png")
    assert g.shape == (20, 30, 3) and g.dtype == np.uint8
    assert all(np.array_equal(g[..., c], grey) for c in range(3))
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., :3] = (200, 0, 100)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    rgba[0, 1, 3] = 128
    Image.fromarray(rgba).save(tmp_path / "a.png")
    a = io.load_image(tmp_path / "a.png").astype(int)
    assert a.shape == (5, 6, 3)
    assert a[1, 1].tolist() == [200, 0, 100]  # opaque: as stored
    assert a[0, 0].tolist() == [255, 255, 255]  # transparent: the white page
    half = [round(v * 128 / 255 + 255 * 127 / 255) for v in (200, 0, 100)]
    assert a[0, 1].tolist() == half
    assert io.load_image("bundled:coffee").shape == (400, 600, 3)


def _grey_chelsea():
    """Chelsea as float luminance on 0-255 (ITU-R 601), not rounded."""
    photo = io.bundled_photo("chelsea").astype(np.float64)
    return photo @ np.array([0.299, 0.587, 0.114])


def test_sixteen_bit_grey_is_read_on_its_full_range(tmp_path):
    luminance = _grey_chelsea()
    grey16 = np.round(luminance * 257).astype(np.uint16)  # 0-65535, not multiples of 257
    expected = np.round(grey16 / 257).astype(np.uint8)
    Image.fromarray(grey16).save(tmp_path / "le.png")  # PNG is big-endian on disk
    Image.fromarray(grey16).save(tmp_path / "le.tif")
    big_endian = Image.frombytes("I;16B", grey16.shape[::-1], grey16.astype(">u2").tobytes())
    big_endian.save(tmp_path / "be.tif")
    with open(tmp_path / "p.pgm", "wb") as f:  # 16-bit PGM, opened by Pillow as mode I
        f.write(b"P5 %d %d 65535\n" % (grey16.shape[1], grey16.shape[0]))
        f.write(grey16.astype(">u2").tobytes())
    for name, mode in [("le.png", "I;16"), ("le.tif", "I;16"), ("be.tif", "I;16B"), ("p.pgm", "I")]:
        with Image.open(tmp_path / name) as img:
            assert img.mode == mode, name
        image = io.load_image(tmp_path / name)
        assert image.shape == grey16.shape + (3,), name
        assert np.array_equal(image[..., 0], expected) and np.array_equal(image[..., 2], expected), name
        assert image.std() > 30 and (image == 255).mean() < 0.01, name  # the grey photo, not white


def test_float_images_follow_the_documented_scale(tmp_path):
    rng = np.random.default_rng(0)
    unit = rng.uniform(0, 1, (8, 9)).astype(np.float32)
    unit[0, 0], unit[0, 1] = 0.0, 1.0
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    expected = np.round(unit.astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(io.load_image(tmp_path / "unit.tif")[..., 1], expected)
    # one value above 1 puts the whole image on the 0-255 scale; outside values clip
    wide = unit * 255
    wide[0, 2], wide[0, 3], wide[0, 4] = 300.0, -7.0, 1.4
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    got = io.load_image(tmp_path / "wide.tif")[..., 0].astype(int)
    assert got[0, 2] == 255 and got[0, 3] == 0 and got[0, 4] == 1
    assert np.array_equal(got[1:], np.round(wide[1:].astype(np.float64)).astype(int))
    wide[3, 3] = np.nan
    Image.fromarray(wide).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match=r"nan\.tif.*NaN or infinite"):
        io.load_image(tmp_path / "nan.tif")


def test_thirty_two_bit_integer_tiffs_use_their_declared_range(tmp_path):
    values = np.array([[0, 2**30, 2**31 - 1, -5]], np.int32)
    Image.fromarray(values).save(tmp_path / "s.tif")
    with Image.open(tmp_path / "s.tif") as img:
        assert img.mode == "I" and img.tag_v2[339] == (2,)  # signed
    assert io.load_image(tmp_path / "s.tif")[0, :, 0].tolist() == [0, 128, 255, 0]
    # Pillow writes every 32-bit integer TIFF as signed: patch the SampleFormat entry to unsigned
    unsigned = np.array([[0, 2**31, 2**32 - 1, 2**24]], np.uint32)
    Image.fromarray(unsigned.view(np.int32)).save(tmp_path / "u.tif")
    data = (tmp_path / "u.tif").read_bytes()
    entry = bytes.fromhex("5301 0300 01000000 0200 0000")
    assert data.count(entry) == 1
    (tmp_path / "u.tif").write_bytes(data.replace(entry, bytes.fromhex("5301 0300 01000000 0100 0000")))
    with Image.open(tmp_path / "u.tif") as img:
        assert img.mode == "I" and img.tag_v2[339] == (1,)
    expected = [round(v * 255 / (2**32 - 1)) for v in unsigned[0].tolist()]
    assert io.load_image(tmp_path / "u.tif")[0, :, 0].tolist() == expected == [0, 128, 255, 1]


# mode, file format, what the reading must give, largest difference from it
MODES = [
    ("RGB", "png", "rgb", 0), ("RGBA", "png", "rgb", 0), ("RGBA", "tif", "rgb", 0), ("CMYK", "tif", "rgb", 0),
    ("CMYK", "jpg", "rgb", 3), ("YCbCr", "tif", "rgb", 3), ("LAB", "tif", "rgb", 32),
    ("P", "png", "rgb", 51), ("P", "gif", "rgb", 51), ("PA", "tif", "rgb", 51),  # a 216-colour palette
    ("1", "png", "black and white", 0), ("1", "tif", "black and white", 0), ("L", "png", "grey", 0),
    ("LA", "png", "grey", 0), ("LA", "tif", "grey", 0), ("I;16", "png", "grey", 0), ("I;16B", "tif", "grey", 0),
    ("I", "tif", "grey", 0), ("F", "tif", "grey", 0),
]


@pytest.mark.parametrize("mode, ext, target, tolerance", MODES, ids=[f"{m}-{e}" for m, e, _, _ in MODES])
def test_every_mode_reads_with_its_real_range(tmp_path, mode, ext, target, tolerance):
    y, x = np.mgrid[0:24, 0:32]
    rgb = np.stack([x * 8, y * 10, (x + y) * 4], axis=-1).astype(np.uint8)
    source = Image.fromarray(rgb)
    grey = np.asarray(source.convert("L"))
    if mode.startswith("I;16"):
        grey16 = grey.astype(np.uint16) * 257
        img = Image.frombytes(mode, (32, 24), grey16.astype("<u2" if mode == "I;16" else ">u2").tobytes())
    elif mode == "I":
        img = Image.fromarray(grey.astype(np.int32) * (257 * 32768) + 1)  # on the signed 32-bit range
    elif mode == "F":
        img = Image.fromarray(grey.astype(np.float32) / 255)
    else:
        img = source.convert(mode)
    path = tmp_path / f"x.{ext}"
    img.save(path)
    with Image.open(path) as stored:
        assert stored.mode == mode
        shown = np.asarray(stored.convert("RGB"))
    image = io.load_image(path)
    assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    expected = {
        "rgb": rgb,
        "grey": np.repeat(grey[..., None], 3, axis=-1),
        "black and white": np.repeat(np.asarray(source.convert("1"))[..., None] * 255, 3, axis=-1),
    }[target]
    assert int(np.abs(image.astype(int) - expected).max()) <= tolerance
    if target == "rgb":  # colour modes read as Pillow converts them
        assert np.array_equal(image, shown)


def test_modes_that_no_file_format_gives_are_converted_too():
    # Pillow does not open files in these modes, but an image built in memory can be in them
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (5, 7, 4), dtype=np.uint8)
    rgba[..., 3] = rng.choice([0, 128, 255], (5, 7))
    alpha = rgba[..., 3:].astype(np.float64) / 255
    over_white = rgba[..., :3] * alpha + 255 * (1 - alpha)
    source = Image.fromarray(rgba)
    premultiplied = io._pillow_to_rgb_uint8(source.convert("RGBa"), "x").astype(int)
    assert np.abs(premultiplied - over_white).max() <= 1
    grey_alpha = source.convert("LA")
    la = np.asarray(grey_alpha).astype(np.float64)
    grey_over_white = la[..., :1] * la[..., 1:] / 255 + 255 * (1 - la[..., 1:] / 255)
    got = io._pillow_to_rgb_uint8(grey_alpha.convert("La"), "x").astype(int)
    assert got.shape == (5, 7, 3) and np.abs(got - grey_over_white).max() <= 1
    rgb = Image.fromarray(rgba[..., :3])
    assert np.array_equal(io._pillow_to_rgb_uint8(rgb.convert("RGBX"), "x"), rgba[..., :3])
    assert np.abs(io._pillow_to_rgb_uint8(rgb.convert("HSV"), "x").astype(int) - rgba[..., :3]).max() <= 4


def test_palette_transparency_is_shown_on_white(tmp_path):
    palette = Image.new("P", (4, 3))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette.putdata([0, 1, 1, 0] * 3)
    palette.save(tmp_path / "t.png", transparency=1)
    palette.save(tmp_path / "t.gif", transparency=1)
    for name in ("t.png", "t.gif"):
        image = io.load_image(tmp_path / name)
        assert image[0, 0].tolist() == [255, 0, 0], name
        assert image[0, 1].tolist() == [255, 255, 255], name  # transparent blue is not drawn


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` 8-bit grey pixels and holds almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(
        b"IEND", b""
    )


def test_an_image_above_the_pixel_limit_is_refused_before_decoding(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(20000, 20000))  # 400 megapixels in 80 bytes
    assert bomb.stat().st_size < 100
    with pytest.raises(ValueError, match=rf"bomb\.png.*20000x20000 = 400000000 pixels.*limit of {limit}"):
        io.load_image(bomb)
    # between Pillow's limit and twice it, Pillow only warns: here it is an error, and no warning leaks
    band = tmp_path / "band.png"
    band.write_bytes(_png_header_only(10000, 10000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=rf"band\.png.*10000x10000.*limit of {limit}"):
            io.load_image(band)
    assert Image.MAX_IMAGE_PIXELS == limit


def test_the_pixel_limit_is_set_per_call(tmp_path, monkeypatch):
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"s\.png.*64x64 = 4096 pixels.*limit of 4095"):
        io.load_image(tmp_path / "s.png", max_pixels=4095)
    assert io.load_image(tmp_path / "s.png", max_pixels=4096)[0, 0, 0] == 7
    # the default follows Pillow's setting; an explicit limit above twice it still reads
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ValueError, match=r"limit of 1000 pixels"):
        io.load_image(tmp_path / "s.png")
    assert io.load_image(tmp_path / "s.png", max_pixels=5000).shape == (64, 64, 3)
    assert Image.MAX_IMAGE_PIXELS == 1000
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="max_pixels must be an integer"):
            io.load_image(tmp_path / "s.png", max_pixels=bad)


def _frames():
    return [Image.fromarray(np.full((6, 5, 3), colour, np.uint8)) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]


@pytest.mark.parametrize("ext", ["gif", "png", "tif", "webp"])
def test_a_multi_frame_file_reads_its_first_frame_with_a_warning(tmp_path, ext):
    first, *rest = _frames()
    path = tmp_path / f"anim.{ext}"
    first.save(path, save_all=True, append_images=rest, duration=100, loop=0)
    with pytest.warns(UserWarning, match=rf"anim\.{ext}.* has 3 frames; reading the first only"):
        image = io.load_image(path)
    assert image.shape == (6, 5, 3)
    assert np.abs(image.astype(int) - [255, 0, 0]).max() <= 8  # red, not green or blue (WebP is lossy)
    first.save(tmp_path / f"still.{ext}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.load_image(tmp_path / f"still.{ext}")


def test_exif_orientation_is_applied(tmp_path):
    stored = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3) * 40
    # EXIF orientations and how a viewer turns the stored pixels to show them
    shown = {1: stored, 3: np.rot90(stored, 2), 6: np.rot90(stored, -1), 8: np.rot90(stored, 1), 2: stored[:, ::-1]}
    for orientation, expected in shown.items():
        img = Image.fromarray(stored)
        exif = img.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}.png"
        img.save(path, exif=exif)
        image = io.load_image(path)
        assert np.array_equal(image[..., 0], expected), orientation


def _valid_files(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    paths = []
    for ext, kwargs in [("png", {}), ("jpg", {"quality": 90}), ("gif", {}), ("tif", {}), ("bmp", {}),
                        ("webp", {}), ("tif", {"compression": "tiff_deflate"})]:
        path = tmp_path / f"valid{len(paths)}.{ext}"
        Image.fromarray(rgb).save(path, **kwargs)
        paths.append(path)
    return paths


def test_truncated_or_corrupt_files_raise_a_value_error_naming_the_file(tmp_path):
    rng = np.random.default_rng(2)
    for valid in _valid_files(tmp_path):
        data = valid.read_bytes()
        assert io.load_image(valid).shape == (24, 20, 3)
        mutants = [data[:n] for n in (0, 8, 30, len(data) // 3, len(data) // 2, len(data) - 2)]
        for _ in range(12):
            mutant = bytearray(data)
            for i in rng.integers(0, len(data), rng.integers(1, 6)):
                mutant[i] = int(rng.integers(0, 256))
            mutants.append(bytes(mutant))
        for i, mutant in enumerate(mutants):
            path = tmp_path / f"bad-{valid.stem}-{i}{valid.suffix}"
            path.write_bytes(mutant)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. Pillow's "corrupt EXIF data"
                try:
                    image = io.load_image(path)
                except ValueError as e:
                    assert str(path) in str(e), e
                else:  # a flipped pixel byte still decodes: then it must be a well-formed image
                    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_valid_files(tmp_path)[0].read_bytes()[:-60])
    with pytest.raises(ValueError, match=r"cut\.png.* not a readable image file"):
        io.load_image(truncated)


def test_arrays_are_converted_on_their_own_range():
    grey16 = np.array([[0, 257, 65535, 32896]], np.uint16)
    assert io.to_rgb_uint8(grey16, "a")[0, :, 1].tolist() == [0, 1, 255, 128]
    assert io.to_rgb_uint8(np.array([[0.0, 0.5, 1.0]]), "a")[0, :, 0].tolist() == [0, 128, 255]
    assert io.to_rgb_uint8(np.array([[0.0, 0.5, 2.0]]), "a")[0, :, 0].tolist() == [0, 0, 2]
    assert io.to_rgb_uint8(np.array([[True, False]]), "a")[0, :, 2].tolist() == [255, 0]
    with pytest.raises(ValueError, match="photo contains NaN"):
        io.to_rgb_uint8(np.array([[0.0, np.nan]]), "photo")


def test_sixteen_bit_grey_chelsea_gets_the_same_class_as_eight_bit(tmp_path, efficientnet):
    luminance = _grey_chelsea()
    Image.fromarray(np.round(luminance * 257).astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray(np.round(luminance).astype(np.uint8)).save(tmp_path / "g8.png")
    images = np.stack([io.resize_image(io.load_image(tmp_path / n), 224) for n in ("g16.png", "g8.png")])
    top1 = np.asarray(jax.jit(efficientnet.logits_fn)(efficientnet.params, images)).argmax(axis=1)
    assert top1[0] == top1[1]
    assert efficientnet.class_names[top1[0]] != "nematode"  # what an all-white image gives


def test_embedded_model_refuses_images_without_three_channels(efficientnet):
    for channels in (1, 4):
        images = np.zeros((1, 224, 224, channels), np.float32)
        with pytest.raises(ValueError, match=r"images must have 3 channels.*\(1, 224, 224, %d\)" % channels):
            efficientnet.logits_fn(efficientnet.params, images)
        with pytest.raises(ValueError, match="images must have 3 channels"):
            jax.jit(efficientnet.logits_fn)(efficientnet.params, images)
    with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\].*images\[None\]"):
        efficientnet.logits_fn(efficientnet.params, np.zeros((224, 224, 3), np.float32))


def test_resize_keeps_model_sized_images_untouched():
    photo = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = io.resize_image(photo, 224)
    assert out.dtype == np.float32 and np.array_equal(out, photo.astype(np.float32))
    assert io.resize_image(io.bundled_photo("chelsea"), 224).shape == (224, 224, 3)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        io.resize_image(np.zeros((4, 4)), 224)



def test_resize_converts_a_same_size_image_as_it_converts_one_it_resamples():
    u8 = np.random.default_rng(4).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    unit = u8 / 255
    assert np.array_equal(io.resize_image(unit, 20), u8.astype(np.float32))  # on 0-255, not 0-1
    assert np.array_equal(io.resize_image(unit, 10), io.resize_image(u8, 10))
    for other in (u8.astype(np.uint16) * 257, u8.astype(np.int64), unit.astype(np.float32)):
        assert np.array_equal(io.resize_image(other, 20), u8.astype(np.float32)), other.dtype
    wide = u8 + 0.4  # on 0-255 already: rounded as the resized path rounds it
    same = io.resize_image(wide, 20)
    assert same.dtype == np.float32 and np.array_equal(same, u8.astype(np.float32))
    white = io.resize_image(np.ones((20, 20, 3), bool), 20)
    assert white.dtype == np.float32 and (white == 255).all()
    for bad in (np.nan, np.inf):
        unit[3, 4, 1] = bad
        for size in (20, 10):
            with pytest.raises(ValueError, match="image contains NaN or infinite"):
                io.resize_image(unit, size)


def test_resize_refuses_empty_images_and_maps_and_non_finite_maps():
    u8 = np.zeros((20, 20, 3), np.uint8)
    for empty in (u8[:0], u8[:, :0]):
        with pytest.raises(ValueError, match=r"image must not be empty, got shape \(%d, %d, 3\)" % empty.shape[:2]):
            io.resize_image(empty, 10)
    with pytest.raises(ValueError, match=r"saliency must not be empty, got shape \(0, 4\)"):
        io.resize_map(np.zeros((0, 4)), 8, 8)
    for bad in (np.nan, np.inf, -np.inf):
        saliency = np.ones((4, 4), np.float32)
        saliency[1, 2] = bad
        for shape in ((4, 4), (8, 8)):
            with pytest.raises(ValueError, match="saliency contains NaN or infinite values"):
                io.resize_map(saliency, *shape)
    with pytest.raises(ValueError, match="saliency holds values beyond float32's range"):
        io.resize_map(np.full((4, 4), 1e300), 8, 8)
    with pytest.raises(ValueError, match="saliency must hold real numbers, got dtype"):
        io.resize_map(np.full((4, 4), "a"), 8, 8)
    out = io.resize_map(np.arange(16, dtype=np.float64).reshape(4, 4), 8, 6)
    assert out.dtype == np.float32 and out.shape == (8, 6) and np.isfinite(out).all()


def test_resize_sizes_must_be_positive_integers():
    image, saliency = np.zeros((12, 10, 3), np.uint8), np.zeros((12, 10), np.float32)
    for bad in (0, -3, 2.5, 10.0, None, (10, 12), True, "10"):
        with pytest.raises(ValueError, match="size must be an integer >= 1"):
            io.resize_image(image, bad)
        with pytest.raises(ValueError, match="height must be an integer >= 1"):
            io.resize_map(saliency, bad, 8)
        with pytest.raises(ValueError, match="width must be an integer >= 1"):
            io.resize_map(saliency, 8, bad)
    assert io.resize_image(image, np.int64(8)).shape == (8, 8, 3)
    assert io.resize_image(image, np.array(8)).shape == (8, 8, 3)
    # a side whose square passes the reading limit is refused at once, not allocated (100,000^2 x 3 floats)
    with pytest.raises(ValueError, match="size must give at most 89,478,485 pixels"):
        io.resize_image(image, 100_000)
    assert io.resize_map(saliency, np.int32(6), np.uint8(5)).shape == (6, 5)
    for shape in ((12, 10, 1), (1, 12, 10), (12,)):
        with pytest.raises(ValueError, match=r"saliency must be a 2-D map \[H, W\], got shape"):
            io.resize_map(np.zeros(shape, np.float32), 8, 8)


def test_save_png_refuses_what_it_does_not_write_before_touching_the_file(tmp_path):
    target = tmp_path / "keep.png"
    io.save_png(target, np.full((3, 4), 9, np.uint8))
    before = target.read_bytes()
    bad = [np.zeros((3, 4, 2), np.uint8), np.zeros((3, 4, 4), np.uint8), np.zeros((1, 3, 4), np.uint8),
           np.zeros((3, 4, 1), np.uint8), np.zeros(4, np.uint8), np.zeros((3, 4), np.float32),
           np.zeros((3, 4), bool), np.zeros((3, 4, 3), np.uint16)]
    for array in bad:
        with pytest.raises(ValueError, match=r"image must be uint8 \[H, W\] or \[H, W, 3\] for PNG, got dtype "
                                             f"{array.dtype} and shape " + re.escape(str(array.shape))):
            io.save_png(target, array)
    for array in (np.zeros((0, 4), np.uint8), np.zeros((3, 0, 3), np.uint8)):
        with pytest.raises(ValueError, match=r"image must not be empty, got shape"):
            io.save_png(target, array)
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["keep.png"]
    rgb = np.random.default_rng(5).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    io.save_png(target, rgb)
    with Image.open(target) as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), rgb)


def test_check_image_checks_max_pixels_as_load_image_does(tmp_path):
    path = tmp_path / "s.png"
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(path)
    for bad in (0, -5, 2.5, True, "x", "10"):
        for check in (io.check_image, io.load_image):
            with pytest.raises(ValueError, match=r"max_pixels must be an integer >= 1, got"):
                check(path, max_pixels=bad)
        with pytest.raises(ValueError, match=r"max_pixels must be an integer >= 1, got"):
            io.check_image("bundled:chelsea", max_pixels=bad)
    with pytest.raises(ValueError, match=r"s\.png.*64x64 = 4096 pixels.*limit of 4095"):
        io.check_image(path, max_pixels=np.int64(4095))
    io.check_image(path, max_pixels=np.int64(4096))

def test_writers_are_atomic_and_leave_no_temporaries(tmp_path):
    io.save_npy(tmp_path / "a" / "m.npy", np.ones((2, 2), np.float32))
    io.save_json(tmp_path / "a" / "m.json", {"class": 3})
    io.save_png(tmp_path / "a" / "m.png", np.zeros((4, 4), np.uint8))
    assert sorted(os.listdir(tmp_path / "a")) == ["m.json", "m.npy", "m.png"]
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"class": 3}


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.json"
    io.save_json(target, {"old": True})

    class Unserialisable:
        pass

    with pytest.raises(ValueError, match="obj must hold only what JSON writes"):
        io.save_json(target, {"new": Unserialisable()})
    assert json.loads(target.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["keep.json"]
    with pytest.raises(ValueError, match="uint8"):
        io.save_png(tmp_path / "x.png", np.zeros((2, 2), np.float32))


def test_written_files_get_ordinary_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        io.save_npy(tmp_path / "m.npy", np.zeros(2))
    finally:
        os.umask(umask)
    assert (tmp_path / "m.npy").stat().st_mode & 0o777 == 0o644


def test_paths_may_be_bytes_as_the_os_module_takes_them(tmp_path):
    path = tmp_path / "a b.png"
    io.save_png(path, np.full((3, 4, 3), 7, np.uint8))
    raw = os.fsencode(str(path))
    np.testing.assert_array_equal(io.load_image(raw), io.load_image(path))
    io.check_image(raw)
    assert io.image_stem(raw) == "a b"


def test_json_takes_numpy_numbers_and_names_what_it_cannot_write(tmp_path):
    path = tmp_path / "r.json"
    io.save_json(path, {"score": np.float32(1.5), "classes": np.arange(3), "ok": np.bool_(True)})
    assert json.loads(path.read_text()) == {"score": 1.5, "classes": [0, 1, 2], "ok": True}
    before = path.read_bytes()
    for bad in ({"x": object()}, {"x": np.array([object()])}, {(1, 2): 3}):
        with pytest.raises(ValueError, match="obj must hold only what JSON writes"):
            io.save_json(path, bad)  # was json's TypeError
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["r.json"]


def test_npy_refuses_objects_it_could_not_read_back_and_figures_must_be_figures(tmp_path):
    with pytest.raises(ValueError, match="array must hold numbers .*not Python objects"):
        io.save_npy(tmp_path / "o.npy", np.array([object(), 1]))  # np.load would refuse the pickle
    with pytest.raises(ValueError, match="figure must be a matplotlib Figure, got str"):
        io.save_figure(tmp_path / "f.png", "a figure")
    assert os.listdir(tmp_path) == []
    io.save_npy(tmp_path / "s.npy", np.array(["a", "bc"]))
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), ["a", "bc"])
