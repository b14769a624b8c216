"""A damaged TFDS file (truncated, corrupt) is reported as a ValueError naming the dataset, split and file."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from saliency_jax.data import cluttered_objects as co
from saliency_jax.training import TrainConfig, input_pipeline, train_and_evaluate

NAME = "cluttered_objects/tiny"
CONFIG = co.ClutteredObjectsConfig(
    name="tiny", clutter=co.ClutterConfig(image_size=32, num_classes=4, object_size=(10, 16)),
    split_sizes=(("train", 12), ("test", 5)), seed=3,
)
FOLDER = os.path.join("cluttered_objects", "tiny", str(co.ClutteredObjects.VERSION))
TRAIN_FILE = "cluttered_objects-train.array_record-00000-of-00001"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A tiny generated dataset, built once; each test works on its own copy."""
    data_dir = tmp_path_factory.mktemp("tfds")
    co.ClutteredObjects(data_dir=str(data_dir), config=CONFIG).download_and_prepare()
    return data_dir


def _copy(prepared, tmp_path):
    data_dir = tmp_path / "tfds"
    shutil.copytree(prepared, data_dir)
    return str(data_dir)


@pytest.fixture(params=[
    pytest.param(50000, id="shorter-than-a-block"),  # "ArrayRecord file should be at least 64KB big"
    pytest.param(65536, id="at-a-block-boundary"),  # records read back as None
    pytest.param(100000, id="mid-chunk"),  # "chunk header hash mismatch ... Failed to read RiegeliPostscript"
])
def truncated(request, prepared, tmp_path):
    """A copy of the dataset with the train split's file cut to ``param`` bytes; its data_dir and file."""
    data_dir = _copy(prepared, tmp_path)
    path = os.path.join(data_dir, FOLDER, TRAIN_FILE)
    assert os.path.getsize(path) > request.param
    os.truncate(path, request.param)
    return data_dir, path


def _expect_named(data_dir, path, example=r"example \d+ of "):
    """``pytest.raises`` for the error naming the train split's file; ``example``: a regex for which example."""
    parts = (
        f"TFDS dataset '{NAME}' split 'train' in data_dir '{data_dir}': its file '{path}' "
        "is corrupt or truncated (",
        f"); delete the dataset's folder '{os.path.join(data_dir, FOLDER)}' and run again",
    )
    return pytest.raises(ValueError, match=f"cannot read {example}" + ".*".join(map(re.escape, parts)))


def test_an_intact_dataset_loads_and_reads(prepared):
    source = input_pipeline.load_source(NAME, "train", str(prepared))
    assert len(source) == 12 and input_pipeline.num_classes_of(source) == 4
    assert source[0]["image"].shape == (32, 32, 3) and source[-1]["image"].dtype == np.uint8
    assert len(list(source)) == 12
    with pytest.raises(IndexError):
        source[12]
    cached = input_pipeline.cache_in_memory(source, ["image", "label"], num_workers=2)
    assert cached.features["image"].shape == (12, 32, 32, 3) and cached.num_classes == 4
    batches = input_pipeline.train_batches(source, global_batch_size=4, seed=0, num_steps=1, image_size=32,
                                           num_workers=2)
    try:
        assert next(batches).images.shape == (4, 32, 32, 3)
    finally:
        batches.close()


def test_reading_a_truncated_split_names_the_dataset_split_and_file(truncated):
    data_dir, path = truncated
    source = input_pipeline.load_source(NAME, "train", data_dir)  # array_record opens files at their first read
    with _expect_named(data_dir, path, example="example 0 of "):
        source[0]
    # The other split, in its own file, still reads.
    assert len(list(input_pipeline.load_source(NAME, "test", data_dir))) == 5


