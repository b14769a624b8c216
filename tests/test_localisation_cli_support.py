"""The `localise` command's work: file contract, coordinates in the input's pixels, atomic writes."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from saliency_jax.localisation.cli_support import localisation_outputs, localise_command, resize_mask


def _write_photo(path, height, width, box):
    """A green noisy photo with a red rectangle at ``box`` (x0, y0, x1, y1, exclusive)."""
    rng = np.random.default_rng(height * width)
    image = np.clip(rng.normal(0, 12, (height, width, 3)) + [60, 150, 70], 0, 255)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = np.clip(rng.normal(0, 12, (y1 - y0, x1 - x0, 3)) + [210, 50, 40], 0, 255)
    Image.fromarray(image.astype(np.uint8)).save(path)


def _explain_red(images, classes):
    """A stand-in model: the map is the redness, speckled; the top-1 class is 7."""
    rng = np.random.default_rng(0)
    redness = np.clip(images[..., 0] - images[..., 1], 0, None) + 5
    maps = redness * np.abs(rng.normal(size=redness.shape))
    classes = np.full(len(images), 7) if classes is None else classes
    return maps.astype(np.float32), np.asarray(classes)


def test_writes_mask_box_and_figure_in_the_inputs_pixels(tmp_path):
    boxes = {"wide": (30, 20, 90, 60), "small": (8, 10, 30, 40)}
    _write_photo(tmp_path / "wide.png", 80, 120, boxes["wide"])
    _write_photo(tmp_path / "small.jpg", 48, 40, boxes["small"])
    out = tmp_path / "out"
    written = localise_command(
        [tmp_path / "wide.png", tmp_path / "small.jpg"], out=out, explain=_explain_red, image_size=64,
    )
    assert [os.path.basename(w.mask) for w in written] == ["wide_mask.png", "small_mask.png"]
    for stem, (height, width) in (("wide", (80, 120)), ("small", (48, 40))):
        paths = localisation_outputs(out, stem)
        mask = np.asarray(Image.open(paths.mask))
        assert mask.shape == (height, width) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        record = json.loads(open(paths.box).read())
        assert set(record) == {"box", "class"} and record["class"] == 7
        x0, y0, x1, y1 = record["box"]
        on = mask > 0
        # The box is the mask's, with exclusive ends, in the input's pixels.
        assert on[y0:y1, x0:x1].sum() == on.sum()
        assert on[y0, x0:x1].any() and on[y1 - 1, x0:x1].any() and on[y0:y1, x0].any() and on[y0:y1, x1 - 1].any()
        true_box = np.array(boxes[stem])
        assert np.abs(np.array(record["box"]) - true_box).max() <= max(height, width) / 64 * 2 + 1
        figure = Image.open(paths.figure)
        assert figure.size[0] > 2 * figure.size[1]  # five panels in a row
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]  # no temporary files left


def test_the_given_class_reaches_the_model_and_the_json(tmp_path):
    _write_photo(tmp_path / "a.png", 40, 40, (10, 10, 30, 30))
    seen = []

    def explain(images, classes):
        seen.append(classes)
        return _explain_red(images, classes)

    localise_command([tmp_path / "a.png"], class_id=281, out=tmp_path, explain=explain, image_size=32)
    np.testing.assert_array_equal(seen[0], [281])
    assert json.loads(open(tmp_path / "a_box.json").read())["class"] == 281


def test_inputs_are_checked_before_any_work(tmp_path):
    _write_photo(tmp_path / "a.png", 40, 40, (10, 10, 30, 30))
    os.makedirs(tmp_path / "b")
    _write_photo(tmp_path / "b" / "a.png", 40, 40, (10, 10, 30, 30))

    def explain(images, classes):
        raise AssertionError("no work should start")

    with pytest.raises(ValueError, match="share a file stem"):
        localise_command([tmp_path / "a.png", tmp_path / "b" / "a.png"], out=tmp_path, explain=explain)
    with pytest.raises(FileNotFoundError):
        localise_command([tmp_path / "missing.png"], out=tmp_path, explain=explain)
    with pytest.raises(ValueError, match="at least one image"):
        localise_command([], out=tmp_path, explain=explain)


def test_resize_mask_is_nearest_neighbour():
    mask = np.zeros((4, 4), bool)
    mask[1:3, 1:3] = True
    big = resize_mask(mask, 8, 12)
    assert big.shape == (8, 12)
    np.testing.assert_array_equal(np.nonzero(big.any(axis=1))[0], np.arange(2, 6))
    np.testing.assert_array_equal(np.nonzero(big.any(axis=0))[0], np.arange(3, 9))
