"""Image reading and atomic writing."""

import json
import os

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


def test_load_image_converts_grey_and_rgba(tmp_path):
    grey = (np.arange(20 * 30) % 256).astype(np.uint8).reshape(20, 30)
    Image.fromarray(grey).save(tmp_path / "g.png")
    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0] = 200
    Image.fromarray(rgba).save(tmp_path / "a.png")
    g = io.load_image(tmp_path / "g.png")
    assert g.shape == (20, 30, 3) and np.array_equal(g[..., 1], grey)
    a = io.load_image(tmp_path / "a.png")
    assert a.shape == (5, 6, 3) and a[0, 0, 0] == 200
    assert io.load_image("bundled:coffee").shape == (400, 600, 3)


def test_load_image_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.load_image(tmp_path / "missing.jpg")
    (tmp_path / "notes.jpg").write_text("not really a picture")
    with pytest.raises(ValueError, match="not a readable image"):
        io.load_image(tmp_path / "notes.jpg")


def test_resize_keeps_model_sized_images_untouched():
    photo = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = io.resize_image(photo, 224)
    assert out.dtype == np.float32 and np.array_equal(out, photo.astype(np.float32))
    assert io.resize_image(io.bundled_photo("chelsea"), 224).shape == (224, 224, 3)
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        io.resize_image(np.zeros((4, 4)), 224)


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

    with pytest.raises(TypeError):
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
