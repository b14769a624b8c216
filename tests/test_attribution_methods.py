"""Known answers of each attribution method: closed forms on the linear model, completeness,
Grad-CAM computed by hand, occlusion's geometry, RISE's estimator, the noise wrappers'
statistics, the flip-shift frame, the blur against scipy, and bounded memory."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

import saliency_jax as sj
from saliency_jax import attribution as A
from saliency_jax.types import Classifier


def _images(key, shape=(3, 6, 5, 3)):
    return jax.random.uniform(key, shape, minval=0.0, maxval=255.0)


def _weights_as_images(params, classes, shape):
    """The linear model's gradient of each class as an image: ``W[:, c]`` reshaped."""
    return np.asarray(params["w"]).T[np.asarray(classes)].reshape((len(classes),) + shape[1:])


# --- gradient, gradient x input, the reducer, the companion -------------------------------


def test_gradient_and_gradient_x_input_on_the_linear_model(linear_model, getkey):
    logits_fn, params = linear_model
    images = _images(getkey(), (5, 6, 5, 3))
    classes = jnp.array([0, 3, 1, 2, 2])
    w = _weights_as_images(params, classes, images.shape)
    # batch_size 2 < 5 images: the chunked path
    np.testing.assert_allclose(A.gradient(logits_fn, params, images, classes, batch_size=2), w, rtol=1e-6)
    np.testing.assert_allclose(A.gradient_x_input(logits_fn, params, images, classes), images * w, rtol=1e-5)


