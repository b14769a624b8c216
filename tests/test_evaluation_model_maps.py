"""Numpy map functions of a JAX classifier, checked on a linear model with a known gradient."""

import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax._batching import filled_chunks
from saliency_jax.evaluation import model_maps, tfds_eval
from saliency_jax.types import Classifier

SIZE, CLASSES = 12, 6


def _linear_classifier(seed=0):
    w = np.random.default_rng(seed).normal(size=(SIZE * SIZE * 3, CLASSES)).astype(np.float32)

    def logits_fn(params, images):
        return images.reshape(images.shape[0], -1) @ params["w"]

    return Classifier(logits_fn, {"w": jnp.asarray(w)}, SIZE, tuple(f"c{i}" for i in range(CLASSES))), w


def test_the_paper_variant_is_the_weight_column_of_the_class_and_the_papers_graphcut():
    from saliency_jax.evaluation.localisation_variants import variant_maps
    from saliency_jax.localisation import GraphCutConfig

    classifier, w = _linear_classifier()
    images = np.random.default_rng(1).uniform(0, 255, (5, SIZE, SIZE, 3)).astype(np.float32)
    classes = np.array([0, 5, 2, 2, 1])
    maps, config = variant_maps(classifier, images, classes, "paper", batch_size=2)
    expected = np.abs(w.T[classes].reshape(5, SIZE, SIZE, 3)).max(-1)
    np.testing.assert_allclose(maps, expected, rtol=1e-5)
    assert config == GraphCutConfig()


def test_top_classes_are_sorted_scores():
    classifier, w = _linear_classifier()
    images = np.random.default_rng(2).uniform(0, 255, (3, SIZE, SIZE, 3)).astype(np.float32)
    logits = images.reshape(3, -1) @ w
    np.testing.assert_array_equal(model_maps.top_classes(classifier, images, 3, batch_size=2),
                                  np.argsort(-logits, axis=-1)[:, :3])


@pytest.mark.parametrize("k", [0, -1, 2.5, 2.0, CLASSES + 1])
@pytest.mark.parametrize("count", [0, 2])
def test_top_classes_check_k_even_for_no_images(k, count):
    """An empty batch once skipped the check: numpy's "negative dimensions", or a [0, 0] answer."""
    classifier, _ = _linear_classifier()
    with pytest.raises(ValueError, match=rf"k must be an integer >= 1 and <= {CLASSES}"):
        model_maps.top_classes(classifier, np.zeros((count, SIZE, SIZE, 3), np.float32), k)


def test_top_classes_fill_the_last_call_so_the_model_compiles_once():
    classifier, w = _linear_classifier()
    traced = []

    def logits_fn(params, images):
        traced.append(images.shape[0])
        return classifier.logits_fn(params, images)

    images = np.random.default_rng(4).uniform(0, 255, (5, SIZE, SIZE, 3)).astype(np.float32)
    got = model_maps.top_classes(classifier._replace(logits_fn=logits_fn), images, 2, batch_size=2)
    np.testing.assert_array_equal(got, np.argsort(-(images.reshape(5, -1) @ w), axis=-1)[:, :2])
    assert traced == [2]  # calls of 2, 2 and 2 (the last with a copy of image 4), one trace
    assert [kept for _, kept in filled_chunks(5, 2)] == [2, 2, 1]
    assert [rows.tolist() for rows, _ in filled_chunks(5, 8)] == [[0, 1, 2, 3, 4]]  # fewer than a batch: as is
    assert filled_chunks(0, 8) == []


def test_scale_box_covers_the_same_pixels():
    np.testing.assert_array_equal(model_maps.scale_box([1, 2, 5, 6], (12, 12), (24, 36)), [3, 4, 15, 12])
    np.testing.assert_array_equal(model_maps.scale_box([[0, 0, 12, 12]], (12, 12), (7, 5)), [[0, 0, 5, 7]])


def test_predictor_gives_one_box_per_class_in_the_images_pixels():
    classifier, _ = _linear_classifier()
    image = np.random.default_rng(3).integers(0, 255, (30, 20, 3)).astype(np.uint8)
    guess = model_maps.make_predictor(classifier, top_k=3)(image)
    assert isinstance(guess, tfds_eval.Prediction)
    assert guess.classes.shape == (3,) and guess.boxes.shape == (3, 4)
    assert ((guess.boxes[:, 2] <= 20) & (guess.boxes[:, 3] <= 30)).all()
    assert ((guess.boxes[:, :2] >= 0) & (guess.boxes[:, 2:] > guess.boxes[:, :2])).all()
    assert guess.saliency.shape == (30, 20)
