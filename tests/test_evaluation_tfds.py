"""Real-benchmark readers on TFDS mock data: VOC 2007 boxes, ImageNet validation boxes, scoring."""

import functools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from saliency_jax.evaluation import tfds_eval


def _voc_example(height, width, boxes_px, labels, difficult, name):
    """A decoded voc/2007 example with boxes given as 1-based inclusive pixels (as the XML files)."""
    bbox = np.array([[(y0) / height, (x0) / width, y1 / height, x1 / width] for x0, y0, x1, y1 in boxes_px],
                    np.float32).reshape(-1, 4)
    return {
        "image": np.full((height, width, 3), 90, np.uint8),
        "image/filename": name,
        "labels": np.asarray(sorted(set(labels)), np.int64),
        "labels_no_difficult": np.asarray(sorted(set(labels)), np.int64),
        "objects": {
            "bbox": bbox,
            "label": np.asarray(labels, np.int64),
            "is_difficult": np.asarray(difficult, bool),
            "is_truncated": np.zeros(len(labels), bool),
            "pose": np.zeros(len(labels), np.int64),
        },
    }


VOC = [
    # 1-based inclusive: pixels 1..50 are 0-based 0..49, so the box is x0=0, x1=50.
    _voc_example(100, 200, [(1, 11, 50, 60), (101, 1, 200, 100)], [14, 6], [False, True], "000001.jpg"),
    _voc_example(50, 50, [(5, 5, 10, 10)], [3], [True], "000002.jpg"),  # only a difficult object
    _voc_example(80, 60, [(11, 21, 30, 40)], [11], [False], "000003.jpg"),
]


def _voc_source(self, split, decoders=None, **kwargs):
    return list(VOC)


def test_voc_boxes_come_out_in_pixels_with_exclusive_ends():
    with tfds.testing.mock_data(as_data_source_fn=_voc_source):
        examples = list(tfds_eval.voc_examples("test"))
    assert [e.name for e in examples] == ["000001.jpg", "000003.jpg"]  # the all-difficult image is skipped
    first = examples[0]
    # The difficult object stays a target (TorchRay's pointing game: a hit on it counts).
    np.testing.assert_array_equal(first.boxes, [[0, 10, 50, 60], [100, 0, 200, 100]])
    np.testing.assert_array_equal(first.labels, [14, 6])
    assert first.image.shape == (100, 200, 3)
    np.testing.assert_array_equal(examples[1].boxes, [[10, 20, 30, 40]])
    with tfds.testing.mock_data(as_data_source_fn=_voc_source):
        everything = list(tfds_eval.voc_examples("test", include_difficult=True, limit=2))
    assert len(everything) == 2 and len(everything[0].boxes) == 2
    np.testing.assert_array_equal(everything[0].boxes[1], [100, 0, 200, 100])


def test_voc_reads_tfds_random_mock_data():
    # The default mock generator gives every sequence its own random length; a
    # reader must notice that boxes and labels disagree instead of zipping them.
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(ValueError, match="boxes"):
            list(tfds_eval.voc_examples("test"))


def _imagenet_names(count):
    with tfds.testing.mock_data(num_examples=count, policy=tfds.testing.MockPolicy.USE_CODE):
        source = tfds.data_source("imagenet2012", split="validation")
        return [(source[i]["file_name"], source[i]["image"].shape, int(source[i]["label"])) for i in range(count)]


def test_imagenet_validation_boxes_join_on_the_file_name(tmp_path):
    names = _imagenet_names(3)
    wnids = tfds.builder("imagenet2012").info.features["label"].names
    # Annotations for the first two mocked images only, as ILSVRC XML files.
    for (name, _, label), box in zip(names[:2], ([0, 1, 4, 5], [2, 2, 1000, 1000])):
        stem = name.rsplit(".", 1)[0]
        (tmp_path / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}</filename>"
            f"<object><name>{wnids[label]}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin>"
            f"<xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object></annotation>"
        )
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        examples = list(tfds_eval.imagenet_examples(tmp_path))
    assert [e.name for e in examples] == [n for n, _, _ in names[:2]]
    np.testing.assert_array_equal(examples[0].boxes, [[0, 1, 5, 6]])  # inclusive max -> exclusive end
    height, width = names[1][1][:2]
    np.testing.assert_array_equal(examples[1].boxes, [[min(2, width), min(2, height), width, height]])  # clipped
    assert examples[0].labels.tolist() == [names[0][2]]


def test_imagenet_boxes_from_the_kaggle_table(tmp_path):
    table = tmp_path / "LOC_val_solution.csv"
    table.write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01751748 10 20 30 40 n01751748 0 0 5 5 \n"
        "ILSVRC2012_val_00000002,n09193705 1 2 3 4\n"
    )
    boxes = tfds_eval.read_imagenet_boxes(table)
    np.testing.assert_array_equal(boxes["ILSVRC2012_val_00000001"][0], [[10, 20, 31, 41], [0, 0, 6, 6]])
    assert boxes["ILSVRC2012_val_00000002"][1] == ("n09193705",)
    with pytest.raises(FileNotFoundError):
        tfds_eval.read_imagenet_boxes(tmp_path / "missing.csv")


def test_normalised_boxes_round_to_pixels():
    np.testing.assert_array_equal(
        tfds_eval.normalised_to_pixels([[0.1, 0.25, 0.5, 1.0]], 100, 40), [[10, 10, 40, 50]]
    )


def test_evaluate_scores_perfect_and_wrong_predictors():
    image = functools.partial(np.zeros, (60, 80, 3), np.uint8)
    examples = [
        tfds_eval.LocalisationExample(image(), np.array([[10, 10, 40, 40]]), np.array([5]), "a"),
        tfds_eval.LocalisationExample(image(), np.array([[0, 0, 20, 20]]), np.array([9]), "b"),
    ]
    truth = {id(e.image): e for e in examples}

    def oracle(image):
        example = truth[id(image)]
        saliency = np.zeros(image.shape[:2])
        y0, x0 = example.boxes[0, 1], example.boxes[0, 0]
        saliency[y0, x0] = 1.0
        return tfds_eval.Prediction(np.array([example.labels[0], 1]), np.repeat(example.boxes, 2, 0), saliency)

    scores = tfds_eval.evaluate(examples, oracle, class_agnostic=False)
    assert scores == tfds_eval.RealScores(2, 1.0, 0.0, 1.0)

    def second_guess(image):  # the right box under the second class: a top-5 hit, a top-1 miss
        example = truth[id(image)]
        return tfds_eval.Prediction(np.array([1, example.labels[0]]), np.repeat(example.boxes, 2, 0))

    scores = tfds_eval.evaluate(examples, second_guess, class_agnostic=False)
    assert scores[:3] == (2, 0.0, 0.0)  # the top-1 accuracy ignored the class (was 1.0)
    assert tfds_eval.evaluate(examples, second_guess, class_agnostic=True)[:2] == (2, 1.0)  # CorLoc: boxes only

    def elsewhere(image):
        return tfds_eval.Prediction(np.array([5]), np.array([[60, 45, 80, 60]]))

    scores = tfds_eval.evaluate(examples, elsewhere, class_agnostic=True)
    assert scores.top1_accuracy == 0.0 and np.isnan(scores.top5_error) and np.isnan(scores.pointing)
    table = tfds_eval.format_scores([("voc/2007 test", "paper", scores)])
    assert "| voc/2007 test | paper | 2 | 0.000 | - | - |" in table
