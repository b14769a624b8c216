"""The §3.2 pipeline end to end: known-answer segmentation, degenerate input, the process pool."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from saliency_jax.localisation import GraphCutConfig, localise, localise_classes, localise_many


def _scene(seed=0, size=64, centre=(30, 36), radii=(16, 12), floor=1.0):
    """A red ellipse on a green textured background, and a speckled map peaking on part of it.

    ``floor`` lifts the whole object's saliency above the background's; at 0 the
    lower half of the object is as (un)salient as the background.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    obj = ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 < 1
    image = rng.normal(0, 18, (size, size, 3)) + np.array([60, 150, 70])
    image[obj] = rng.normal(0, 18, (obj.sum(), 3)) + np.array([210, 50, 40])
    image = np.clip(image, 0, 255).astype(np.uint8)
    # The map peaks on the upper half of the object, with speckle everywhere.
    blob = np.exp(-((yy - centre[0] + radii[0] / 2) ** 2 + (xx - centre[1]) ** 2) / (2 * (radii[1] / 2) ** 2))
    saliency = np.abs(rng.normal(size=(size, size))) * (0.2 + floor * obj + 3 * blob * obj)
    return image, saliency, obj


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_segmentation_recovers_a_known_object():
    image, saliency, obj = _scene()
    found = localise(image, saliency)
    assert _iou(found.mask, obj) > 0.85
    # The seeds alone cover a third of it: GraphCut grows them along the colour.
    assert (found.seeds.foreground & obj).sum() < 0.4 * obj.sum()
    ys, xs = np.nonzero(obj)
    box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    assert np.abs(found.box - box).max() <= 2
    assert found.mask.dtype == bool and found.mask.shape == obj.shape


def _empty_cut_scene(size=40):
    """Grey, with red specks among the least salient pixels and a random map: the foreground
    model (fitted on grey seeds only) wins each grey pixel by 0.67 nats, less than the red
    specks' edges cost, so the cut keeps no foreground."""
    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), 100, np.uint8)
    saliency = rng.random((size, size))
    image[(saliency < 0.3) & (rng.random((size, size)) < 0.5)] = [200, 30, 30]
    return image, saliency


def test_an_empty_cut_falls_back_to_the_seeds_and_says_so():
    from saliency_jax import figures
    from saliency_jax.localisation import largest_component, localise_photo, quantile_seeds

    image, saliency = _empty_cut_scene()
    found = localise(image, saliency)
    assert found.from_seeds and not found.segmentation.any()
    np.testing.assert_array_equal(found.mask, largest_component(quantile_seeds(saliency).foreground))
    ys, xs = np.nonzero(found.mask)
    assert found.box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert figures.localisation_titles(found)[3] == figures.SEED_MASK_TITLE
    big = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)  # localise_photo's resized path says so too
    assert localise_photo(big, np.repeat(np.repeat(saliency, 2, axis=0), 2, axis=1),
                          GraphCutConfig(max_side=40)).from_seeds
    image, saliency, _ = _scene()
    found = localise(image, saliency)
    assert not found.from_seeds and found.segmentation.any()
    assert figures.localisation_titles(found) == list(figures.PANEL_TITLES)


def test_seeds_inside_the_object_are_hard_only_when_asked():
    # Half of the object is no more salient than the background, so some of the
    # least salient 30% (background seeds) fall inside it.
    image, saliency, obj = _scene(floor=0.0)
    hard = localise(image, saliency, GraphCutConfig(hard_seeds="both"))
    inside = hard.seeds.background & obj
    assert inside.sum() > 20
    assert not hard.segmentation[inside].any()  # fixed as background, holes in the object
    assert _iou(hard.mask, obj) < 0.8
    soft = localise(image, saliency)  # the paper: they only shape the background colour model
    assert soft.segmentation[inside].mean() > 0.9
    assert _iou(soft.mask, obj) > 0.95
    # Foreground seeds off the object stay foreground only when they are hard.
    hard_fg = localise(image, saliency, GraphCutConfig(hard_seeds="foreground"))
    outside = hard_fg.seeds.foreground & ~obj
    assert outside.any() and hard_fg.segmentation[outside].all()
    assert not soft.segmentation[outside].all()


def test_result_is_the_largest_component_of_the_segmentation():
    image, saliency, obj = _scene(seed=1)
    # A second red blob elsewhere, smaller, with a bit of saliency.
    image[2:8, 2:8] = [215, 45, 40]
    saliency[2:8, 2:8] += 2.0
    found = localise(image, saliency)
    assert found.segmentation[2:8, 2:8].all()
    assert not found.mask[2:8, 2:8].any()
    assert (found.mask <= found.segmentation).all()
    x0, y0, x1, y1 = found.box
    assert found.mask[y0:y1, x0:x1].sum() == found.mask.sum()
    assert found.mask[y0, x0:x1].any() and found.mask[y1 - 1, x0:x1].any()


def test_same_inputs_give_the_same_result():
    image, saliency, _ = _scene(seed=2)
    a, b = localise(image, saliency), localise(image, saliency)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.box, b.box)
    assert a.timings.total > 0 and all(t >= 0 for t in a.timings)


def test_grey_and_float_images_are_accepted():
    image, saliency, obj = _scene(seed=3)
    grey = image.mean(axis=-1)
    assert localise(grey, saliency).mask.shape == obj.shape
    np.testing.assert_array_equal(localise(image.astype(np.float32), saliency).mask, localise(image, saliency).mask)


def test_too_few_seed_pixels_for_the_components_fall_back():
    # 4x5 image: the 95% quantile leaves one foreground seed, fewer than 5 components.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (4, 5, 3)).astype(np.uint8)
    saliency = np.arange(20, dtype=float).reshape(4, 5)
    found = localise(image, saliency)
    assert found.seeds.foreground.sum() == 1
    assert found.mask[3, 4] and found.box.tolist()[2:] == [5, 4]


