"""The input pipeline refuses images, labels and crops that a cast or a slice would silently change."""

import numpy as np
import pytest

from saliency_jax.training.input_pipeline import ArraySource, eval_batches, fit_image, train_batches

S = 8  # image_size


def _first_eval_batch(source, **kwargs):
    batches = eval_batches(source, global_batch_size=4, image_size=S, num_workers=0, **kwargs)
    try:
        return next(batches)
    finally:
        batches.close()


def _source(images, labels, path):
    """The same examples read by ``_Reader``'s fast path (stacked rows) or its per-example path."""
    if path == "fast":
        return ArraySource({"image": images, "label": labels}), {}
    if path == "resized":  # get_batch, but resize_size != image_size: per example, through fit_image
        return ArraySource({"image": images, "label": labels}), {"resize_size": S + 2}
    return [{"image": i, "label": l} for i, l in zip(images, labels)], {}  # no get_batch at all


PATHS = ["fast", "resized", "per_example"]


def _images(n=4, value=200, dtype=np.uint8, size=S):
    return np.full((n, size, size, 3), value, dtype)


# 1. Images that are not uint8 --------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("images", [_images(value=0.8, dtype=np.float32), _images(value=1000, dtype=np.int32)],
                         ids=["float_0_1", "int32_1000"])
def test_images_that_are_not_uint8_are_refused_on_every_path(images, path):
    # The fast path used to cast: the 0-1 float image came out black, int32 1000 as 232.
    source, kwargs = _source(images, np.arange(4), path)
    with pytest.raises(ValueError, match=f"image must be uint8 .*got dtype {images.dtype}"):
        _first_eval_batch(source, **kwargs)
    with pytest.raises(ValueError, match="image must be uint8"):
        next(train_batches(source, global_batch_size=4, seed=0, image_size=S, num_workers=0, **kwargs))


def test_uint8_images_still_take_the_fast_path_with_their_flips():
    images = np.arange(4 * S * S * 3, dtype=np.uint32).reshape(4, S, S, 3).astype(np.uint8)
    batch = next(train_batches(ArraySource({"image": images, "label": np.arange(4)}), global_batch_size=4, seed=0,
                               image_size=S, num_workers=0))
    assert batch.images.dtype == np.uint8 and batch.labels.dtype == np.int32
    for image, label in zip(batch.images, batch.labels):
        assert any(np.array_equal(image, flipped) for flipped in (images[label], images[label][:, ::-1]))


# 2. Labels that are not int32 class ids ----------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "labels, match",
    [
        (np.array([0, 1, 2**32 + 1, 3], np.int64),
         r"label of example 2 must be a class id in int32's range.*4294967297"),
        (np.array([0, 1, 10**10, 3], np.uint64), r"label of example 2 must be a class id in int32's range"),
        (np.array([0, 1, -(2**31) - 1, 3], np.int64), r"label of example 2 must be a class id in int32's range"),
        (np.array([0, 1, 0.7, 3]), r"label must be integer class ids .*float64"),
        (np.array([0, 1, 1e10, 3]), r"label must be integer class ids .*float64"),
        (np.array([0, 1, np.nan, 3], np.float32), r"label must be integer class ids .*float32"),
        (np.array([True, False, True, False]), r"label must be integer class ids .*bool"),
    ],
    ids=["int64_past_int32", "uint64_past_int32", "int64_below_int32", "float_fraction", "float_huge", "nan", "bool"],
)
def test_labels_that_are_not_int32_class_ids_are_refused_on_every_path(labels, match, path):
    # Before: 2**32 + 1 became class 1 on the fast path, 0.7 became class 0 on both, 1e10 an OverflowError.
    source, kwargs = _source(_images(size=S if path != "resized" else S + 4), labels, path)
    with pytest.raises(ValueError, match=match):
        _first_eval_batch(source, **kwargs)


@pytest.mark.parametrize("path", PATHS)
def test_a_float_label_names_an_example_holding_it(path):
    # Stacked rows name the first fraction; per example, the first float label read is refused.
    source, kwargs = _source(_images(size=S if path != "resized" else S + 4), np.array([1.0, 1, 2.5, 3]), path)
    with pytest.raises(ValueError, match="example 2 has 2.5" if path == "fast" else "example 0 has 1.0"):
        _first_eval_batch(source, **kwargs)


