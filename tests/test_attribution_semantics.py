"""What each attribution method computes, against its reference's definition.

The references are Captum (``Occlusion``, ``IntegratedGradients``, ``LayerGradCam``),
PAIR saliency (Blur IG) and Petsiuk et al.'s RISE; each is written here as a small
independent numpy implementation of its definition (or a closed form), never by
calling the package's own helpers. The divergences that are intentional are listed
in docs/attribution.md ("Semantics against the reference implementations").
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from saliency_jax import attribution as A
from saliency_jax.attribution.perturbation import occlusion_positions
from saliency_jax.attribution.random_masks import rise_mask


def _images(key, shape):
    return jax.random.uniform(key, shape, minval=0.0, maxval=4.0)


# --- occlusion: Captum's placements ----------------------------------------------------------


def _captum_starts(size, window, stride):
    """Captum's ``Occlusion``: ``ceil((size - window) / stride) + 1`` starts, the last window cut at the edge."""
    return [k * stride for k in range(math.ceil((size - window) / stride) + 1)]


# (size, window, stride) -> the number of placements along that axis, as Captum 0.9 counts them.
CAPTUM_COUNTS = [(8, 3, 2, 4), (6, 3, 2, 3), (5, 2, 2, 3), (8, 5, 3, 2), (8, 2, 2, 4), (7, 7, 1, 1), (224, 16, 8, 27)]


@pytest.mark.parametrize("size,window,stride,count", CAPTUM_COUNTS)
def test_occlusion_places_the_patch_where_captum_does(size, window, stride, count):
    starts = _captum_starts(size, window, stride)
    assert len(starts) == count
    positions = occlusion_positions((size, 5), (window, 5), (stride, 1))
    np.testing.assert_array_equal(np.unique(positions[:, 0]), starts)


def test_occlusion_with_a_stride_wider_than_the_patch_leaves_gaps_but_no_empty_placement():
    # Captum refuses a stride wider than the window; here the pixels between placements get 0.
    positions = occlusion_positions((8, 8), 2, 4)
    np.testing.assert_array_equal(np.unique(positions[:, 0]), [0, 4])  # 8 would cover nothing
    positions = occlusion_positions((8, 8), 2, 3)
    np.testing.assert_array_equal(np.unique(positions[:, 0]), [0, 3, 6])


def _captum_occlusion(score_fn, image, patch, stride, value):
    """Captum's Occlusion of one ``[H, W, C]`` image: each pixel's mean drop over the windows covering it."""
    (ph, pw), (sh, sw) = patch, stride
    height, width = image.shape[:2]
    reference = score_fn(image)
    total = np.zeros((height, width))
    count = np.zeros((height, width))
    for y in _captum_starts(height, ph, sh):
        for x in _captum_starts(width, pw, sw):
            occluded = image.copy()
            occluded[y : y + ph, x : x + pw] = value
            total[y : y + ph, x : x + pw] += reference - score_fn(occluded)
            count[y : y + ph, x : x + pw] += 1
    assert (count > 0).all()  # every pixel is covered
    return total / count


def test_occlusion_equals_captum_when_the_patch_does_not_tile_the_image(tiny_cnn, getkey):
    """An 8x8 image, a 3x3 patch at stride 2: Captum's last window (start 6) is cut at the edge."""
    logits_fn, params = tiny_cnn
    images = _images(getkey(), (2, 8, 8, 3))
    classes = np.array([0, 3])
    ours = np.asarray(A.occlusion(logits_fn, params, images, classes, patch=3, stride=2, baseline=0.5))
    for b, c in enumerate(classes):
        def score(x, c=c):
            return float(logits_fn(params, jnp.asarray(x, jnp.float32)[None])[0, c])

        expected = _captum_occlusion(score, np.asarray(images[b], np.float64), (3, 3), (2, 2), 0.5)
        np.testing.assert_allclose(ours[b], np.repeat(expected[..., None], 3, -1), rtol=1e-4, atol=1e-5)
    assert (np.abs(ours[:, 7, :]) > 0).all() and (np.abs(ours[:, :, 7]) > 0).all()  # the last row and column


