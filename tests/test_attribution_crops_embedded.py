"""Crop Grad-CAM on the embedded EfficientNet-Lite0: in a two-object scene where the whole-image
Grad-CAM of each class peaks on the wrong object, the crop map of each class points at its own."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import attribution as A
from saliency_jax.evaluation import benchmark, metrics


@pytest.mark.slow
def test_crop_gradcam_points_at_each_object_where_gradcam_does_not(efficientnet):
    # The fourth two-object scene of the attribution benchmark's seed 2: an espresso and a pagoda.
    scenes = benchmark.make_scenes(4, objects_per_scene=(2, 2), size=224, seed=2)
    targets = [6, 7]
    assert [scenes.objects[t] for t in targets] == ["espresso", "pagoda"]
    image = jnp.asarray(scenes.images[targets[0]][None], jnp.float32)
    np.testing.assert_array_equal(scenes.images[targets[0]], scenes.images[targets[1]])  # one scene
    classes = jnp.asarray([[int(scenes.classes[t]) for t in targets]], jnp.int32)
    masks = scenes.masks[targets]
    layer = efficientnet.feature_layer

    crops = jax.jit(functools.partial(A.for_classes(A.crop_gradcam), efficientnet.logits_fn, layer=layer,
                                      batch_size=32))(efficientnet.params, image, classes)[0]
    cams = jax.jit(functools.partial(A.for_classes(A.gradcam), efficientnet.logits_fn, layer=layer))(
        efficientnet.params, image, classes)[0]
    cams = A.attribution_map(cams, size=224)
    assert crops.shape == (2, 224, 224) and float(crops.min()) >= 0.0 and float(crops.max()) <= 1.0

    crop_hits = metrics.pointing_hits(np.asarray(crops), masks=masks, tolerance=15.0)
    cam_hits = metrics.pointing_hits(np.asarray(cams), masks=masks, tolerance=15.0)
    assert list(crop_hits) == [True, True]
    assert not any(cam_hits)
    # Each class's map is brightest on its own object, not on the other one.
    for k in range(2):
        own, other = masks[k].astype(bool), masks[1 - k].astype(bool) & ~masks[k].astype(bool)
        assert float(np.asarray(crops[k])[own].max()) > 1.2 * float(np.asarray(crops[k])[other].max())