def test_cache_in_memory_of_a_tfds_source_names_the_file(truncated):
    """As experiments/reproduce_small.py reads the data: the builder's source, read by a pool of threads."""
    data_dir, path = truncated
    source = co.ClutteredObjects(data_dir=data_dir, config=CONFIG).as_data_source(split="train")
    with _expect_named(data_dir, path):
        input_pipeline.cache_in_memory(source, ["image", "label"], num_workers=4)
    with _expect_named(data_dir, path):
        input_pipeline.cache_in_memory(input_pipeline.load_source(NAME, "train", data_dir), ["image"], num_workers=1)


@pytest.mark.parametrize("num_workers", [1, 4])
def test_prefetched_batches_raise_the_named_error_to_the_caller(truncated, num_workers):
    """The file is read on the prefetch thread (and its decoding pool): the caller gets the ValueError itself."""
    data_dir, path = truncated
    source = input_pipeline.load_source(NAME, "train", data_dir)
    batches = input_pipeline.train_batches(source, global_batch_size=4, seed=0, image_size=32,
                                           num_workers=num_workers)
    try:
        with _expect_named(data_dir, path):
            next(batches)
    finally:
        batches.close()
    raw = tfds.data_source(NAME, split="train", data_dir=data_dir)  # a TFDS source passed in as it is
    batches = input_pipeline.eval_batches(raw, global_batch_size=4, image_size=32, num_workers=num_workers)
    try:
        with _expect_named(data_dir, path):
            next(batches)
    finally:
        batches.close()


def test_training_on_a_truncated_split_names_it(truncated, tmp_path):
    """experiments/train.py's path: train_and_evaluate opens and checks the split before compiling anything."""
    data_dir, path = truncated
    config = TrainConfig(dataset=NAME, data_dir=data_dir, train_split="train", eval_split="test", model="scaled",
                         width=0.0625, mid_convs=1, dense_features=16, image_size=32, resize_size=None,
                         global_batch_size=4, eval_batch_size=4, num_train_steps=1, num_workers=1)
    with _expect_named(data_dir, path, example="example 0 of "):
        train_and_evaluate(config, tmp_path / "run", progress=False)


def test_a_file_found_damaged_when_the_split_is_opened_is_named(prepared, tmp_path, monkeypatch):
    """A TFDS version that opens the files eagerly fails in ``tfds.data_source`` itself."""
    data_dir = _copy(prepared, tmp_path)
    path = os.path.join(data_dir, FOLDER, TRAIN_FILE)
    os.truncate(path, 100000)
    data_source = tfds.data_source

    def eager_data_source(*args, **kwargs):
        source = data_source(*args, **kwargs)
        source[0]  # the reader of the first file opens here
        return source

    monkeypatch.setattr(tfds, "data_source", eager_data_source)
    with _expect_named(data_dir, path, example=""):  # no example was asked for
        input_pipeline.load_source(NAME, "train", data_dir)


def test_a_missing_file_is_called_missing(prepared, tmp_path):
    data_dir = _copy(prepared, tmp_path)
    path = os.path.join(data_dir, FOLDER, TRAIN_FILE)
    source = input_pipeline.load_source(NAME, "train", data_dir)
    os.remove(path)
    with pytest.raises(ValueError, match=f"split 'train' in data_dir '{data_dir}': its file '{path}' is missing"):
        source[3]


def test_other_datasets_are_told_to_prepare_the_data_again(truncated):
    data_dir, path = truncated
    info = tfds.builder(NAME, data_dir=data_dir).info
    error = input_pipeline._unreadable_data(info, "train", RuntimeError("Corrupted Riegeli/records file"), index=2)
    assert "run again" in str(error)  # cluttered_objects: generated anew
    imagenet = type("Info", (), {"data_dir": os.path.join(data_dir, "imagenet2012", "5.1.0"),
                                 "full_name": "imagenet2012/5.1.0", "splits": {}})()
    message = str(input_pipeline._unreadable_data(imagenet, "validation", RuntimeError("Riegeli")))
    assert f"TFDS dataset 'imagenet2012' split 'validation' in data_dir '{data_dir}'" in message
    assert f"tfds build imagenet2012 --data_dir={data_dir} --file_format=array_record" in message
