"""The generated cluttered-objects dataset: rendering and its TFDS builder (no TensorFlow)."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from saliency_jax.data import cluttered_objects as co

SMALL = co.ClutterConfig(image_size=32, num_classes=4, object_size=(10, 16))


@pytest.fixture(scope="module")
def split():
    return co.render_split("train", 120, co.ClutterConfig(), seed=0)


def test_rendering_is_deterministic_per_example():
    a = co.render_example(co.example_rng(0, "train", 7))
    b = co.render_example(co.example_rng(0, "train", 7))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = co.render_example(co.example_rng(0, "test", 7))
    assert not np.array_equal(a.image, c.image)
    # Example i does not depend on how many are rendered.
    np.testing.assert_array_equal(co.render_split("train", 3, seed=0).image[2],
                                  co.render_split("train", 5, seed=0).image[2])


def test_fields_are_consistent(split):
    n, size = 120, co.ClutterConfig().image_size
    assert split.image.shape == (n, size, size, 3) and split.image.dtype == np.uint8
    assert split.mask.shape == (n, size, size) and split.mask.dtype == bool
    assert split.box.shape == (n, 4) and split.box.dtype == np.int32
    assert split.label.min() >= 0 and split.label.max() < 6
    for mask, box in zip(split.mask, split.box):
        assert mask.any()
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        assert tuple(box) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)  # tight x0, y0, x1, y1, exclusive
        x0, y0, x1, y1 = box
        assert mask[y0:y1, x0:x1].sum() == mask.sum()


def test_objects_vary_in_class_position_size_and_colour(split):
    counts = np.bincount(split.label, minlength=6)
    assert counts.min() >= 10  # every class appears
    centres = np.stack([(split.box[:, 0] + split.box[:, 2]) / 2, (split.box[:, 1] + split.box[:, 3]) / 2], 1)  # x, y
    assert centres.std(axis=0).min() > 8  # spread over a 64-pixel frame, not centred
    areas = split.mask.sum(axis=(1, 2))
    assert areas.max() > 3 * areas.min()
    colours = np.stack([img[m].mean(0) for img, m in zip(split.image, split.mask)])
    assert colours.std(axis=0).min() > 30  # object colour tells nothing by itself


def test_background_is_cluttered(split):
    """Outside the object the image is far from flat: texture and object-like clutter."""
    outside = [img[~m].astype(float) for img, m in zip(split.image, split.mask)]
    assert min(o.std(axis=0).mean() for o in outside) > 10
    # Clutter pieces make strong edges away from the object too.
    grad = np.abs(np.diff(split.image.astype(float), axis=2)).sum(-1)
    away = ~(split.mask[:, :, 1:] | split.mask[:, :, :-1])  # pixel pairs off the object
    assert np.mean([(g[a] > 120).mean() for g, a in zip(grad, away)]) > 0.005


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_classes=1), "num_classes"),
        (dict(num_classes=len(co.SHAPES) + 1), "num_classes"),
        (dict(object_size=(40, 20)), "object_size"),
        (dict(image_size=8), "image_size"),
        (dict(num_clutter=(3, 1)), "num_clutter"),
        (dict(fragment_fraction=2.0), "fragment_fraction"),
    ],
)
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.ClutterConfig(**kwargs)


def test_bad_split_raises():
    with pytest.raises(ValueError, match="split"):
        co.example_rng(0, "dev", 0)


def test_tfds_builder_writes_array_record_and_reads_back_without_tensorflow(tmp_path):
    config = co.ClutteredObjectsConfig(
        name="tiny", clutter=SMALL, split_sizes=(("train", 12), ("test", 5)), seed=3
    )
    builder = co.ClutteredObjects(data_dir=str(tmp_path), config=config)
    builder.download_and_prepare()
    assert "tensorflow" not in sys.modules
    assert builder.info.splits["train"].num_examples == 12
    assert builder.info.features["label"].names == list(co.SHAPES[:4])
    files = sorted(p.name for p in (tmp_path / "cluttered_objects" / "tiny" / str(co.ClutteredObjects.VERSION)).iterdir())
    assert any(".array_record" in f for f in files)

    test = builder.as_data_source(split="test")
    assert len(test) == 5
    example = test[0]
    assert example["image"].shape == (32, 32, 3) and example["image"].dtype == np.uint8
    assert example["mask"].shape == (32, 32) and example["mask"].dtype == bool
    assert example["box"].shape == (4,)
    # The stored examples are exactly the rendered ones, every array to the bit (TFDS
    # shuffles their order, so each is matched by its image's bytes).
    rendered = co.render_split("test", 5, SMALL, seed=3)
    by_image = {rendered.image[i].tobytes(): i for i in range(5)}
    assert sorted(by_image[test[i]["image"].tobytes()] for i in range(5)) == list(range(5))
    for i in range(5):
        j = by_image[test[i]["image"].tobytes()]
        assert int(test[i]["label"]) == rendered.label[j]
        np.testing.assert_array_equal(test[i]["mask"], rendered.mask[j])
        np.testing.assert_array_equal(test[i]["box"], rendered.box[j])

    # Registered by name, so tfds.data_source and the training pipeline can open it.
    same = tfds.data_source("cluttered_objects/tiny", split="train", data_dir=str(tmp_path))
    assert len(same) == 12


def test_builder_renders_the_same_data_with_worker_processes(tmp_path):
    config = co.ClutteredObjectsConfig(name="tiny2", clutter=SMALL, split_sizes=(("test", 6),), seed=5)
    sources = []
    for workers in (1, 2):
        builder = co.ClutteredObjects(data_dir=str(tmp_path / str(workers)), config=config, num_workers=workers)
        builder.download_and_prepare()
        sources.append(builder.as_data_source(split="test"))
    for i in range(6):
        for key in ("image", "label", "mask", "box"):
            np.testing.assert_array_equal(sources[0][i][key], sources[1][i][key])
    with pytest.raises(ValueError, match="num_workers"):
        co.ClutteredObjects(data_dir=str(tmp_path), config=config, num_workers=0)


def test_a_render_worker_imports_neither_jax_nor_tfds():
    # The builder's worker processes start by importing what a task needs: NumPy only, so a
    # worker starts in a fraction of a second instead of the seconds JAX and TFDS take.
    code = (
        "import pickle, sys\n"
        "from saliency_jax.data.render import render_job\n"
        "example = render_job(pickle.loads(sys.stdin.buffer.read()))\n"
        "print(sorted(m for m in ('jax', 'tensorflow_datasets') if m in sys.modules), example['image'].sum())\n"
    )
    job = (3, "test", 4, SMALL)
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(job), capture_output=True, check=True)
    expected = co.render_example(co.example_rng(3, "test", 4), SMALL).image.sum()
    assert done.stdout.decode().split() == ["[]", str(expected)]


def test_example_rng_checks_its_numbers_and_takes_numpy_integers():
    np.testing.assert_array_equal(co.render_example(co.example_rng(np.int64(2), "train", np.uint8(5))).image,
                                  co.render_example(co.example_rng(2, "train", 5)).image)
    for bad in (-1, True, 1.0, "1"):
        with pytest.raises(ValueError, match="index must be an integer >= 0"):
            co.example_rng(0, "train", bad)
        with pytest.raises(ValueError, match="seed must be an integer >= 0"):
            co.example_rng(bad, "train", 0)


def test_the_package_names_its_datasets_on_first_use():
    import saliency_jax.data as data

    assert data.ClutteredObjects is co.ClutteredObjects and data.render_example is co.render_example
    with pytest.raises(AttributeError, match="no attribute 'Missing'"):
        data.Missing  # noqa: B018


# ---------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    "kwargs, match",
    [
        # Each of these used to be accepted; the first hung render_split (10**12 clutter items).
        (dict(num_clutter=(0, 10**12)), r"num_clutter must satisfy 0 <= min <= max <= 64, got \(0, 10+\).*"
                                        r"at most 1024 items.*cover the image at most 16 times"),
        (dict(image_size=1024, object_size=(20, 36), num_clutter=(0, 1025)), r"num_clutter .* <= 1024, got"),
        (dict(object_size=(36, 64), clutter_size=(4.0, 4.0), num_clutter=(0, 17)), r"num_clutter .* <= 16, got"),
        (dict(image_size=10**6), r"image_size must be an integer >= 16 and <= 1024, got 1000000"),
        (dict(supersample=10**4), r"supersample must be an integer >= 1 and <= 8, got 10000"),
        (dict(image_size=512, object_size=(20, 36), supersample=8), r"supersample must be <= 4 for image_size 512"),
        (dict(clutter_size=(0.3, 1e300)), r"clutter_size must satisfy 0 < min <= max <= 4.0, got \(0.3, 1e\+300\)"),
        (dict(clutter_size=(1e-300, 0.5)), r"clutter_size min must be >= 1 / object_size max = 0.02778"),
        (dict(texture_contrast=1e300), r"texture_contrast must be a finite number >= 0.0 and <= 255.0, got 1e\+300"),
    ],
)
def test_clutter_config_bounds_what_one_image_costs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.ClutterConfig(**kwargs)


def test_the_most_clutter_allowed_renders_and_grows_with_the_image():
    config = co.ClutterConfig()
    most = config.max_clutter()
    assert most == 64 and config.num_clutter[1] <= most  # the defaults are well inside
    example = co.render_example(co.example_rng(0, "train", 0),
                                co.ClutterConfig(num_clutter=(most, most)))  # ~20 ms, not a hang
    assert example.mask.any()
    assert co.ClutterConfig(image_size=128).max_clutter() > most  # the bound follows the image area...
    assert co.ClutterConfig(clutter_size=(0.3, 1.0)).max_clutter() < most  # ...and the clutter's size


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_clutter=(2.5, 3.5)), r"num_clutter entries must be an integer >= 0, got 2.5"),
        (dict(num_clutter=(1, 3.0)), r"num_clutter entries must be an integer >= 0, got 3.0"),
        (dict(num_clutter=(True, 3)), r"num_clutter entries must be an integer >= 0, got True"),
        (dict(object_size=(10.5, 20)), r"object_size entries must be an integer >= 4, got 10.5"),
        (dict(object_size=(False, 20)), r"object_size entries must be an integer >= 4, got False"),
        (dict(num_classes=True), r"num_classes must be an integer"),
        (dict(supersample=np.True_), r"supersample must be an integer"),
    ],
)
def test_clutter_config_wants_integers_for_counts_and_pixel_sizes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.ClutterConfig(**kwargs)


def test_clutter_config_takes_numpy_integers_and_stores_plain_values():
    config = co.ClutterConfig(image_size=np.int64(32), num_classes=np.int32(4), object_size=[np.int16(10), 16],
                              num_clutter=(np.uint8(2), np.int64(5)), texture_contrast=40, supersample=np.int8(2))
    assert config == SMALL and repr(config) == repr(SMALL)  # a dataset's recipe digest reads the repr
    assert type(config.object_size) is tuple and all(type(v) is int for v in config.object_size + config.num_clutter)
    np.testing.assert_array_equal(co.render_example(co.example_rng(1, "test", 2), config).image,
                                  co.render_example(co.example_rng(1, "test", 2), SMALL).image)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fragment_fraction="0.5"), r"fragment_fraction must be a finite number >= 0.0 and <= 1.0, got '0.5'"),
        (dict(fragment_fraction=None), r"fragment_fraction must be a finite number"),
        (dict(texture_contrast="40"), r"texture_contrast must be a finite number"),
        (dict(texture_contrast=10**400), r"texture_contrast must be a finite number"),  # no OverflowError
        (dict(clutter_size=("a", 1.0)), r"clutter_size entries must be a finite number, got 'a'"),
        (dict(clutter_size=(0.3, float("nan"))), r"clutter_size entries must be a finite number, got nan"),
        (dict(num_clutter=("2", 5)), r"num_clutter entries must be a finite number, got '2'"),
        (dict(num_clutter=(2, None)), r"num_clutter entries must be a finite number, got None"),
    ],
)
def test_clutter_config_names_a_field_that_is_not_a_number(kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.ClutterConfig(**kwargs)


@pytest.fixture
def nothing_drawn(monkeypatch):
    """Makes drawing an example fail the test: a refusal must come before any work (the old code
    rendered, and for a huge ``num_examples`` never returned)."""
    from saliency_jax.data import render

    def draw(*args, **kwargs):
        raise AssertionError("an example was drawn before the arguments were checked")

    monkeypatch.setattr(render, "render_example", draw)


@pytest.mark.parametrize("config", [{}, {"image_size": 32}, "default", co.ClutteredObjectsConfig(name="c")])
def test_render_split_refuses_a_config_that_is_not_a_clutter_config(config):
    with pytest.raises(ValueError, match=r"config must be a ClutterConfig or None, got "):
        co.render_split("train", 1, config=config)
    with pytest.raises(ValueError, match=r"config must be a ClutterConfig or None, got "):
        co.render_example(co.example_rng(0, "train", 0), config)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        (("train", 10**12), {}, r"num_examples must be an integer >= 1 and <= 65536 for image_size 64 .*in memory"),
        (("train", 257, co.ClutterConfig(image_size=1024, object_size=(20, 36))), {}, r"<= 256 for image_size 1024"),
        (("train", 2.0), {}, r"num_examples must be an integer >= 1, got 2.0"),
        (("train", True), {}, r"num_examples must be an integer >= 1, got True"),
        ((["train"], 1), {}, r"split must be one of \('train', 'validation', 'test'\), got \['train'\]"),
        (({"train"}, 1), {}, r"split must be one of"),
        (("Train", 1), {}, r"split must be one of"),
        (("train", 1), dict(seed=-1), r"seed must be an integer >= 0, got -1"),
        (("train", 1), dict(seed=1.5), r"seed must be an integer >= 0, got 1.5"),
    ],
)
def test_render_split_checks_its_arguments_before_drawing(nothing_drawn, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.render_split(*args, **kwargs)


def test_render_split_fills_its_arrays_as_before():
    split = co.render_split("validation", 3, SMALL, seed=4)
    for i in range(3):
        example = co.render_example(co.example_rng(4, "validation", i), SMALL)
        np.testing.assert_array_equal(split.image[i], example.image)
        np.testing.assert_array_equal(split.mask[i], example.mask)
        np.testing.assert_array_equal(split.box[i], example.box)
        assert split.label[i] == example.label
    assert split.label.dtype == np.int32 and split.box.dtype == np.int32


def test_render_example_and_example_rng_name_a_wrong_argument():
    with pytest.raises(ValueError, match=r"rng must be a numpy.random.Generator .*got int"):
        co.render_example(0)
    with pytest.raises(ValueError, match=r"split must be one of .*got \['test'\]"):
        co.example_rng(0, ["test"], 0)  # not a TypeError about hashing


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(clutter={}), r"clutter must be a ClutterConfig, got dict"),
        (dict(split_sizes=(("dev", 3),)), r"split_sizes names must be one of \('train', 'validation', 'test'\)"),
        (dict(split_sizes=(("train", 3.0),)), r"split_sizes\['train'\] must be an integer >= 1, got 3.0"),
        (dict(split_sizes=(("train", 0),)), r"split_sizes\['train'\] must be an integer >= 1, got 0"),
        (dict(split_sizes=(("train", 3), ("train", 4))), r"split_sizes must name each split once"),
        (dict(split_sizes=("train", 3)), r"split_sizes must be a non-empty sequence of \(split, num_examples\)"),
        (dict(seed=-2), r"seed must be an integer >= 0, got -2"),
    ],
)
def test_builder_config_checks_its_fields_when_made(kwargs, match):
    with pytest.raises(ValueError, match=match):
        co.ClutteredObjectsConfig(name="checked", **kwargs)
