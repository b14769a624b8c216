"""The evaluation metrics against plain, brute-force implementations written here, and their
refusals of hostile input (NaN maps, impossible sizes, empty datasets, strings for sequences)."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax.evaluation import faithfulness as F
from saliency_jax.evaluation import metrics
from saliency_jax.evaluation import model_maps, sanity, tfds_eval

# --- plain references ---------------------------------------------------------------------


def _raster(box, shape):
    """The pixels of an integer box (exclusive ends) in an image of ``shape``; outside pixels dropped."""
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def _peak(saliency):
    """The first maximum in row-major order, by a loop."""
    best, where = -np.inf, None
    for y in range(saliency.shape[0]):
        for x in range(saliency.shape[1]):
            if saliency[y, x] > best:
                best, where = saliency[y, x], (y, x)
    return where


def _points_at(saliency, mask, tolerance):
    """Is the map's first maximum on the object or some object pixel closer than ``tolerance``
    (TorchRay's ``d**2 < tolerance**2``)?"""
    y, x = _peak(saliency)
    return any(
        (y - v) ** 2 + (x - u) ** 2 < max(tolerance**2, 1) for v, u in zip(*np.nonzero(mask))
    )


def _random_boxes(rng, count, low, high):
    corners = rng.integers(low, high, (count, 2, 2))
    return np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=-1)


# --- box and mask IoU ---------------------------------------------------------------------


def test_box_iou_counts_pixels_of_boxes_partly_outside_and_of_zero_area():
    rng = np.random.default_rng(0)
    boxes = np.concatenate([_random_boxes(rng, 12, -6, 20), [[3, 3, 3, 9], [5, 5, 5, 5]]])  # two of zero area
    ious = metrics.box_iou(boxes[:, None], boxes[None])
    offset = np.array([6, 6, 6, 6])  # rasterise on a canvas that holds the negative coordinates too
    for i, j in itertools.product(range(len(boxes)), repeat=2):
        a, b = _raster(boxes[i] + offset, (30, 30)), _raster(boxes[j] + offset, (30, 30))
        union = (a | b).sum()
        assert ious[i, j] == pytest.approx((a & b).sum() / union if union else 0.0)
    # Integer and float boxes with the same corners agree.
    np.testing.assert_allclose(metrics.box_iou(boxes.astype(float)[:, None], boxes[None]), ious)


def test_box_iou_refuses_coordinates_whose_areas_overflow():
    huge = [0, 0, 1e155, 1e155]  # area 1e310: inf / inf made the IoU of a box with itself 0
    with pytest.raises(ValueError, match=r"boxes_a must have coordinates within \+-2\*\*53"):
        metrics.box_iou(huge, huge)
    with pytest.raises(ValueError, match="boxes_b must be real numbers of shape"):
        metrics.box_iou([0, 0, 1, 1], [[0, 0, 1, 1], [0, 0, 1]])