def test_gradient_is_input_gradients_under_every_rule(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    for rule in ("gradient", "deconvnet", "guided"):
        expected = sj.input_gradients(logits_fn, params, images, 1, rule=rule).gradients
        np.testing.assert_allclose(A.gradient(logits_fn, params, images, 1, rule=rule), expected, rtol=1e-6)
    assert not np.allclose(
        A.gradient(logits_fn, params, images, 1, rule="guided"), A.gradient(logits_fn, params, images, 1)
    )


def test_attribution_map_is_the_papers_map():
    attributions = jax.random.normal(jax.random.key(0), (2, 4, 5, 3))
    np.testing.assert_array_equal(A.attribution_map(attributions), sj.saliency_from_gradients(attributions))
    np.testing.assert_allclose(A.attribution_map(attributions, reduction="sum"), attributions.sum(-1), rtol=1e-6)
    np.testing.assert_allclose(
        A.attribution_map(attributions, reduction="l2"), np.linalg.norm(attributions, axis=-1), rtol=1e-6
    )
    with pytest.raises(ValueError, match="reduction"):
        A.attribution_map(attributions, reduction="mean")


def test_attribution_map_resizes_layer_maps_with_half_pixel_centres():
    cam = jnp.array([[[0.0, 1.0], [0.0, 1.0]]])
    # Output pixel centres at input coordinates -0.25, 0.25, 0.75, 1.25 (clamped at the edges).
    expected = np.array([0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(A.attribution_map(cam, size=4)[0], np.tile(expected, (4, 1)), atol=1e-6)


def test_companion_equals_class_gradients(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    image = _images(getkey(), (1, 8, 8, 3))
    classes = jnp.array([4, 0, 2])
    together = A.for_classes(A.gradient)(logits_fn, params, image, classes)
    expected = sj.class_gradients(logits_fn, params, image, classes)[0]
    np.testing.assert_allclose(together[0], expected, rtol=1e-5, atol=1e-6 * float(np.abs(expected).max()))


# --- Integrated Gradients ------------------------------------------------------------------


def test_trapezoid_weights():
    alphas, weights = A.integrated.trapezoid_weights(5)
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    assert weights.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("steps", [2, 7])
def test_ig_on_the_linear_model_is_exact(linear_model, getkey, steps):
    logits_fn, params = linear_model
    images = _images(getkey())
    baseline = _images(getkey(), images.shape[1:])
    classes = jnp.array([2, 0, 3])
    ig = A.integrated_gradients(logits_fn, params, images, classes, baseline=baseline, steps=steps, batch_size=4)
    expected = (np.asarray(images) - np.asarray(baseline)) * _weights_as_images(params, classes, images.shape)
    np.testing.assert_allclose(ig, expected, rtol=1e-4, atol=1e-3)


def test_ig_default_baseline_is_black(linear_model, getkey):
    logits_fn, params = linear_model
    images = _images(getkey())
    np.testing.assert_allclose(
        A.integrated_gradients(logits_fn, params, images, 1, steps=3),
        A.integrated_gradients(logits_fn, params, images, 1, steps=3, baseline=jnp.zeros(images.shape)),
    )


def test_ig_completeness_improves_with_steps(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    baseline = jnp.full(images.shape[1:], 40.0)
    classes = jnp.array([3, 1])
    scores = sj.select_scores(logits_fn(params, images), classes)
    base_scores = sj.select_scores(logits_fn(params, jnp.broadcast_to(baseline, images.shape)), classes)
    target = np.asarray(scores - base_scores)
    errors = []
    for steps in (3, 300):
        ig = A.integrated_gradients(logits_fn, params, images, classes, baseline=baseline, steps=steps, batch_size=128)
        errors.append(np.abs(np.asarray(ig.sum(axis=(1, 2, 3))) - target))
    assert (errors[1] < 0.01 * np.abs(target) + 1e-3).all(), (errors, target)
    assert errors[1].sum() < errors[0].sum()


def test_ig_memory_does_not_grow_with_steps(tiny_cnn):
    """The compiled program's scratch memory is the same for 8 and 128 steps at one batch_size."""
    logits_fn, params = tiny_cnn
    images = jnp.zeros((2, 16, 16, 3))

    def temp_bytes(steps, batch_size):
        fn = jax.jit(functools.partial(A.integrated_gradients, logits_fn, steps=steps, batch_size=batch_size))
        return fn.lower(params, images, jnp.array([0, 1])).compile().memory_analysis().temp_size_in_bytes

    few, many = temp_bytes(8, 4), temp_bytes(128, 4)
    assert many <= 1.05 * few + 4096, (few, many)
    # The measure is sensitive: all 256 rows at once need far more.
    assert temp_bytes(128, None) > 4 * few


# --- GradientSHAP ------------------------------------------------------------------------


def test_gradient_shap_on_the_linear_model(linear_model, getkey):
    """A constant gradient: each sample is W_c * (x - its baseline), so one baseline gives IG exactly."""
    logits_fn, params = linear_model
    images = _images(getkey())
    classes = jnp.array([2, 0, 3])
    w = _weights_as_images(params, classes, images.shape)
    baseline = _images(getkey(), images.shape[1:])
    one = A.gradient_shap(logits_fn, params, images, classes, key=getkey(), baselines=baseline, num_samples=5,
                          batch_size=4)
    np.testing.assert_allclose(one, (np.asarray(images) - np.asarray(baseline)) * w, rtol=1e-4, atol=1e-3)
    # Two baselines: the mean of the baselines drawn, which with many draws is near their mean.
    pair = jnp.stack([jnp.zeros(images.shape[1:]), jnp.full(images.shape[1:], 200.0)])
    many = A.gradient_shap(logits_fn, params, images, classes, key=getkey(), baselines=pair, num_samples=400,
                           batch_size=None)
    # Both baselines are flat, so the result is W_c * (x - m) with m the mean of the values drawn,
    # the same for every image (the draws are shared by the batch).
    x, got = np.asarray(images), np.asarray(many)
    m = float(np.sum(w * (w * x - got)) / np.sum(w * w))
    np.testing.assert_allclose(got, w * (x - m), rtol=1e-4, atol=1e-3 * np.abs(got).max())
    assert 80.0 < m < 120.0  # 400 fair draws of 0 or 200: mean 100, s.d. 5


def test_gradient_shap_draws_are_as_documented(tiny_cnn, getkey):
    """A per-sample loop: baseline index, point and noise from fold_in(key, n), split in three."""
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3)) * jnp.array([1.0, 0.5])[:, None, None, None]
    baselines = _images(getkey(), (3, 8, 8, 3))
    key, samples, scale = getkey(), 4, 0.1
    ours = A.gradient_shap(logits_fn, params, images, jnp.array([1, 4]), key=key, baselines=baselines,
                           num_samples=samples, noise_scale=scale, batch_size=3)
    span = np.asarray(images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    expected = np.zeros(images.shape, np.float32)
    for n in range(samples):
        index_key, point_key, noise_key = jax.random.split(jax.random.fold_in(key, n), 3)
        start = baselines[int(jax.random.randint(index_key, (), 0, 3))]
        point = float(jax.random.uniform(point_key, ()))
        noise = np.asarray(jax.random.normal(noise_key, (8, 8, 3)))
        for b, c in enumerate((1, 4)):
            end = images[b] + scale * span[b] * noise
            score = lambda x, c=c: logits_fn(params, x[None])[0, c]
            expected[b] += np.asarray(jax.grad(score)(start + point * (end - start)) * (end - start)) / samples
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_gradient_shap_tends_to_ig_over_the_baselines(tiny_cnn, getkey):
    """Without noise its expectation is IG averaged over the baselines: completeness to the mean baseline."""
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    classes = jnp.array([3, 1])
    baselines = jnp.stack([jnp.full((8, 8, 3), 40.0), _images(getkey(), (8, 8, 3))])
    ig = sum(A.integrated_gradients(logits_fn, params, images, classes, baseline=b, steps=200, batch_size=None)
             for b in baselines) / 2
    gs = A.gradient_shap(logits_fn, params, images, classes, key=getkey(), baselines=baselines, num_samples=4000,
                         batch_size=None)
    for got, want in zip(np.asarray(gs), np.asarray(ig)):
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.95
    scores = sj.select_scores(logits_fn(params, images), classes)
    base = np.mean([sj.select_scores(logits_fn(params, jnp.broadcast_to(b, images.shape)), classes)
                    for b in baselines], axis=0)
    target = np.asarray(scores) - base
    np.testing.assert_allclose(np.asarray(gs.sum(axis=(1, 2, 3))), target, rtol=0.1, atol=0.02 * np.abs(target).max())


def test_gradient_shap_default_baseline_is_black(linear_model, getkey):
    logits_fn, params = linear_model
    images, key = _images(getkey()), getkey()
    np.testing.assert_allclose(
        A.gradient_shap(logits_fn, params, images, 1, key=key, num_samples=3),
        A.gradient_shap(logits_fn, params, images, 1, key=key, num_samples=3, baselines=0.0),
    )


# --- Blur IG ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_gaussian_blur_equals_scipy(mode, getkey):
    images = _images(getkey(), (3, 9, 7, 3))
    sigmas = np.array([0.0, 0.7, 6.0])  # the last reaches past the image's sides
    blurred = A.gaussian_blur(images, jnp.asarray(sigmas), mode=mode, max_sigma=6.0)
    for image, sigma, ours in zip(np.asarray(images, np.float64), sigmas, np.asarray(blurred)):
        expected = ndimage.gaussian_filter(image, [sigma, sigma, 0], mode=mode)
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-3)


def test_blur_ig_completeness(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    classes = jnp.array([0, 2])
    max_sigma = 4.0
    attributions = A.blur_integrated_gradients(
        logits_fn, params, images, classes, steps=200, max_sigma=max_sigma, grad_step=0.005, batch_size=200
    )
    blurred = A.gaussian_blur(images, max_sigma)
    target = sj.select_scores(logits_fn(params, images), classes) - sj.select_scores(logits_fn(params, blurred), classes)
    # Within 0.5% of the scores' scale (a Riemann sum with a finite-difference path velocity).
    np.testing.assert_allclose(attributions.sum(axis=(1, 2, 3)), target, rtol=0.01, atol=0.005 * np.abs(target).max())


def test_blur_ig_on_the_linear_model(linear_model, getkey):
    """Linear model: BlurIG = -sum_i ds_i * dx/ds(s_i) * W, computed here with scipy's blur."""
    logits_fn, params = linear_model
    images = _images(getkey(), (1, 6, 5, 3))
    steps, max_sigma, grad_step = 5, 2.0, 0.01
    w = _weights_as_images(params, [1], images.shape)[0]
    image = np.asarray(images[0], np.float64)
    sigmas = np.arange(steps + 1) * max_sigma / steps

    def blur(s):
        return ndimage.gaussian_filter(image, [s, s, 0], mode="constant") if s > 0 else image

    expected = sum(
        -(sigmas[i + 1] - sigmas[i]) * (blur(sigmas[i] + grad_step) - blur(sigmas[i])) / grad_step * w
        for i in range(steps)
    )
    ours = A.blur_integrated_gradients(
        logits_fn, params, images, 1, steps=steps, max_sigma=max_sigma, grad_step=grad_step
    )
    np.testing.assert_allclose(ours[0], expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())


# --- Grad-CAM ---------------------------------------------------------------------------


class Identity(nn.Module):
    @nn.compact
    def __call__(self, x):
        return x


class PoolNet(nn.Module):
    """``logits = mean_ij(A) @ V`` with ``A`` the image itself (the layer ``features``)."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        features = Identity(name="features")(x)
        v = self.param("v", nn.initializers.normal(1.0), (x.shape[-1], 4))
        return jnp.mean(features, axis=(1, 2)) @ v


def _pool_net(getkey):
    """PoolNet on three 4x5 images: ``(logits_fn, params, images, classes, V, images as float64)``."""
    module = PoolNet()
    images = jax.random.normal(getkey(), (3, 4, 5, 3))
    params = module.init(getkey(), images)
    classes = np.array([0, 3, 1])
    return (functools.partial(module.apply, train=False), params, images, classes,
            np.asarray(params["params"]["v"]), np.asarray(images, np.float64))


def test_gradcam_by_hand(getkey):
    """dS_c/dA_kij = V[k, c] / (h w), so Grad-CAM = ReLU(sum_k V[k, c] A_k / (h w))."""
    logits_fn, params, images, classes, v, a = _pool_net(getkey)
    cam = A.gradcam(logits_fn, params, images, classes, layer="features")
    alpha = v[:, classes].T / 20.0  # [B, k]
    expected = np.maximum(np.einsum("bhwk,bk->bhw", a, alpha), 0)
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)
    assert (expected == 0).any() and (expected > 0).any()  # the ReLU matters here

    # Grad-CAM++ (closed form with the constant gradient g_k = V[k, c] / (h w)):
    # a_k = g^2 / (2 g^2 + sum_ij A_k g^3), weight_k = sum_ij a_k ReLU(g_k).
    plus = A.gradcam_plus_plus(logits_fn, params, images, classes, layer="features")
    g = alpha[:, None, None, :]
    sums = a.sum(axis=(1, 2), keepdims=True)
    a_k = g**2 / (2 * g**2 + sums * g**3)
    weights = (a_k * np.maximum(g, 0) * np.ones_like(a)).sum(axis=(1, 2))
    expected_plus = np.maximum(np.einsum("bhwk,bk->bhw", a, weights), 0)
    np.testing.assert_allclose(plus, expected_plus, rtol=1e-4, atol=1e-6)


def test_crop_gradcam_of_the_whole_image_by_hand(getkey):
    """One crop, the image itself: Grad-CAM divided by its maximum, times the class's softmax probability."""
    logits_fn, params, images, classes, v, a = _pool_net(getkey)
    cam = np.maximum(np.einsum("bhwk,bk->bhw", a, v[:, classes].T / 20.0), 0)
    logits = a.mean(axis=(1, 2)) @ v
    probability = np.exp(logits - logits.max(1, keepdims=True))
    probability = probability[np.arange(3), classes] / probability.sum(1)
    expected = cam / cam.max(axis=(1, 2), keepdims=True) * probability[:, None, None]
    ours = A.crop_gradcam(logits_fn, params, images, classes, layer="features", grid=((1.0, 1),))
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)

    # More crops can only raise a pixel (the maximum over the crops covering it).
    more = A.crop_gradcam(logits_fn, params, images, classes, layer="features", grid=((0.5, 3), (1.0, 1)))
    assert more.shape == (3, 4, 5)
    assert bool((more >= ours - 1e-6).all()) and float((more - ours).max()) > 1e-3


class GuidedNet(nn.Module):
    """conv1 - ReLU - ``features`` (a stride-2 convolution) - ReLU - mean - fc, on the library's rectifier."""

    @nn.compact
    def __call__(self, x):
        x = sj.relu(nn.Conv(4, (3, 3), padding="SAME", name="conv1")(x))
        x = sj.relu(nn.Conv(5, (2, 2), strides=(2, 2), name="features")(x))
        return nn.Dense(4, name="fc")(jnp.mean(x, axis=(1, 2)))


@jax.custom_vjp
def _guided_relu(x):
    return jnp.maximum(x, 0.0)


_guided_relu.defvjp(lambda x: (jnp.maximum(x, 0.0), x), lambda x, g: (g * (x > 0) * (g > 0),))


def _guided_gradcam_by_hand(params, images, classes):
    """GuidedNet written out: (the guided gradient [B, 8, 8, 3], Grad-CAM at ``features`` [B, 4, 4])."""
    p = params["params"]

    def conv(x, layer, stride):
        out = jax.lax.conv_general_dilated(x, p[layer]["kernel"], (stride, stride), "SAME",
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return out + p[layer]["bias"][None, None, None, :]

    def head(a):  # [B, 4, 4, 5] features -> logits, with the plain ReLU
        return jnp.mean(jnp.maximum(a, 0.0), axis=(1, 2)) @ p["fc"]["kernel"] + p["fc"]["bias"][None, :]

    def guided_score(x):  # the same network with the guided ReLU everywhere
        a = conv(_guided_relu(conv(x, "conv1", 1)), "features", 2)
        logits = jnp.mean(_guided_relu(a), axis=(1, 2)) @ p["fc"]["kernel"] + p["fc"]["bias"][None, :]
        return jnp.sum(logits[jnp.arange(len(classes)), classes])

    guided = jax.grad(guided_score)(images)
    a = conv(jnp.maximum(conv(images, "conv1", 1), 0.0), "features", 2)
    grads = jax.grad(lambda a: jnp.sum(head(a)[jnp.arange(len(classes)), classes]))(a)
    cam = jnp.maximum(jnp.einsum("bhwk,bk->bhw", a, jnp.mean(grads, axis=(1, 2))), 0.0)
    return np.asarray(guided), np.asarray(cam)


def test_guided_gradcam_by_hand(getkey):
    """The guided gradient (a hand-written guided ReLU) times Grad-CAM at the layer, upsampled to the input."""
    module = GuidedNet()
    images = jax.random.normal(getkey(), (3, 8, 8, 3)) * 50.0
    params = module.init(getkey(), images)
    classes = np.array([0, 3, 1])
    guided, cam = _guided_gradcam_by_hand(params, images, classes)
    assert (cam == 0).any() and (cam > 0).any()  # the map's zeros matter

    nearest = A.guided_gradcam(module.apply, params, images, classes, layer="features", upsample="nearest")
    expected = guided * np.repeat(np.repeat(cam, 2, axis=1), 2, axis=2)[..., None]  # whole 2x2 cells
    np.testing.assert_allclose(nearest, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    bilinear = A.guided_gradcam(module.apply, params, images, classes, layer="features")
    expected = guided * np.asarray(jax.image.resize(cam, (3, 8, 8), "bilinear"))[..., None]
    np.testing.assert_allclose(bilinear, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())

    # The guided rule matters: the plain gradient times the same map is another answer.
    plain = A.gradient(module.apply, params, images, classes) * np.asarray(
        jax.image.resize(cam, (3, 8, 8), "bilinear"))[..., None]
    assert np.abs(np.asarray(plain) - expected).max() > 1e-3 * np.abs(expected).max()
    # Each image is explained for its own class, and the top-1 class is the default.
    top = np.asarray(jnp.argmax(module.apply(params, images), axis=-1))
    np.testing.assert_allclose(A.guided_gradcam(module.apply, params, images, layer="features"),
                               A.guided_gradcam(module.apply, params, images, top, layer="features"), rtol=1e-6)


def test_guided_gradcam_nearest_is_pytorchs_where_the_sizes_do_not_divide(getkey):
    """9 x 9 images, a 5 x 5 layer: PyTorch's nearest (Captum's default) gives pixel i cell
    floor(i * 5 / 9) = 0 0 1 1 2 2 3 3 4, where half-pixel centres would give 0 0 1 1 2 3 3 4 4."""
    module = GuidedNet()
    images = jax.random.normal(getkey(), (2, 9, 9, 3)) * 50.0
    params = module.init(getkey(), images)
    classes = np.array([2, 0])
    guided, cam = _guided_gradcam_by_hand(params, images, classes)
    assert cam.shape == (2, 5, 5)
    cells = np.array([0, 0, 1, 1, 2, 2, 3, 3, 4])
    nearest = A.guided_gradcam(module.apply, params, images, classes, layer="features", upsample="nearest")
    expected = guided * cam[:, cells][:, :, cells][..., None]
    np.testing.assert_allclose(nearest, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_guided_gradcam_refuses_what_it_cannot_do(getkey):
    module = GuidedNet()
    images = jax.random.normal(getkey(), (2, 8, 8, 3))
    params = module.init(getkey(), images)
    with pytest.raises(ValueError, match="upsample must be one of"):
        A.guided_gradcam(module.apply, params, images, 1, layer="features", upsample="cubic")
    with pytest.raises(ValueError, match="layer must name"):
        A.guided_gradcam(module.apply, params, images, 1)

    class PlainReLU(nn.Module):  # jax.nn.relu: no guided rule to apply
        @nn.compact
        def __call__(self, x):
            x = jax.nn.relu(nn.Conv(5, (2, 2), strides=(2, 2), name="features")(x))
            return nn.Dense(4, name="fc")(jnp.mean(x, axis=(1, 2)))

    plain = PlainReLU()
    with pytest.warns(sj.backprop_rules.RuleNotAppliedWarning):
        A.guided_gradcam(plain.apply, plain.init(getkey(), images), images, 1, layer="features")


@pytest.mark.parametrize("n_in, n_out", [(1, 5), (3, 8), (7, 90), (7, 224), (90, 224), (168, 224), (224, 224),
                                         (224, 90), (260, 7), (13, 4)])
def test_crops_are_resized_as_jax_image_resize_does(getkey, n_in, n_out):
    """The crop and paste matrices (NumPy) are ``jax.image.resize``'s bilinear resize, antialiased when shrinking."""
    from saliency_jax.attribution.crops import _crop_matrices, _resize_matrix

    reference = np.asarray(jax.image.resize(jnp.eye(n_in), (n_out, n_in), method="bilinear"))
    np.testing.assert_allclose(_resize_matrix(n_in, n_out), reference, rtol=0, atol=n_in * 1e-7)
    # A crop of a random image, as the crop matrix cuts and resizes it.
    size, start = n_in + 3, 2
    image = jax.random.normal(getkey(), (size, 4))
    rows = _crop_matrices(size, [start], [n_in])[0]  # [size, size]: the crop resized to the image's side
    want = jax.image.resize(image[start : start + n_in], (size, 4), method="bilinear")
    # (The weights differ from JAX's float32 ones by float rounding, up to about n_in * 8e-8.)
    np.testing.assert_allclose(rows @ np.asarray(image), want, rtol=0, atol=n_in * 5e-7)


def test_default_layer_comes_from_the_classifier():
    classifier = Classifier(lambda p, x: x, None, 8, ("a",), feature_layer="head_activation")
    assert A.default_layer(classifier) == "head_activation"
    with pytest.raises(ValueError, match="feature_layer"):
        A.default_layer(classifier._replace(feature_layer=None))


# --- occlusion --------------------------------------------------------------------------


def test_occlusion_closed_form_on_the_linear_model(linear_model, getkey):
    """The drop of a patch is sum_patch W_c (x - v); each pixel averages the patches over it.
    Captum's placements: the last row and column of them are cut at the image's edge."""
    logits_fn, params = linear_model
    images = _images(getkey(), (2, 6, 5, 3))
    classes = np.array([1, 3])
    patch, stride, value = (3, 2), (2, 2), 17.0
    ours = A.occlusion(
        logits_fn, params, images, classes, patch=patch, stride=stride, baseline=value, batch_size=5
    )
    w = _weights_as_images(params, classes, images.shape)
    x = np.asarray(images, np.float64)
    expected = np.zeros(x.shape[:3])
    count = np.zeros(x.shape[1:3])
    for y0 in (0, 2, 4):  # ceil((6 - 3) / 2) + 1 = 3 starts; the last covers rows 4-5 only
        for x0 in (0, 2, 4):  # ceil((5 - 2) / 2) + 1 = 3 starts; the last covers column 4 only
            window = (slice(None), slice(y0, y0 + 3), slice(x0, x0 + 2))
            drop = (w[window] * (x[window] - value)).sum(axis=(1, 2, 3))
            expected[window] += drop[:, None, None]
            count[y0 : y0 + 3, x0 : x0 + 2] += 1
    assert (count > 0).all()  # every pixel is covered
    expected = expected / count
    np.testing.assert_allclose(ours, np.repeat(expected[..., None], 3, -1), rtol=1e-4, atol=1e-2)


# --- RISE -------------------------------------------------------------------------------


def test_rise_masks(getkey):
    key = getkey()
    masks = np.asarray(A.rise_masks(key, 400, (20, 14), grid=4, p=0.3))
    assert masks.shape == (400, 20, 14)
    assert masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.03
    assert len({m.tobytes() for m in masks[:50]}) == 50  # different masks
    np.testing.assert_array_equal(A.rise_masks(key, 400, (20, 14), grid=4, p=0.3), masks)  # seeded
    # Soft edges: bilinear upsampling of cells of 5x4 pixels leaves values between 0 and 1.
    assert ((masks > 0.01) & (masks < 0.99)).mean() > 0.1


def test_rise_estimator(tiny_cnn, getkey):
    """RISE = 1/(N p) sum_n P_c(x * M_n) M_n, with the masks rise_masks gives for the key."""
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    key, classes, n, p = getkey(), jnp.array([1, 4]), 30, 0.4
    ours = A.rise(logits_fn, params, images, classes, key=key, num_masks=n, grid=3, p=p, batch_size=7)
    masks = np.asarray(A.rise_masks(key, n, (8, 8), grid=3, p=p), np.float64)
    expected = np.zeros((2, 8, 8))
    for m in masks:
        probs = np.asarray(jax.nn.softmax(logits_fn(params, images * jnp.asarray(m, jnp.float32)[None, :, :, None])))
        expected += probs[np.arange(2), np.asarray(classes)][:, None, None] * m[None]
    expected /= n * p
    np.testing.assert_allclose(ours[..., 0], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(ours[..., 0], ours[..., 2])


def test_rise_with_masks_always_on_is_the_probability(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    ours = A.rise(logits_fn, params, images, 2, key=getkey(), num_masks=5, p=1.0)
    probability = jax.nn.softmax(logits_fn(params, images))[:, 2]
    np.testing.assert_allclose(ours, jnp.broadcast_to(probability[:, None, None, None], images.shape), rtol=1e-5)


def test_rise_finds_the_region_the_class_depends_on(getkey):
    """P(class 0) rises with the top-left quarter's brightness only: RISE is higher there."""

    def logits_fn(params, images):
        region = jnp.mean(images[:, :8, :8, :], axis=(1, 2, 3)) / 255.0
        return jnp.stack([params * (region - 0.5), jnp.zeros_like(region)], axis=-1)

    images = jnp.full((1, 16, 16, 3), 255.0)
    saliency = np.asarray(A.rise(logits_fn, 8.0, images, 0, key=getkey(), num_masks=500, grid=4))[0, ..., 0]
    assert saliency[:8, :8].mean() > saliency[8:, 8:].mean() + 0.08
    assert saliency[2:6, 2:6].min() > saliency[10:14, 10:14].max()


# --- noise wrappers ---------------------------------------------------------------------


def test_smoothgrad_with_no_noise_is_the_method(tiny_cnn, getkey):
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    key = getkey()
    plain = A.gradient(logits_fn, params, images, 3, rule="guided")
    smooth = A.smoothgrad(logits_fn, params, images, 3, key=key, num_samples=3, noise_scale=0.0, rule="guided")
    np.testing.assert_allclose(smooth, plain, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        A.vargrad(logits_fn, params, images, 3, key=key, num_samples=3, noise_scale=0.0), 0.0, atol=1e-9
    )


def test_noise_wrappers_closed_forms_on_the_linear_model(linear_model, getkey):
    """Gradient x input of a linear model is (x + e) W: its mean over noise is x W (a mean, not a
    max: a max would sit ~2 noise deviations above), its variance W^2 sigma^2."""
    logits_fn, params = linear_model
    images = _images(getkey(), (2, 6, 5, 3))
    key, samples, scale = getkey(), 400, 0.1
    w = _weights_as_images(params, [1, 1], images.shape)
    sigma = scale * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))[:, None, None, None]
    settings = dict(key=key, method=A.gradient_x_input, num_samples=samples, noise_scale=scale, batch_size=128)
    smooth = A.smoothgrad(logits_fn, params, images, 1, **settings)
    error = (smooth - images * w) / (np.abs(w) * sigma)  # in noise deviations
    assert float(jnp.abs(error).mean()) < 0.15 and float(jnp.abs(error).max()) < 0.5
    variance = A.vargrad(logits_fn, params, images, 1, **settings)
    ratio = np.asarray(variance / (w**2 * sigma**2))
    assert abs(ratio.mean() - 1) < 0.05 and ratio.min() > 0.6
    square = A.squaregrad(logits_fn, params, images, 1, **settings)
    np.testing.assert_allclose(square, np.asarray(variance) + np.asarray(smooth) ** 2, rtol=1e-2, atol=1e-3)
    # The plain gradient does not depend on the image: SquareGrad is W^2 exactly.
    np.testing.assert_allclose(
        A.squaregrad(logits_fn, params, images, 1, key=key, num_samples=4), w**2, rtol=1e-5
    )
    maps = np.asarray(A.smoothgrad(logits_fn, params, images, 1, **settings, reduction="max_abs"))
    assert maps.shape == images.shape[:3]
    assert (maps >= np.abs(np.asarray(smooth)).max(-1) - 1e-3).all()  # mean max |a| >= max |mean a|
    assert (maps > np.abs(np.asarray(smooth)).max(-1) + 1.0).any()


def test_smoothgrad_noise_is_as_documented(tiny_cnn, getkey):
    """Sample n's noise is normal(fold_in(noise key, n)) times noise_scale x each image's range."""
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3)) * jnp.array([1.0, 0.5])[:, None, None, None]
    key, samples, scale = getkey(), 3, 0.2
    ours = A.smoothgrad(logits_fn, params, images, 1, key=key, num_samples=samples, noise_scale=scale)
    noise_key = jax.random.split(key)[0]
    span = images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))
    noise = [jax.random.normal(jax.random.fold_in(noise_key, n), (1, 8, 8, 3)) for n in range(samples)]
    noisy = [images + scale * span[:, None, None, None] * e for e in noise]
    gradients = [sj.input_gradients(logits_fn, params, x, 1).gradients for x in noisy]
    np.testing.assert_allclose(ours, np.mean(gradients, axis=0), rtol=1e-4, atol=1e-7)
    # With a reduction, the paper's map of each noisy copy is averaged.
    maps = A.smoothgrad(
        logits_fn, params, images, 1, key=key, num_samples=samples, noise_scale=scale, reduction="max_abs"
    )
    expected = np.mean([sj.saliency_from_gradients(g) for g in gradients], axis=0)
    np.testing.assert_allclose(maps, expected, rtol=1e-4, atol=1e-7)


# --- flip-shift average -------------------------------------------------------------------


def test_flip_shift_moves_each_copy_back(linear_model, getkey):
    """The linear model's gradient is W whatever the image, so each copy's gradient, moved back,
    is W flipped and rolled back: the average is computed here with numpy."""
    logits_fn, params = linear_model
    images = _images(getkey(), (2, 6, 5, 3))
    ours = A.flip_shift_average(logits_fn, params, images, 2, shifts=(0, 1, 3), flips=True)
    w = _weights_as_images(params, [2], images.shape)[0]
    copies = []
    for flip in (False, True):
        for s in (0, 1, 3):
            g = np.roll(w, (-s, -s), axis=(0, 1))
            copies.append(g[:, ::-1] if flip else g)
    np.testing.assert_allclose(ours, np.broadcast_to(np.mean(copies, axis=0), images.shape), rtol=1e-5)
    maps = A.flip_shift_average(logits_fn, params, images, 2, shifts=(0, 1, 3), reduction="max_abs")
    expected = np.mean([np.abs(c).max(-1) for c in copies], axis=0)
    np.testing.assert_allclose(maps, np.broadcast_to(expected, images.shape[:3]), rtol=1e-5)


def test_flip_shift_of_a_symmetric_model_is_the_plain_map(getkey):
    """For a model blind to flips and circular shifts, every copy's map moved back is the map itself."""

    def logits_fn(params, images):
        return jnp.stack([jnp.sum(images**2, axis=(1, 2, 3)), jnp.sum(images, axis=(1, 2, 3))], -1)

    images = _images(getkey(), (2, 6, 6, 1))
    ours = A.flip_shift_average(logits_fn, None, images, 0, shifts=(0, 2))
    np.testing.assert_allclose(ours, 2 * images, rtol=1e-5)


def test_flip_shift_moves_maps_back_by_each_axis_scale(getkey):
    """A method whose map keeps every row but every other column ([B, 8, 4] of 8 x 8 images):
    a shift of 2 pixels is 2 rows and 1 column of the map, so the unflipped copies moved back
    are the map itself."""

    def method(logits_fn, params, images, classes=None, *, key=None, batch_size=None):
        return images[:, :, ::2, 0]

    def logits_fn(params, images):
        return jnp.sum(images, axis=(1, 2)) * 1.0

    images = _images(getkey(), (2, 8, 8, 3))
    ours = A.flip_shift_average(logits_fn, None, images, 0, method=method, shifts=(0, 2, 4), flips=False)
    np.testing.assert_allclose(ours, images[:, :, ::2, 0], rtol=1e-6)