@pytest.mark.parametrize("path", PATHS)
def test_the_error_names_the_example_not_the_row(path):
    # Training batches are shuffled: the message must point at the example in the source.
    labels = np.arange(8, dtype=np.int64)
    labels[5] = 2**40
    source, kwargs = _source(_images(n=8, size=S if path != "resized" else S + 4), labels, path)
    batches = train_batches(source, global_batch_size=8, seed=3, image_size=S, num_workers=2, **kwargs)
    with pytest.raises(ValueError, match=r"label of example 5 must be a class id in int32's range"):
        next(batches)
    batches.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64])
def test_integer_labels_of_any_dtype_are_read_exactly(dtype, path):
    labels = np.array([0, 3, np.iinfo(dtype).max if np.iinfo(dtype).max < 2**31 else 2**31 - 1, 1], dtype)
    source, kwargs = _source(_images(size=S if path != "resized" else S + 4), labels, path)
    batch = _first_eval_batch(source, **kwargs)
    assert batch.labels.dtype == np.int32
    np.testing.assert_array_equal(batch.labels, labels.astype(np.int64))


def test_a_label_per_example_must_be_one_number():
    one_hot = np.eye(4, dtype=np.int64)
    with pytest.raises(ValueError, match=r"label must be one integer class id per example, got shape \(4, 4\)"):
        _first_eval_batch(ArraySource({"image": _images(), "label": one_hot}))
    with pytest.raises(ValueError, match=r"label of example 0 must be one integer class id, got shape \(4,\)"):
        _first_eval_batch([{"image": i, "label": l} for i, l in zip(_images(), one_hot)])


def test_the_label_key_is_named():
    source = ArraySource({"image": _images(), "y": np.array([0, 1, 0.5, 1])})
    with pytest.raises(ValueError, match="y must be integer class ids"):
        _first_eval_batch(source, label_key="y")


# 3. fit_image: empty images and crops off the image ----------------------------------------------


@pytest.mark.parametrize("shape", [(0, 10, 3), (10, 0, 3), (0, 0, 1), (0, 7)])
@pytest.mark.parametrize("resize_size", [None, 10])
def test_fit_image_refuses_an_empty_image(shape, resize_size):
    # Before: (0, 10, 3) came back as a black (8, 8, 3) image (or a ZeroDivisionError with resize_size).
    with pytest.raises(ValueError, match=r"image must have at least one pixel, got shape"):
        fit_image(np.zeros(shape, np.uint8), 8, resize_size)


@pytest.mark.parametrize(
    "crop_offset", [(2, 2), (-0.1, 0.5), (0.5, 1.0001), (float("nan"), 0.5), (0.5, float("inf")), (0.5,),
                    (0.1, 0.2, 0.3), ("a", 0.5), None],
)
def test_fit_image_refuses_a_crop_offset_outside_0_1(crop_offset):
    # Before: (2, 2) gave an empty (30, 0, 3) crop, and a negative offset a crop wrapped from the far edge.
    with pytest.raises(ValueError, match=r"crop_offset must be a \(row, col\) pair of numbers in \[0, 1\]"):
        fit_image(np.zeros((30, 40, 3), np.uint8), 30, 30, crop_offset=crop_offset)


def test_fit_image_crops_at_the_edges_for_offsets_0_and_1():
    image = np.arange(12 * 16, dtype=np.int32).reshape(12, 16, 1)
    image = np.concatenate([image % 256] * 3, -1).astype(np.uint8)  # no resize: resize_size is the shorter side
    for offset, (top, left) in {(0, 0): (0, 0), (1, 1): (4, 8), (1, 0): (4, 0), (0.5, 0.5): (2, 4)}.items():
        np.testing.assert_array_equal(fit_image(image, 8, 12, crop_offset=offset),
                                      image[top : top + 8, left : left + 8])
    np.testing.assert_array_equal(fit_image(image, 8, 12, crop_offset=np.array([1.0, 1.0])), image[4:, 8:])


def test_an_empty_evaluation_source_is_refused():
    empty = ArraySource({"image": np.zeros((0, S, S, 3), np.uint8), "label": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="source must hold at least one example"):
        eval_batches(empty, global_batch_size=4, image_size=S, num_workers=0)  # yielded nothing


@pytest.mark.parametrize("index, count, message", [
    (0, 0, "process_count must be an integer >= 1"),  # was a ZeroDivisionError
    (2, 2, "process_index must be an integer >= 0 and <= 1"),  # was an empty slice past the batch
    (-1, 2, "process_index"),
])
def test_process_rows_checks_the_process(index, count, message):
    from saliency_jax.training.input_pipeline import process_rows

    with pytest.raises(ValueError, match=message):
        process_rows(8, index, count)
    assert process_rows(8, 1, 2) == slice(4, 8)