def test_mask_iou_refuses_nan_which_bool_counts_as_object():
    assert metrics.mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 0.0
    assert metrics.mask_iou(np.array([[0, 255]], np.uint8), np.array([[1, 1]])) == 0.5  # 0/255 PNG masks
    with pytest.raises(ValueError, match="mask_a contains NaN"):
        metrics.mask_iou(np.array([[np.nan, 0.0]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="masks contains NaN"):
        metrics.pointing_hits(np.ones((1, 2, 2)), masks=[np.full((2, 2), np.nan)])


# --- ILSVRC localisation ------------------------------------------------------------------


def _top5_error_by_loops(pred_classes, pred_boxes, gt_classes, gt_boxes):
    errors = []
    for guesses, boxes, classes, truths in zip(pred_classes, pred_boxes, gt_classes, gt_boxes):
        found = False
        for c, b in zip(guesses, boxes):
            for t_class, t in zip(classes, truths):
                a, g = _raster(b, (40, 40)), _raster(t, (40, 40))
                union = (a | g).sum()
                if c == t_class and union and (a & g).sum() / union >= 0.5:
                    found = True
        errors.append(not found)
    return float(np.mean(errors))


def test_top5_error_matches_the_ilsvrc_rule_by_loops():
    rng = np.random.default_rng(1)
    n, k = 40, 5
    pred_classes = rng.integers(0, 4, (n, k))
    pred_boxes = _random_boxes(rng, n * k, 0, 40).reshape(n, k, 4)
    gt_boxes = [_random_boxes(rng, m, 0, 40) for m in rng.integers(1, 4, n)]
    gt_classes = [rng.integers(0, 4, len(b)) for b in gt_boxes]
    # Some guesses copy an object's box (a sure overlap), under its class or another.
    for i in range(0, n, 2):
        pred_boxes[i, i % k] = gt_boxes[i][0]
    error = metrics.top5_localisation_error(pred_classes, pred_boxes, gt_classes, gt_boxes)
    assert error == pytest.approx(_top5_error_by_loops(pred_classes, pred_boxes, gt_classes, gt_boxes))
    assert 0.0 < error < 1.0


def test_top5_error_refuses_class_ids_of_another_kind():
    # WordNet ids never equal integer guesses: the error was a silent 1.0.
    with pytest.raises(ValueError, match="gt_classes must be integer class ids"):
        metrics.top5_localisation_error([[3]], [[[0, 0, 10, 10]]], [np.array(["n01440764"])], [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="pred_classes must be integer class ids"):
        metrics.top5_localisation_error([[3.5]], [[[0, 0, 10, 10]]], [3], [[0, 0, 10, 10]])


def test_an_image_with_a_label_and_no_boxes_is_not_localised():
    boxes = [np.array([[0, 0, 10, 10]]), np.zeros((0, 4))]
    error = metrics.top5_localisation_error([[3], [4]], [[[0, 0, 10, 10]], [[0, 0, 10, 10]]], [3, 4], boxes)
    assert error == 0.5


@pytest.mark.parametrize("threshold", [float("nan"), 0.0, 1.5, "0.5"])
def test_iou_thresholds_must_be_in_0_1(threshold):
    with pytest.raises(ValueError, match="threshold must be a finite number > 0.0 and <= 1.0"):
        metrics.localisation_hits([[0, 0, 10, 10]], [[[0, 0, 10, 10]]], threshold)
    with pytest.raises(ValueError, match="threshold must be"):
        metrics.top5_localisation_error([[3]], [[[0, 0, 10, 10]]], [3], [[0, 0, 10, 10]], threshold)


def test_ground_truth_boxes_must_come_in_fours():
    with pytest.raises(ValueError, match=r"gt_boxes must hold \[M, 4\] boxes per image"):
        metrics.localisation_hits([[0, 0, 10, 10]], [np.arange(5)])


# --- the pointing game --------------------------------------------------------------------


def test_pointing_game_matches_a_pixel_loop_with_ties_and_boxes_partly_outside():
    rng = np.random.default_rng(2)
    shape = (14, 17)
    maps = rng.integers(0, 4, (30,) + shape).astype(float)  # many ties in the maximum
    boxes = _random_boxes(rng, 30, -8, 26)
    masks = np.stack([_raster(b, shape) for b in boxes])
    for tolerance in (0, 3, 15):
        expected = [_points_at(s, m, tolerance) for s, m in zip(maps, masks)]
        np.testing.assert_array_equal(metrics.pointing_hits(maps, masks=masks, tolerance=tolerance), expected)
        np.testing.assert_array_equal(metrics.pointing_hits(maps, boxes=boxes, tolerance=tolerance), expected)


def test_a_box_with_no_pixel_in_the_map_is_no_object():
    saliency = np.zeros((1, 10, 10))
    saliency[0, 5, 5] = 1.0
    # An empty box and a box beyond the map were hits; their masks are empty, a miss.
    for box in ([5, 5, 5, 5], [5, 5, 9, 5], [12, 5, 20, 6], [-9, -9, 0, 0]):
        assert not metrics.pointing_hits(saliency, boxes=[[box]])[0], box
        assert not metrics.pointing_hits(saliency, masks=[_raster(box, (10, 10))])[0], box
    # Another box of the same image still counts.
    assert metrics.pointing_hits(saliency, boxes=[[[5, 5, 5, 5], [0, 0, 2, 2]]], tolerance=6)[0]


def test_pointing_refuses_a_bad_tolerance_and_a_single_map():
    maps = np.ones((1, 4, 4))
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0.0"):
        metrics.pointing_hits(maps, boxes=[[0, 0, 1, 1]], tolerance="15")
    with pytest.raises(ValueError, match="tolerance must be"):
        metrics.pointing_hits(maps, boxes=[[0, 0, 1, 1]], tolerance=-1)
    with pytest.raises(ValueError, match=r"saliency_maps must be N maps \[N, H, W\].*saliency\[None\]"):
        metrics.pointing_hits(maps[0], boxes=[[0, 0, 1, 1]] * 4)


# --- deletion and insertion ---------------------------------------------------------------


def _linear(params, images):
    return images.reshape(images.shape[0], -1) @ params


@pytest.fixture(scope="module")
def tiny_linear():
    weights = np.random.default_rng(3).normal(size=(3 * 4 * 3, 3)) / 20.0
    return _linear, jnp.asarray(weights, jnp.float32)


def _plain_deletion(params, image, saliency, klass, steps, baseline):
    """Petsiuk's deletion by a loop, numpy only: ties in row-major order, the last point all pixels."""
    height, width, _ = image.shape
    order = sorted(range(height * width), key=lambda p: (-saliency.ravel()[p], p))
    points = []
    for k in range(steps + 1):
        x = image.copy().reshape(-1, 3)
        x[order[: int(round(k * height * width / steps))]] = baseline
        logits = x.reshape(1, -1) @ np.asarray(params, np.float64)
        p = np.exp(logits - logits.max())
        points.append((p / p.sum())[0, klass])
    points = np.array(points)
    return points, float((points[:-1] + points[1:]).sum() / 2 / steps)


def test_deletion_of_a_float64_map_keeps_orders_float32_cannot_tell_apart(tiny_linear):
    logits_fn, params = tiny_linear
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (1, 3, 4, 3)).astype(np.float32)
    order = rng.permutation(12).reshape(1, 3, 4)
    saliency = 1.0 + 1e-9 * order  # one value in float32: the order was lost to row-major ties
    curve = F.deletion_curve(logits_fn, params, image, saliency, 1, steps=5, baseline=0.0, batch_size=None)
    expected, auc = _plain_deletion(params, image[0].astype(np.float64), saliency[0], 1, 5, 0.0)
    np.testing.assert_allclose(curve.probabilities[0], expected, rtol=1e-4, atol=1e-7)
    assert float(curve.auc[0]) == pytest.approx(auc, rel=1e-4, abs=1e-7)
    # Values beyond float32's range keep their order too, and unsigned maps are not reversed by negation.
    np.testing.assert_array_equal(F.pixel_ranks(np.array([[1e39, 2e39, -1e39, 0.0]])), [[1, 0, 3, 2]])
    np.testing.assert_array_equal(F.pixel_ranks(jnp.array([[3, 1, 255, 0]], jnp.uint8)), [[1, 2, 0, 3]])
    # A constant map deletes in row-major order, as the loop does.
    flat = F.deletion_curve(logits_fn, params, image, np.zeros((1, 3, 4)), 1, steps=5, baseline=0.0, batch_size=None)
    np.testing.assert_allclose(
        flat.probabilities[0], _plain_deletion(params, image[0].astype(np.float64), np.zeros((3, 4)), 1, 5, 0.0)[0],
        rtol=1e-4, atol=1e-7,
    )


def test_a_nan_map_has_no_deletion_curve(tiny_linear):
    logits_fn, params = tiny_linear
    image = jnp.full((2, 3, 4, 3), 100.0)
    saliency = np.random.default_rng(5).uniform(size=(2, 3, 4)).astype(np.float32)
    saliency[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="saliency contains NaN or infinite values"):
        F.deletion_curve(logits_fn, params, image, saliency, steps=2, baseline=0.0)
    with pytest.raises(ValueError, match="saliency contains NaN or infinite values"):
        F.insertion_curve(logits_fn, params, image, np.where(np.isnan(saliency), np.inf, saliency), steps=2)
    # Under jit the values are unknown while tracing: the curve of that image is NaN, never plausible.
    jitted = jax.jit(functools.partial(F.deletion_curve, logits_fn, steps=2, baseline=0.0, batch_size=None))
    curve = jitted(params, image, saliency, jnp.array([0, 1]))
    assert np.isfinite(curve.probabilities[0]).all() and np.isfinite(curve.auc[0])
    assert np.isnan(curve.probabilities[1]).all() and np.isnan(curve.auc[1])


def test_curve_steps_and_map_dtype_are_checked(tiny_linear):
    logits_fn, params = tiny_linear
    image, saliency = jnp.ones((1, 3, 4, 3)), np.ones((1, 3, 4))
    # More steps than pixels repeat points; a huge count ran B * (steps + 1) model calls.
    with pytest.raises(ValueError, match="steps must be an integer >= 1 and <= 12"):
        F.deletion_curve(logits_fn, params, image, saliency, steps=13)
    with pytest.raises(ValueError, match="steps must be"):
        F.deletion_curve(logits_fn, params, image, saliency, steps=10**12)
    with pytest.raises(ValueError, match="saliency must hold real numbers"):
        F.deletion_curve(logits_fn, params, image, saliency + 1j)
    with pytest.raises(ValueError, match="saliency must hold real numbers"):
        F.deletion_curve(logits_fn, params, image, np.full((1, 3, 4), "a"))


# --- model maps ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    from saliency_jax.types import Classifier

    weights = jnp.asarray(np.random.default_rng(6).normal(size=(6 * 6 * 3, 4)), jnp.float32)
    return Classifier(_linear, weights, 6, ("a", "b", "c", "d"))


def test_top_classes_refuses_what_the_jitted_call_cannot(classifier):
    images = np.zeros((3, 6, 6, 3), np.float32)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        model_maps.top_classes(classifier, images, 2, batch_size=-1)  # was an empty answer
    with pytest.raises(ValueError, match="batch_size must be"):
        model_maps.top_classes(classifier, images, 2, batch_size=0)
    with pytest.raises(ValueError, match="images contains NaN"):
        model_maps.top_classes(classifier, np.full((3, 6, 6, 3), np.nan), 2)  # was classes of a NaN image
    assert model_maps.top_classes(classifier, images[:0], 2).shape == (0, 2)
    with pytest.raises(ValueError, match="variant must be one of"):
        model_maps.make_predictor(classifier, variant="nope")
    with pytest.raises(ValueError, match="top_k must be an integer >= 1"):
        model_maps.make_predictor(classifier, top_k=0)


def test_scale_box_is_exact_and_clipped():
    checked = 0
    for size, to in itertools.product(range(1, 40), range(1, 90, 7)):
        for x in range(size + 1):
            got = model_maps.scale_box([x, x, x, x], (size, size), (to, to))
            low, high = (x * to) // size, -((-x * to) // size)  # integer floor and ceil of x * to / size
            assert got.tolist() == [low, low, high, high], (x, size, to)  # 7 * (61 / 7) gave 60 for 61
            checked += 1
    assert checked > 3000
    np.testing.assert_array_equal(model_maps.scale_box([-3, 2, 30, 6], (12, 12), (24, 36)), [0, 4, 36, 12])


@pytest.mark.parametrize("args, message", [
    (([1, 2, 5, 6], (0, 12), (24, 36)), r"from_shape\[0\] must be an integer >= 1"),
    (([1, 2, 5, 6], (12, 12), (-24, 36)), r"to_shape\[0\] must be an integer >= 1"),
    (([1, 2, 5, 6], (12, 12, 3), (24, 36)), r"from_shape must be \(height, width\)"),
    (([np.nan, 2, 5, 6], (12, 12), (24, 36)), "box contains NaN"),
    (([5, 2, 1, 6], (12, 12), (24, 36)), "box must have x1 >= x0"),
])
def test_scale_box_refuses(args, message):
    with pytest.raises(ValueError, match=message):
        model_maps.scale_box(*args)


# --- TFDS boxes and scoring ---------------------------------------------------------------


def _scene_boxes():
    """Boxes of objects rendered by the project's own generator, with their image sizes."""
    from saliency_jax.data.cluttered_objects import ClutterConfig, example_rng, render_example

    config = ClutterConfig(image_size=40, object_size=(6, 30), num_clutter=(0, 1))
    found = []
    for index in range(6):
        example = render_example(example_rng(0, "test", index), config)
        rows, cols = np.nonzero(example.mask)
        np.testing.assert_array_equal(example.box, [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
        found.append((example.box.astype(np.int64), example.mask.shape))
    rng = np.random.default_rng(7)
    for height, width in ((37, 53), (300, 7), (1, 1), (500, 333)):  # not square, one pixel, VOC-like sizes
        for box in _random_boxes(rng, 4, 0, min(height, width) + 1):
            found.append((box, (height, width)))
    return found


def test_tfds_boxes_convert_exactly_to_pixel_boxes():
    import tensorflow_datasets as tfds

    scenes = _scene_boxes()
    for (x0, y0, x1, y1), (height, width) in scenes:
        # TFDS stores float32 fractions: ymin, xmin, ymax, xmax of the exclusive-end box.
        bbox = np.array([[y0 / height, x0 / width, y1 / height, x1 / width]], np.float32)
        np.testing.assert_array_equal(tfds_eval.normalised_to_pixels(bbox, height, width), [[x0, y0, x1, y1]])

    # voc/2007 holds VOC's 1-based inclusive pixels over the size: the first pixel is 1, the last x1.
    def source(self, split, decoders=None, **kwargs):
        return [{
            "image": np.zeros((height, width, 3), np.uint8),
            "image/filename": f"{i:06d}.jpg",
            "objects": {
                "bbox": np.array([[(y0 + 1) / height, (x0 + 1) / width, y1 / height, x1 / width]], np.float32),
                "label": np.array([i % 20]),
                "is_difficult": np.array([False]),
            },
        } for i, ((x0, y0, x1, y1), (height, width)) in enumerate(scenes) if x1 > x0 and y1 > y0]

    kept = [box for box, _ in scenes if box[2] > box[0] and box[3] > box[1]]
    with tfds.testing.mock_data(as_data_source_fn=source):
        examples = list(tfds_eval.voc_examples("test"))
        with pytest.raises(ValueError, match="limit must be an integer >= 0"):
            list(tfds_eval.voc_examples("test", limit=-1))  # was no images at all
    assert len(examples) == len(kept) > 10
    for example, box in zip(examples, kept):
        np.testing.assert_array_equal(example.boxes, [box])


@pytest.mark.parametrize("args, message", [
    (([[np.nan, 0, 1, 1]], 10, 10), "bbox contains NaN"),
    (([[0, 0, 1, 1]], -10, 10), "height must be an integer >= 1"),
    (([[0, 0, 1, 1]], 10, 10.5), "width must be an integer >= 1"),
    (([[0, 0, 1]], 10, 10), r"bbox must have shape \[M, 4\]"),
])
def test_normalised_to_pixels_refuses(args, message):
    with pytest.raises(ValueError, match=message):
        tfds_eval.normalised_to_pixels(*args)


def test_evaluate_refuses_no_examples_and_maps_of_another_size():
    image = np.zeros((60, 80, 3), np.uint8)
    example = tfds_eval.LocalisationExample(image, np.array([[10, 10, 40, 40]]), np.array([5]), "a")
    with pytest.raises(ValueError, match="examples must hold at least one image"):
        tfds_eval.evaluate([], lambda _: None, class_agnostic=True)  # was RealScores(0, nan, nan, nan)
    peak = np.zeros((224, 224))
    peak[20, 20] = 1.0  # inside the box in the model's pixels, scored as if in the image's
    with pytest.raises(ValueError, match=r"saliency map at the image's size \(60, 80\), got shape \(224, 224\)"):
        tfds_eval.evaluate(
            [example], lambda _: tfds_eval.Prediction(np.array([5]), np.array([[10, 10, 40, 40]]), peak),
            class_agnostic=True,
        )
    with pytest.raises(ValueError, match="predict must return a Prediction"):
        tfds_eval.evaluate([example], lambda _: (np.array([5]), np.array([[10, 10, 40, 40]])), class_agnostic=True)
    with pytest.raises(ValueError, match="class_agnostic must be True or False"):
        tfds_eval.evaluate([example], lambda _: None, class_agnostic="no")
    # An image without objects is a miss under the ILSVRC protocol, not an IndexError.
    empty = tfds_eval.LocalisationExample(image, np.zeros((0, 4), np.int64), np.zeros(0, np.int64), "b")
    guess = tfds_eval.Prediction(np.array([5]), np.array([[10, 10, 40, 40]]))
    scores = tfds_eval.evaluate([example, empty], lambda _: guess, class_agnostic=False)
    assert scores[:3] == (2, 0.5, 0.5) and np.isnan(scores.pointing)


@pytest.mark.parametrize("bbox, message", [
    ([[2, 3, 8, 9]], r"bbox must be fractions of the image's size in \[0, 1\].*from 2 to 9"),  # pixels by mistake
    ([[-0.1, 0.2, 0.5, 0.6]], r"bbox must be fractions of the image's size in \[0, 1\]"),
    ([[0.8, 0.2, 0.3, 0.6]], r"bbox must have ymin <= ymax and xmin <= xmax.*box 0"),  # ymin > ymax
    ([[0.1, 0.2, 0.3, 0.6], [0.1, 0.7, 0.3, 0.6]], r"bbox must have ymin <= ymax and xmin <= xmax.*box 1"),
])
def test_normalised_to_pixels_refuses_pixels_and_inverted_fractions(bbox, message):
    # Both used to clip to the plausible box [[10, 10, 10, 10]] (or another edge box) without a word.
    with pytest.raises(ValueError, match=message):
        tfds_eval.normalised_to_pixels(bbox, 10, 10)
    # The edges of the range are fractions, and an empty (zero-area) box is not inverted.
    np.testing.assert_array_equal(tfds_eval.normalised_to_pixels([[0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]], 10, 10),
                                  [[0, 0, 10, 10], [5, 5, 5, 5]])


@pytest.mark.parametrize("classes, boxes, message", [
    # The same eight numbers as [[10, 10, 40, 40], [0, 0, 5, 5]], which reshape(-1, 4) read as two other boxes.
    ([5, 7], np.array([[10, 10], [40, 40], [0, 0], [5, 5]]), r"predict's boxes must have shape \[K, 4\].*"
                                                              r"\[2, 4\] for 2 classes, got shape \(4, 2\)"),
    ([5], np.array([[10, 10], [40, 40]]), r"predict's boxes must have shape \[K, 4\].*\[1, 4\] for 1 class, "
                                          r"got shape \(2, 2\)"),
    ([5], np.array([10, 10, 40, 40]), r"predict's boxes must have shape \[K, 4\].*got shape \(4,\)"),
    ([5, 7], np.array([[10, 10, 40, 40]]), r"\[2, 4\] for 2 classes, got shape \(1, 4\)"),
    ([5], None, r"predict's boxes must be \[1, 4\].*got None"),  # was "cannot reshape array of size 1"
    ([5], "box", r"predict's boxes must be real numbers"),
    (None, np.array([[10, 10, 40, 40]]), "predict's classes must be int .K. with K >= 1.*got None"),
    ([], np.zeros((0, 4)), r"predict's classes must have shape \[K\] with K >= 1"),
    ([[5]], np.array([[10, 10, 40, 40]]), r"predict's classes must have shape \[K\].*got shape \(1, 1\)"),
    ([5.0], np.array([[10, 10, 40, 40]]), "predict's classes must be integer class ids, got dtype float64"),
])
def test_evaluate_refuses_boxes_that_are_not_one_per_class(classes, boxes, message):
    image = np.zeros((60, 80, 3), np.uint8)
    example = tfds_eval.LocalisationExample(image, np.array([[10, 10, 40, 40]]), np.array([5]), "a")
    guess = tfds_eval.Prediction(None if classes is None else np.asarray(classes), boxes)
    for class_agnostic in (True, False):
        with pytest.raises(ValueError, match=message):
            tfds_eval.evaluate([example], lambda _: guess, class_agnostic=class_agnostic)


def test_evaluate_refuses_examples_that_are_not_localisation_examples():
    image = np.zeros((60, 80, 3), np.uint8)
    guess = tfds_eval.Prediction(np.array([5]), np.array([[10, 10, 40, 40]]))
    good = tfds_eval.LocalisationExample(image, np.array([[10, 10, 40, 40]]), np.array([5]), "a")
    for bad in (image, (image, np.array([[10, 10, 40, 40]]), np.array([5]), "a"), {"image": image}):
        with pytest.raises(ValueError, match=r"examples must yield LocalisationExample .*got \w+ at position 1"):
            tfds_eval.evaluate([good, bad], lambda _: guess, class_agnostic=True)  # was AttributeError
    # Lists for boxes and labels are taken as arrays, not refused by a boolean index deep inside.
    listed = tfds_eval.LocalisationExample(image, [[10, 10, 40, 40]], [5], "b")
    assert tfds_eval.evaluate([listed], lambda _: guess, class_agnostic=False)[:3] == (1, 1.0, 0.0)


def test_the_class_aware_pointing_game_scores_the_images_label_only():
    # Objects of classes 5 and 9; the map peaks on the class-9 object, the image's label is 5.
    image = np.zeros((80, 100, 3), np.uint8)
    example = tfds_eval.LocalisationExample(image, np.array([[10, 10, 40, 40], [60, 40, 80, 60]]),
                                            np.array([5, 9]), "a")
    peak = np.zeros((80, 100))
    peak[50, 70] = 1.0
    guess = tfds_eval.Prediction(np.array([5]), np.array([[10, 10, 40, 40]]), peak)
    assert tfds_eval.evaluate([example], lambda _: guess, class_agnostic=False).pointing == 0.0  # was 1.0
    assert tfds_eval.evaluate([example], lambda _: guess, class_agnostic=True).pointing == 1.0


@pytest.mark.parametrize("boxes, labels, message", [
    ([[10, 10, 40, 40], [0, 0, 5, 5]], [5], r"example 0 \('a'\): labels must have shape \[M\], one per box \(2\)"),
    ([[10, 10, 40, 40]], 5, r"labels must have shape \[M\]"),  # was a TypeError
    ([[10, 10, 40, 40]], [5.5], "labels must be integer class ids"),
    ([[10, 10, np.nan, 40]], [5], "boxes must be finite"),
    ([10, 10, 40, 40], [5], r"boxes must have shape \[M, 4\]"),
    ("box", [5], "boxes must be real numbers"),
])
def test_evaluate_names_a_malformed_example(boxes, labels, message):
    image = np.zeros((60, 80, 3), np.uint8)
    example = tfds_eval.LocalisationExample(image, boxes, labels, "a")
    guess = tfds_eval.Prediction(np.array([5]), np.array([[10, 10, 40, 40]]))
    for class_agnostic in (True, False):
        with pytest.raises(ValueError, match=message):
            tfds_eval.evaluate([example], lambda _: guess, class_agnostic=class_agnostic)


def test_evaluate_clips_boxes_to_the_image():
    image = np.zeros((60, 80, 3), np.uint8)
    # The object reaches past the image; clipped, the prediction inside the image matches it exactly.
    example = tfds_eval.LocalisationExample(image, np.array([[40, 30, 200, 90]]), np.array([5]), "a")
    guess = tfds_eval.Prediction(np.array([5]), np.array([[40, 30, 80, 60]]))
    assert tfds_eval.evaluate([example], lambda _: guess, class_agnostic=False)[:3] == (1, 1.0, 0.0)


def test_malformed_imagenet_annotations_name_the_file(tmp_path):
    (tmp_path / "ILSVRC2012_val_00000001.xml").write_text("<annotation><object><name>n01</name></object>")
    with pytest.raises(ValueError, match="annotations: .*ILSVRC2012_val_00000001.xml.* is not an ILSVRC annotation"):
        tfds_eval.read_imagenet_boxes(tmp_path)
    (tmp_path / "ILSVRC2012_val_00000001.xml").write_text(
        "<annotation><object><name>n01</name><bndbox><xmin>1</xmin><ymin>2</ymin></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match="is not an ILSVRC annotation"):
        tfds_eval.read_imagenet_boxes(tmp_path)
    table = tmp_path / "solution.csv"
    table.write_text("Id,Boxes\nILSVRC2012_val_00000001,n01 1 2 3 4\n")
    with pytest.raises(ValueError, match="must be a table with the columns ImageId,PredictionString"):
        tfds_eval.read_imagenet_boxes(table)
    table.write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n01 1 2 x 4\n")
    with pytest.raises(ValueError, match="'ILSVRC2012_val_00000001' has a PredictionString whose groups"):
        tfds_eval.read_imagenet_boxes(table)


# --- the randomisation sanity check -------------------------------------------------------


def _spearman_by_ranks(a, b):
    """Pearson correlation of average ranks (ties share the mean of their positions)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        out = np.empty(len(v))
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for t in range(i, j + 1):
                out[order[t]] = (i + j) / 2
            i = j + 1
        return out

    ra, rb = ranks(list(a)), ranks(list(b))
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra**2).sum() * (rb**2).sum()))


def test_spearman_rank_correlation_by_average_ranks():
    rng = np.random.default_rng(8)
    a = rng.integers(0, 5, (4, 6, 5)).astype(float)  # many ties
    b = a + rng.integers(-2, 3, a.shape)
    got = sanity.spearman_rank_correlation(a, b)
    for i in range(4):
        assert got[i] == pytest.approx(_spearman_by_ranks(a[i].ravel(), b[i].ravel()))
    # The paper's map is max_c |w|, the signed signal w itself: a sign flip is -1 signed, 1 absolute.
    w = rng.normal(size=(2, 4, 4, 3))
    np.testing.assert_allclose(sanity.spearman_rank_correlation(w, -w), -1.0)
    absolute = np.abs(w).max(-1)
    np.testing.assert_allclose(sanity.spearman_rank_correlation(absolute, np.abs(-w).max(-1)), 1.0)
    with pytest.raises(ValueError, match=r"a and b must be batches of maps \[B, ...\]"):
        sanity.spearman_rank_correlation(a[0, 0], b[0, 0])


def test_randomisation_refuses_a_missing_key_and_strings_for_sequences(linear_model):
    logits_fn, params = linear_model
    images = jnp.ones((1, 6, 5, 3))
    with pytest.raises(ValueError, match="key must be a PRNG key for cascading_randomization"):
        sanity.cascading_randomization(logits_fn, params, images, key=None)
    with pytest.raises(ValueError, match="key must be a PRNG key for randomize_layers"):
        sanity.randomize_layers(params, ["w"], key=None)
    # "wb" was read as the stages "w" and "b" of a model that has layers of those names.
    with pytest.raises(ValueError, match="layers must be a sequence of stages, got the string 'wb'"):
        sanity.cascading_randomization(logits_fn, params, images, key=jax.random.key(0), layers="wb")
    with pytest.raises(ValueError, match="layers must be a sequence of layer names"):
        sanity.randomize_layers(params, "wb", key=jax.random.key(0))
    with pytest.raises(ValueError, match="rules must be a sequence of rule names"):
        sanity.cascading_randomization(logits_fn, params, images, key=jax.random.key(0), rules="gradient")
    with pytest.raises(ValueError, match="cascading must be True or False"):
        sanity.cascading_randomization(logits_fn, params, images, key=jax.random.key(0), cascading="no")


def test_sanity_helpers_and_class_names_name_what_they_cannot_take(tiny_cnn):
    """Once deep TypeErrors, an AttributeError, a silently real part, and 'toilet tissue' for class -1."""
    import jax

    from saliency_jax.evaluation import sanity
    from saliency_jax.models.imagenet import short_name

    logits_fn, params = tiny_cnn
    images = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    key = jax.random.key(0)
    for kwargs, message in [(dict(layers=[3]), "each stage must be a layer name"),
                            (dict(rules=None), "rules must be a sequence"),
                            (dict(layers=5), "layers must be None or a sequence")]:
        with pytest.raises(ValueError, match=message):
            sanity.cascading_randomization(logits_fn, params, images, key=key, **kwargs)
    for layers, bad_params, message in [(None, params, "layers must be a sequence of layer names"),
                                        ([["conv1"]], params, "layers must be a sequence of layer names"),
                                        (["conv1"], [1, 2], "params must be a mapping")]:
        with pytest.raises(ValueError, match=message):
            sanity.randomize_layers(bad_params, layers, key=key)
    with pytest.raises(ValueError, match="a must hold real numbers, got dtype complex128"):
        sanity.spearman_rank_correlation(np.ones((1, 3), complex), np.ones((1, 3)))
    assert short_name(278) == "kit fox"
    for bad in (-1, True, 1000, 2.0, "5"):
        with pytest.raises(ValueError, match="class_id must be an integer >= 0 and <= 999"):
            short_name(bad)


def test_metrics_refuse_complex_boxes_and_masks_that_are_not_2d():
    with pytest.raises(ValueError, match="got complex numbers"):
        metrics.box_iou(np.array([[0, 0, 4, 4 + 1j]]), np.array([[0, 0, 4, 4]]))  # was a ComplexWarning
    with pytest.raises(ValueError, match=r"must be \[H, W\] masks"):
        metrics.mask_iou(np.ones(5, bool), np.ones(5, bool))
    with pytest.raises(ValueError, match="boolean"):
        metrics.mask_iou(np.ones((2, 2), complex), np.ones((2, 2), bool))


def test_the_pointing_game_takes_masks_from_any_iterable():
    maps = np.zeros((2, 6, 6))
    maps[0, 1, 1] = maps[1, 4, 4] = 1.0
    masks = [np.zeros((6, 6), bool) for _ in range(2)]
    masks[0][0:3, 0:3] = True
    masks[1][0:2, 0:2] = True
    hits = metrics.pointing_hits(maps, masks=(m for m in masks), tolerance=1)  # was a TypeError
    np.testing.assert_array_equal(hits, metrics.pointing_hits(maps, masks=masks, tolerance=1))
    np.testing.assert_array_equal(hits, [True, False])
