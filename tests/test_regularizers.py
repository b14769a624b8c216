"""Tests for saliency_jax.regularizers: each prior's value, its hooks' contracts and compose."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from saliency_jax import regularizers as regs

SHAPE = (12, 10, 3)


def _image(seed=0, shape=SHAPE):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# One registry of regularisers under test; every contract test runs over it.
REGISTRY = {
    "l2": lambda: regs.l2_penalty(0.3),
    "jitter": lambda: regs.jitter(3),
    "random_scale": lambda: regs.random_scale(0.8, 1.2),
    "total_variation": lambda: regs.total_variation(0.5),
    "total_variation_beta1": lambda: regs.total_variation(0.5, beta=1.0),
    "blur_every": lambda: regs.blur_every(2, 1.0),
    "clip_pixels": lambda: regs.clip_pixels(-0.5, 0.7),
    "composed": lambda: regs.compose(regs.jitter(2), regs.total_variation(0.1), regs.clip_pixels(-1.0, 1.0)),
}


def _apply_hooks(reg, key, z, step):
    out = []
    if reg.transform is not None:
        out.append(reg.transform(key, z))
    if reg.penalty is not None:
        out.append(reg.penalty(z))
    if reg.project is not None:
        out.append(reg.project(key, z, step))
    return out


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_hooks_keep_shape_and_are_finite(name, getkey):
    reg = REGISTRY[name]()
    assert any(h is not None for h in reg), "a regulariser must have at least one hook"
    z = _image()
    key = getkey()
    for out in jax.jit(functools.partial(_apply_hooks, reg))(key, z, jnp.int32(1)):
        assert out.shape in (SHAPE, ())
        assert out.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(out)))
    if reg.penalty is not None:
        grad = jax.grad(reg.penalty)(z)
        assert bool(jnp.all(jnp.isfinite(grad)))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_jit_equals_eager(name, getkey):
    reg = REGISTRY[name]()
    z, key, step = _image(), getkey(), jnp.int32(3)
    eager = _apply_hooks(reg, key, z, step)
    jitted = jax.jit(functools.partial(_apply_hooks, reg))(key, z, step)
    for a, b in zip(eager, jitted):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_vmap_over_images_equals_per_image(name, getkey):
    reg = REGISTRY[name]()
    zs = jnp.stack([_image(i) for i in range(3)])
    keys = jax.random.split(getkey(), 3)
    step = jnp.int32(1)
    batched = jax.jit(jax.vmap(functools.partial(_apply_hooks, reg), in_axes=(0, 0, None)))(keys, zs, step)
    single_fn = jax.jit(functools.partial(_apply_hooks, reg))
    for i in range(3):
        single = single_fn(keys[i], zs[i], step)
        for a, b in zip(batched, single):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-5)


def test_translate_moves_pixels():
    z = _image()
    out = regs.translate(z, 2, -3, max_shift=4)
    # out[i, j] = z[i - 2, j + 3] wherever that lies inside.
    np.testing.assert_array_equal(out[2:, :-3], z[:-2, 3:])
    np.testing.assert_array_equal(regs.translate(z, 0, 0, max_shift=4), z)
    # The uncovered border is a reflection, not a blank.
    np.testing.assert_array_equal(out[1], out[3])
    with pytest.raises(ValueError, match="max_shift"):
        regs.translate(z, 1, 1, max_shift=10)


def test_jitter_is_one_of_the_allowed_shifts(getkey):
    z = _image()
    transform = jax.jit(regs.jitter(2).transform)
    candidates = [regs.translate(z, dy, dx, max_shift=2) for dy in range(-2, 3) for dx in range(-2, 3)]
    seen = set()
    for _ in range(20):
        out = transform(getkey(), z)
        matches = [i for i, c in enumerate(candidates) if bool(jnp.array_equal(out, c))]
        assert matches, "jitter produced something that is not a whole-pixel shift within range"
        seen.add(matches[0])
    assert len(seen) > 3, "jitter should draw different shifts for different keys"
    np.testing.assert_array_equal(regs.jitter(0).transform(getkey(), z), z)


def test_rescale_identity_enlarge_and_shrink():
    rescale = jax.jit(regs.rescale)
    z = _image(shape=(16, 16, 3))
    np.testing.assert_allclose(rescale(z, 1.0), z, atol=1e-5)
    ones = jnp.ones((16, 16, 1))
    # Enlarging a constant image keeps it constant; shrinking leaves a zero (mean-image) border.
    np.testing.assert_allclose(rescale(ones, 1.25), ones, atol=1e-5)
    shrunk = rescale(ones, 0.5)
    assert float(shrunk[0, 0, 0]) == 0.0 and float(shrunk[8, 8, 0]) == pytest.approx(1.0)
    # A bright centre stays centred.
    spot = jnp.zeros((16, 16, 1)).at[7:9, 7:9].set(1.0)
    big = rescale(spot, 2.0)
    assert jnp.unravel_index(jnp.argmax(big[..., 0]), (16, 16))[0] in (7, 8)
    assert float(jnp.sum(big)) > float(jnp.sum(spot))


def test_random_scale_with_fixed_factor_is_rescale(getkey):
    z = _image()
    np.testing.assert_allclose(regs.random_scale(1.1, 1.1).transform(getkey(), z), regs.rescale(z, 1.1), atol=1e-6)


def test_total_variation_known_values():
    height, width, channels = SHAPE
    ramp = jnp.broadcast_to(jnp.arange(width, dtype=jnp.float32)[None, :, None], SHAPE)
    cells = (height - 1) * (width - 1) * channels
    assert float(regs.total_variation(0.5).penalty(ramp)) == pytest.approx(0.5 * cells)
    assert float(regs.total_variation(0.5, beta=1.0).penalty(2 * ramp)) == pytest.approx(0.5 * 2 * cells, rel=1e-4)
    assert float(regs.total_variation(1.0).penalty(jnp.full(SHAPE, 3.0))) == 0.0
    # A checkerboard costs far more than a smooth ramp of the same range.
    checker = jnp.broadcast_to(((jnp.arange(height)[:, None] + jnp.arange(width)[None, :]) % 2)[..., None], SHAPE)
    assert float(regs.total_variation(1.0).penalty(checker.astype(jnp.float32))) > 10 * float(
        regs.total_variation(1.0).penalty(ramp / width)
    )


def test_l2_penalty_value_and_gradient():
    z = _image()
    assert float(regs.l2_penalty(0.3).penalty(z)) == pytest.approx(0.3 * float(jnp.sum(z * z)), rel=1e-5)
    np.testing.assert_allclose(jax.grad(regs.l2_penalty(0.3).penalty)(z), 0.6 * z, rtol=1e-5)


def test_gaussian_blur_matches_scipy():
    z = _image()
    ours = regs.gaussian_blur(z, 1.0)
    # jnp.pad's "reflect" is scipy's "mirror"; radius 3 sigma.
    ref = scipy.ndimage.gaussian_filter(np.asarray(z), sigma=(1.0, 1.0, 0), mode="mirror", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_blur_every_only_on_its_steps(getkey):
    z = _image()
    project = jax.jit(regs.blur_every(3, 1.0).project)
    blurred = regs.gaussian_blur(z, 1.0)
    for step in range(7):
        out = project(getkey(), z, jnp.int32(step))
        expected = blurred if (step + 1) % 3 == 0 else z
        np.testing.assert_allclose(out, expected, atol=1e-6)


def test_clip_pixels_projects_onto_the_box(getkey):
    z = 2 * _image()
    out = regs.clip_pixels(-0.5, 0.7).project(getkey(), z, jnp.int32(0))
    np.testing.assert_allclose(out, jnp.clip(z, -0.5, 0.7))


def test_compose_chains_and_sums(getkey):
    z = _image()
    a, b = regs.l2_penalty(0.2), regs.total_variation(0.3)
    both = regs.compose(a, b, regs.clip_pixels(-1.0, 1.0), regs.blur_every(1, 1.0))
    assert both.transform is None
    assert float(both.penalty(z)) == pytest.approx(float(a.penalty(z) + b.penalty(z)), rel=1e-6)
    # Projections apply in order: clip, then blur.
    out = both.project(getkey(), z, jnp.int32(0))
    np.testing.assert_allclose(out, regs.gaussian_blur(jnp.clip(z, -1.0, 1.0), 1.0), atol=1e-6)
    # Each transform gets its own key, split from the one given.
    key = getkey()
    chained = regs.compose(regs.jitter(2), regs.jitter(1)).transform(key, z)
    k1, k2 = jax.random.split(key)
    np.testing.assert_array_equal(chained, regs.jitter(1).transform(k2, regs.jitter(2).transform(k1, z)))
    assert regs.compose() == regs.Regularizer()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: regs.l2_penalty(-1.0), "weight"),
        (lambda: regs.total_variation(-0.1), "weight"),
        (lambda: regs.total_variation(1.0, beta=0.0), "beta"),
        (lambda: regs.jitter(-1), "pixels"),
        (lambda: regs.jitter(1.5), "pixels"),
        (lambda: regs.random_scale(0.0, 1.0), "min_scale"),
        (lambda: regs.random_scale(1.2, 1.1), "max_scale"),
        (lambda: regs.blur_every(0, 1.0), "every"),
        (lambda: regs.blur_every(2, -1.0), "sigma"),
        (lambda: regs.clip_pixels(1.0, 1.0), "high > low"),
        (lambda: regs.compose(regs.jitter(1), "blur"), r"regularizers\[1\]"),
    ],
)
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_gaussian_blur_of_sigma_zero_is_the_identity():
    """sigma 0 once gave an all-NaN image (0 / 0 in the taps); it is no blur, as in scipy."""
    z = _image()
    np.testing.assert_array_equal(regs.gaussian_blur(z, 0.0), z)
    np.testing.assert_array_equal(regs.gaussian_blur(z, np.float32(0)), z)
    np.testing.assert_array_equal(
        scipy.ndimage.gaussian_filter(np.asarray(z), sigma=(0.0, 0.0, 0)), np.asarray(z)
    )
    # A sigma that underflows float32 is the identity too, not NaN.
    np.testing.assert_allclose(regs.gaussian_blur(z, 1e-46), z)
    np.testing.assert_allclose(jax.jit(lambda x: regs.gaussian_blur(x, 1e-3))(z), z)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda z: regs.gaussian_blur(z, -1.0), r"^sigma must be a finite number >= 0"),  # once a blur of sigma 1
        (lambda z: regs.gaussian_blur(z, float("nan")), r"^sigma must be a finite number"),
        (lambda z: regs.gaussian_blur(z, float("inf")), r"^sigma must be a finite number"),
        (lambda z: regs.gaussian_blur(z, "1"), r"^sigma must be a finite number"),
        (lambda z: regs.gaussian_blur(z, 4.0), r"^sigma 4.0 is too large for an image of shape \(12, 10, 3\)"),
        (lambda z: regs.gaussian_blur(z[..., 0], 1.0),
         r"^z must be one image of shape \[H, W, C\], got shape \(12, 10\)"),
        (lambda z: regs.rescale(z, 0), r"^factor must be a finite number > 0"),  # once an all-zero image
        (lambda z: regs.rescale(z, -1), r"^factor must be a finite number > 0"),  # once the image turned 180 degrees
        (lambda z: regs.rescale(z, float("nan")), r"^factor must be a finite number > 0"),
        (lambda z: regs.rescale(z, float("inf")), r"^factor must be a finite number > 0"),
        (lambda z: regs.rescale(z, 1e-50), r"^factor must be > 0 in float32"),
        (lambda z: regs.rescale(z, jnp.ones(2)), r"^factor must be a scalar, got shape \(2,\)"),
        (lambda z: regs.rescale(z[..., 0], 1.0), r"^z must be one image of shape \[H, W, C\]"),
        (lambda z: regs.translate(z, 1, 1, max_shift=2.5), r"^max_shift must be an integer >= 0, got 2.5"),
        (lambda z: regs.translate(z, 1, 1, max_shift=True), r"^max_shift must be an integer"),
        (lambda z: regs.translate(z[..., 0], 1, 1, max_shift=2), r"^z must be one image of shape \[H, W, C\]"),
        (lambda z: regs.jitter(2).transform(jax.random.key(0), z[None]),
         r"^z must be one image of shape \[H, W, C\], got shape \(1, 12, 10, 3\) \(a batch"),
        (lambda z: regs.total_variation(1.0).penalty(z[None]), r"^z must be one image of shape \[H, W, C\]"),
    ],
    ids=["blur-negative", "blur-nan", "blur-inf", "blur-string", "blur-too-wide", "blur-2d", "rescale-0",
         "rescale-negative", "rescale-nan", "rescale-inf", "rescale-underflow", "rescale-vector", "rescale-2d",
         "translate-float-max-shift", "translate-bool-max-shift", "translate-2d", "jitter-batch", "tv-batch"],
)
def test_image_functions_refuse_bad_arguments_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call(_image())


def test_rescale_with_a_traced_factor_out_of_range_is_nan():
    """A traced factor cannot be refused while tracing: it must not give a plausible image."""
    z = _image()
    rescale = jax.jit(regs.rescale)
    for factor in (0.0, -1.0, float("nan"), float("inf")):
        assert bool(jnp.isnan(rescale(z, factor)).all()), factor
    np.testing.assert_allclose(rescale(z, 1.1), regs.rescale(z, 1.1), atol=1e-6)
    # The gradient through a valid traced factor is untouched.
    grad = jax.grad(lambda x: jnp.sum(rescale(x, 0.9)))(z)
    assert bool(jnp.isfinite(grad).all())


def test_scale_factors_past_a_million_are_refused_not_turned_into_a_blank_image():
    """rescale(z, 1e38) once returned the mean image (its centring translation overflowed float32)."""
    R = regs
    z = jnp.ones((8, 8, 3))
    for factor in (1e38, 1.1e6):
        with pytest.raises(ValueError, match=r"factor must be a finite number > 0.0 and <= 1000000.0"):
            R.rescale(z, factor)
    np.testing.assert_allclose(R.rescale(z, 1e6), z, rtol=1e-6)  # a zoom of a constant image stays constant
    assert np.isnan(np.asarray(jax.jit(R.rescale)(z, jnp.float32(1e7)))).all()  # traced: NaN, as documented
    with pytest.raises(ValueError, match="max_scale must be a finite number > 0.0 and <= 1000000.0"):
        R.random_scale(1.0, 3e38)


def test_parametrised_images_past_2_28_values_are_refused():
    from saliency_jax import parametrization as P

    for make in (P.pixel_parametrization, P.fourier_parametrization):
        with pytest.raises(ValueError, match=r"image_shape must be .* at most 268,435,456 values"):
            make((2**40, 2**40, 3))  # once an abort inside XLA (pixels) or an 8 TiB MemoryError (Fourier)
