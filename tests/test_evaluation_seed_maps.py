"""Seed-map choices wrapping any numpy map function."""

import numpy as np
import pytest

from saliency_jax.evaluation import batched, flip_shift_average, seed_map_fn, smoothgrad


def _red_map(images, *args):
    return images[..., 0]


def _images(seed=0, b=2, h=12, w=10):
    return np.random.default_rng(seed).uniform(0, 255, (b, h, w, 3)).astype(np.float32)


def test_flip_shift_average_of_an_equivariant_map_is_the_map():
    images = _images()
    np.testing.assert_allclose(flip_shift_average(_red_map, shifts=(0, 3))(images), images[..., 0], rtol=1e-6)


def test_flip_shift_average_averages_a_fixed_pattern_back_into_the_frame():
    def corner(images, *args):  # attends to pixel (0, 0) of whatever it sees
        maps = np.zeros(images.shape[:3], np.float32)
        maps[:, 0, 0] = 1.0
        return maps

    out = flip_shift_average(corner, shifts=(0, 2), flips=True)(_images())
    # Four copies, each pointing at a different pixel of the original frame.
    assert out[0, 0, 0] == pytest.approx(0.25)
    assert out[0, 0, -1] == pytest.approx(0.25)  # the flipped copy's corner
    assert out[0, -2, -2] == pytest.approx(0.25)  # the shifted copy's corner, rolled back
    assert out[0, -2, 1] == pytest.approx(0.25)  # shifted and flipped
    assert out.sum() == pytest.approx(2.0)


def test_smoothgrad_without_noise_is_the_map_and_is_deterministic():
    images = _images()
    np.testing.assert_allclose(smoothgrad(_red_map, noise_scale=0.0)(images), images[..., 0], rtol=1e-6)
    a = smoothgrad(_red_map, num_samples=4, seed=3)(images)
    b = smoothgrad(_red_map, num_samples=4, seed=3)(images)
    np.testing.assert_array_equal(a, b)
    c = smoothgrad(_red_map, num_samples=4, seed=4)(images)
    assert not np.array_equal(a, c)


def test_smoothgrad_of_a_linear_map_converges_to_the_map():
    images = _images()
    out = smoothgrad(_red_map, num_samples=64, noise_scale=0.1)(images)
    span = images.max() - images.min()
    # Mean of 64 draws of noise with sd 0.1 * span: error sd 0.0125 * span.
    assert np.abs(out - images[..., 0]).mean() < 0.02 * span


def test_extra_arguments_pass_through_unchanged():
    seen = []

    def map_fn(images, classes):
        seen.append(np.asarray(classes))
        return images[..., 1]

    for name in ("paper", "flip-shift", "smoothgrad"):
        seed_map_fn(name, map_fn)(_images(), np.array([4, 2]))
    assert all(np.array_equal(c, [4, 2]) for c in seen)
    assert len(seen) == 1 + 4 + 16
    with pytest.raises(ValueError, match="seed map must be one of"):
        seed_map_fn("grabcut", map_fn)


def test_batched_splits_per_image_arguments():
    calls = []

    def map_fn(images, classes, scale):
        calls.append((len(images), tuple(classes), scale))
        return images[..., 0] * scale

    images = _images(b=5)
    out = batched(map_fn, 2)(images, np.arange(5), 2.0)
    np.testing.assert_allclose(out, images[..., 0] * 2)
    assert calls == [(2, (0, 1), 2.0), (2, (2, 3), 2.0), (1, (4,), 2.0)]


def test_wrong_map_shapes_and_settings_raise():
    with pytest.raises(ValueError, match="map_fn must return maps of shape"):
        flip_shift_average(lambda images: images)(_images())
    with pytest.raises(ValueError, match="num_samples must be an integer >= 1"):
        smoothgrad(_red_map, num_samples=0)
    with pytest.raises(ValueError, match="shifts must name at least one shift"):
        flip_shift_average(_red_map, shifts=())
    with pytest.raises(ValueError, match=r"images must have shape \[B, H, W, C\]"):
        smoothgrad(_red_map)(np.zeros((4, 4, 3)))