def test_occlusion_of_the_linear_model_has_the_closed_form_with_cut_windows(linear_model, getkey):
    """Linear model: a window's drop is ``sum_window W_c (x - v)``, the window cut at the image's edge."""
    logits_fn, params = linear_model
    images = _images(getkey(), (2, 6, 5, 3))
    classes = np.array([2, 0])
    ours = np.asarray(A.occlusion(logits_fn, params, images, classes, patch=(3, 2), stride=2, baseline=1.5))
    w = np.asarray(params["w"], np.float64).T[classes].reshape(2, 6, 5, 3)
    for b in range(2):
        x = np.asarray(images[b], np.float64)

        def score(image, b=b):
            return float((image * w[b]).sum())

        expected = _captum_occlusion(score, x, (3, 2), (2, 2), 1.5)
        np.testing.assert_allclose(ours[b], np.repeat(expected[..., None], 3, -1), rtol=1e-4, atol=1e-4)


# --- Integrated Gradients: a trapezoid rule whose weights sum to one ----------------------------


def _quadratic(params, images):
    """``S_k(x) = sum_i a_ki x_i^2 + b_ki x_i``: its gradient is linear along any straight path."""
    flat = images.reshape(images.shape[0], -1)
    return jnp.square(flat) @ params["a"] + flat @ params["b"]


@pytest.mark.parametrize("steps", [2, 5])
def test_ig_is_exact_on_a_quadratic_model_for_any_steps(getkey, steps):
    """The trapezoid rule integrates a linear integrand exactly: IG = (x - x') (a (x + x') + b).

    Captum's ``riemann_trapezoid`` weights are 1/n (halved at the ends) and sum to (n - 1)/n,
    so its attributions are this exact value times (n - 1)/n; this package's weights sum to 1.
    """
    shape = (2, 3, 4, 3)
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.normal(size=(36, 3)), jnp.float32),
              "b": jnp.asarray(rng.normal(size=(36, 3)), jnp.float32)}
    images, baseline = _images(getkey(), shape), _images(getkey(), shape[1:])
    classes = np.array([1, 2])
    ours = A.integrated_gradients(_quadratic, params, images, classes, steps=steps, baseline=baseline)
    a = np.asarray(params["a"], np.float64).T[classes].reshape(shape)
    b = np.asarray(params["b"], np.float64).T[classes].reshape(shape)
    x, x0 = np.asarray(images, np.float64), np.asarray(baseline, np.float64)[None]
    expected = (x - x0) * (a * (x + x0) + b)
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)
    # Completeness, exactly: the sum is S_c(x) - S_c(x').
    gap = np.asarray(_quadratic(params, images) - _quadratic(params, jnp.broadcast_to(baseline, shape)))
    np.testing.assert_allclose(np.asarray(ours).sum(axis=(1, 2, 3)), gap[np.arange(2), classes], rtol=1e-4)


def test_ig_is_linear_in_the_model(tiny_cnn, getkey):
    """IG of ``f + 2 g`` is IG of ``f`` plus twice IG of ``g`` (the same path, the same rule)."""
    logits_fn, params = tiny_cnn
    other = jax.tree.map(lambda p: 0.5 * p[..., ::-1] if p.ndim == 1 else 0.7 * p, params)

    def both(pair, images):
        return logits_fn(pair[0], images) + 2.0 * logits_fn(pair[1], images)

    images = _images(getkey(), (2, 8, 8, 3))
    ig = functools.partial(A.integrated_gradients, images=images, classes=np.array([1, 4]), steps=4, baseline=0.3)
    combined = ig(both, (params, other))
    separate = ig(logits_fn, params) + 2.0 * ig(logits_fn, other)
    np.testing.assert_allclose(combined, separate, rtol=1e-4, atol=1e-5 * float(jnp.abs(separate).max()))