def test_a_two_pixel_image_works():
    found = localise(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8), np.array([[1.0, 0.0]]))
    np.testing.assert_array_equal(found.mask, [[True, False]])
    np.testing.assert_array_equal(found.box, [0, 0, 1, 1])


@pytest.mark.parametrize(
    "image, saliency, message",
    [
        (np.zeros((1, 1, 3), np.uint8), np.zeros((1, 1)), "image must have at least 2 pixels"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9)), r"saliency must have the image's height and width \(8, 8\)"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), "saliency is constant"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), np.nan), "saliency contains 64 NaN"),
        (np.full((8, 8, 3), np.nan), np.eye(8), "image contains NaN"),
        (np.full((8, 8, 3), 300.0), np.eye(8), "image must be on the 0-255 scale"),
        (np.zeros((8, 8, 4), np.uint8), np.eye(8), r"image must have shape \[H, W, 3\]"),
        (np.zeros((2, 8, 8, 3), np.uint8), np.eye(8), r"image must have shape \[H, W, 3\]"),
        (np.zeros((8, 8, 3), bool), np.eye(8), "image must hold numbers"),
        (np.zeros((8, 8, 3), np.uint8), np.eye(8)[None], r"saliency must have shape \[H, W\]"),
    ],
    ids=["1x1", "shape-mismatch", "all-zero-map", "nan-map", "nan-image", "range", "rgba", "batch", "bool",
         "batched-map"],
)
def test_bad_input_raises_a_clear_error_naming_the_argument(image, saliency, message):
    with pytest.raises(ValueError, match=message):
        localise(image, saliency)


def test_config_must_be_a_graphcut_config():
    image, saliency, _ = _scene()
    with pytest.raises(ValueError, match="config must be a GraphCutConfig"):
        localise(image, saliency, {"pairwise_weight": 1})


def test_settings_change_the_result_as_documented():
    image, saliency, obj = _scene(seed=4)
    # Without pairwise terms the colour likelihoods alone decide: speckled, but still the object.
    loose = localise(image, saliency, GraphCutConfig(pairwise_weight=0.0))
    strict = localise(image, saliency)
    assert _iou(loose.mask, obj) > 0.5 and _iou(strict.mask, obj) > 0.85
    four = localise(image, saliency, GraphCutConfig(neighbourhood=4, connectivity=1))
    assert _iou(four.mask, obj) > 0.85
    few = localise(image, saliency, GraphCutConfig(foreground_quantile=0.99))
    assert few.seeds.foreground.sum() < strict.seeds.foreground.sum()


def test_one_box_per_class():
    image, saliency, obj = _scene(seed=5)
    flipped = saliency[::-1, ::-1].copy()
    found = localise_classes(image, np.stack([saliency, flipped]), [7, 3])
    np.testing.assert_array_equal(found.classes, [7, 3])
    assert found.boxes.shape == (2, 4)
    np.testing.assert_array_equal(found.boxes[0], localise(image, saliency).box)
    with pytest.raises(ValueError, match="classes must name one class per map"):
        localise_classes(image, np.stack([saliency, flipped]), [1])
    with pytest.raises(ValueError, match=r"saliency_maps must have shape \[N, H, W\]"):
        localise_classes(image, saliency, [1])


def test_many_images_in_order_with_the_index_in_errors():
    scenes = [_scene(seed=s, size=32, centre=(14, 16), radii=(8, 6)) for s in range(3)]
    images = [s[0] for s in scenes]
    maps = [s[1] for s in scenes]
    serial = localise_many(images, maps, processes=1)
    for (image, saliency, _), result in zip(scenes, serial):
        np.testing.assert_array_equal(result.mask, localise(image, saliency).mask)
    maps[1] = np.zeros_like(maps[1])
    with pytest.raises(ValueError, match="image 1: saliency is constant"):
        localise_many(images, maps, processes=1)
    with pytest.raises(ValueError, match="same length"):
        localise_many(images, maps[:2])
    with pytest.raises(ValueError, match="processes must be None or an integer >= 1"):
        localise_many(images, maps, processes=0)


def test_process_pool_gives_the_serial_result():
    scenes = [_scene(seed=s, size=40, centre=(18, 20), radii=(10, 8)) for s in range(4)]
    images = np.stack([s[0] for s in scenes])
    maps = np.stack([s[1] for s in scenes])
    serial = localise_many(images, maps, processes=1)
    pooled = localise_many(images, maps, processes=2, chunksize=1)
    assert len(pooled) == 4
    for a, b in zip(serial, pooled):
        np.testing.assert_array_equal(a.mask, b.mask)
        np.testing.assert_array_equal(a.segmentation, b.segmentation)
        np.testing.assert_array_equal(a.box, b.box)


def test_the_localisation_package_does_not_import_jax():
    # Load the subpackage under a bare parent package, so whatever the top-level
    # __init__ imports does not count: only the localisation code itself.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = textwrap.dedent(
        f"""
        import sys, types
        package = types.ModuleType("saliency_jax")
        package.__path__ = [{os.path.join(root, "saliency_jax")!r}]
        sys.modules["saliency_jax"] = package
        import saliency_jax.localisation
        import numpy as np
        image = np.zeros((6, 6, 3), np.uint8)
        image[2:4, 2:4] = 255
        saliency_jax.localisation.localise(image, np.arange(36.0).reshape(6, 6))
        bad = sorted(m for m in sys.modules if m == "jax" or m.startswith(("jax.", "jaxlib", "flax")))
        print("JAX_MODULES", bad)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "JAX_MODULES []" in result.stdout