def test_ig_gives_symmetric_inputs_equal_attributions():
    """A model symmetric in two pixels, an image and a baseline equal there: equal attributions."""

    def logits_fn(params, images):
        u, v = images[:, 0, 0, 0], images[:, 1, 2, 0]
        rest = jnp.sum(images[:, 2:], axis=(1, 2, 3))
        return jnp.stack([jax.nn.softplus(u * v - 1.0) + jnp.tanh(u + v) + 0.1 * rest, u - v], axis=-1)

    images = jnp.asarray(np.random.default_rng(1).uniform(0, 2, (1, 3, 3, 1)), jnp.float32)
    images = images.at[0, 1, 2, 0].set(images[0, 0, 0, 0])
    ig = np.asarray(A.integrated_gradients(logits_fn, None, images, 0, steps=6))
    assert ig[0, 0, 0, 0] != 0.0
    assert ig[0, 0, 0, 0] == pytest.approx(ig[0, 1, 2, 0], rel=1e-6)


# --- Grad-CAM upsampled as Captum's LayerAttribution.interpolate(..., "bilinear") ------------------


def _bilinear_half_pixel(cam, size):
    """``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` of one map, upsampling."""

    def axis_matrix(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        m = np.zeros((n_out, n_in))
        m[np.arange(n_out), lo] += 1 - (src - lo)
        m[np.arange(n_out), hi] += src - lo
        return m

    return axis_matrix(cam.shape[0], size[0]) @ cam @ axis_matrix(cam.shape[1], size[1]).T


def test_attribution_map_upsamples_like_torch_bilinear():
    cams = np.random.default_rng(2).uniform(0, 1, (2, 3, 4)).astype(np.float32)
    ours = np.asarray(A.attribution_map(jnp.asarray(cams), size=(8, 11)))
    for cam, up in zip(cams.astype(np.float64), ours):
        np.testing.assert_allclose(up, _bilinear_half_pixel(cam, (8, 11)), rtol=1e-5, atol=1e-6)


# --- RISE: Petsiuk et al.'s masks ---------------------------------------------------------------


def test_rise_mask_is_the_upsampled_grid_cropped_at_its_shift():
    """Cells from the first key of ``split(key)``, the shift from the second; the grid upsampled
    bilinearly (half-pixel centres, edge cells held) to ``(grid + 1)`` cells and cropped."""
    height, width, grid, p = 13, 10, 3, 0.4
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    for n in range(6):
        key = jax.random.fold_in(jax.random.key(4), n)
        cells_key, shift_key = jax.random.split(key)
        cells = np.asarray(jax.random.bernoulli(cells_key, p, (grid, grid)), np.float64)
        dy, dx = np.asarray(jax.random.randint(shift_key, (2,), 0, jnp.asarray([cell_h, cell_w])))
        assert 0 <= dy < cell_h and 0 <= dx < cell_w
        upsampled = _bilinear_half_pixel(cells, ((grid + 1) * cell_h, (grid + 1) * cell_w))
        expected = upsampled[dy : dy + height, dx : dx + width]
        np.testing.assert_allclose(rise_mask(key, (height, width), grid=grid, p=p), expected, atol=1e-6)


# --- Blur IG: PAIR's schedules ---------------------------------------------------------------------


@pytest.mark.parametrize("sqrt", [False, True])
def test_blur_ig_schedule_is_pairs(sqrt):
    """PAIR saliency's sigmas: ``i * max_sigma / steps``, or its square root, ``i = 0 .. steps``.

    With ``sqrt`` the strongest blur is ``sqrt(max_sigma)`` pixels, not ``max_sigma``.
    """
    steps, max_sigma = 7, 50.0
    pair = [math.sqrt(i * max_sigma / steps) if sqrt else i * max_sigma / steps for i in range(steps + 1)]
    sigmas, step_sizes = A.blur_ig.blur_sigmas(steps, max_sigma, sqrt)
    np.testing.assert_allclose(sigmas, pair[:-1], rtol=1e-6)
    np.testing.assert_allclose(step_sizes, np.diff(pair), rtol=1e-5)
    assert float(np.sum(step_sizes, dtype=np.float64)) == pytest.approx(
        math.sqrt(max_sigma) if sqrt else max_sigma, rel=1e-5
    )
