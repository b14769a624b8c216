"""Tests for saliency_jax.class_model (paper §2) and the class-model command."""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from PIL import Image

from saliency_jax import regularizers as regs
from saliency_jax.class_model import (
    ClassModelResult,
    class_model_ascent,
    class_models,
    classifier_class_models,
    classifier_settings,
    mode_defaults,
)
from saliency_jax.types import Classifier

TINY_SHAPE = (8, 8, 3)
# The tiny CNN's ReLUs are all off at the zero image, so feed it a non-zero mean.
TINY = dict(image_shape=TINY_SHAPE, pixel_mean=0.5, pixel_scale=1.0)


def tiny_regularizer():
    """The regularised mode's kinds of prior, sized for 8x8 images."""
    return regs.compose(
        regs.jitter(1),
        regs.random_scale(0.9, 1.1),
        regs.total_variation(0.01),
        regs.blur_every(2, 0.5),
        regs.clip_pixels(-2.0, 2.0),
    )


MODES = {
    "paper": dict(mode="paper", learning_rate=0.05),
    "regularised": dict(mode="regularised", learning_rate=0.05, regularizer=tiny_regularizer()),
}


# --- The paper's objective, checked against a linear model's exact answer ---------------


def test_linear_model_reaches_the_analytic_optimum(linear_model):
    """For S_c(m + s z) = w_c . (m + s z) + b_c, the maximiser of S_c - lambda |z|^2 is s w_c / (2 lambda)."""
    logits_fn, params = linear_model
    lam, scale, mean = 0.5, 2.0, 0.25
    result = class_models(
        logits_fn,
        params,
        jnp.arange(4),
        key=jax.random.key(0),
        steps=60,
        optimizer=optax.sgd(0.5),  # z <- z + 0.5 (s w - 2 lambda z): contracts to the optimum
        l2_weight=lam,
        image_shape=(6, 5, 3),
        pixel_mean=mean,
        pixel_scale=scale,
    )
    w = np.asarray(params["w"]).T.reshape(4, 6, 5, 3)
    z_star = scale * w / (2 * lam)
    np.testing.assert_allclose(result.images, mean + scale * z_star, rtol=1e-4, atol=1e-4)
    # The history is the score and objective of the image before each update.
    first = np.asarray(params["b"]) + mean * w.reshape(4, -1).sum(1)
    np.testing.assert_allclose(result.history.scores[0], first, rtol=1e-5)
    np.testing.assert_allclose(result.history.objectives[0], first, rtol=1e-5)
    expected_final = np.sum(w * (mean + scale * z_star), axis=(1, 2, 3)) + np.asarray(params["b"])
    np.testing.assert_allclose(result.scores, expected_final, rtol=1e-4)
    np.testing.assert_allclose(
        result.history.objectives[-1], expected_final - lam * np.sum(z_star**2, axis=(1, 2, 3)), rtol=1e-3
    )


@pytest.mark.parametrize("objective", ["softmax", "log_softmax"])
def test_softmax_objectives_pull_other_classes_down(linear_model, objective):
    """d P_c / dz = s P_c (w_c - sum_k P_k w_k): the posterior also rises by lowering the others."""
    logits_fn, params = linear_model
    lr, scale, mean = 0.01, 2.0, 0.25
    result = class_models(
        logits_fn, params, jnp.arange(4), key=jax.random.key(0), steps=1, optimizer=optax.sgd(lr),
        l2_weight=0.0, objective=objective, image_shape=(6, 5, 3), pixel_mean=mean, pixel_scale=scale,
    )
    w = np.asarray(params["w"]).T  # [4, D]
    x0 = np.full((1, 90), mean, np.float32)
    p = np.asarray(jax.nn.softmax(logits_fn(params, jnp.asarray(x0).reshape(1, 6, 5, 3))))[0]
    expected_grad = scale * (w - p @ w)  # d log P_c / dz per class, [4, D]
    if objective == "softmax":
        expected_grad = p[:, None] * expected_grad
    z1 = lr * expected_grad
    np.testing.assert_allclose(result.images.reshape(4, -1), mean + scale * z1, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.exp(result.history.objectives[0]) if objective == "log_softmax"
                               else result.history.objectives[0], p, rtol=1e-5)


# --- Contracts on a tiny CNN --------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
def test_objective_and_score_rise(tiny_cnn, mode):
    logits_fn, params = tiny_cnn
    run = jax.jit(functools.partial(class_models, logits_fn, steps=40, **MODES[mode], **TINY))
    result = run(params, jnp.arange(5), key=jax.random.key(0))
    objectives, scores = np.asarray(result.history.objectives), np.asarray(result.history.scores)
    assert objectives.shape == scores.shape == (40, 5)
    if mode == "paper":
        assert np.all(objectives[-1] > objectives[0] + 0.05)
        assert np.all(scores[-1] > scores[0] + 0.05)
        # Deterministic ascent with a small step: it rises at (almost) every step.
        rises = np.diff(objectives, axis=0) > -1e-4
        assert rises.mean() >= 0.95
    else:
        # Random transforms make single steps noisy: compare successive windows.
        windows = objectives.reshape(4, 10, 5).mean(axis=1)
        assert np.all(np.diff(windows, axis=0) > -2e-3)  # never falls back (it levels off)
        assert np.all(windows[-1] > windows[0] + 0.02)
        score_windows = scores.reshape(4, 10, 5).mean(axis=1)
        assert np.all(score_windows[-1] > score_windows[0] + 0.02)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_jit_equals_eager(tiny_cnn, mode):
    logits_fn, params = tiny_cnn
    run = functools.partial(class_models, logits_fn, steps=3, **MODES[mode], **TINY)
    classes, key = jnp.array([0, 3]), jax.random.key(7)
    jitted = jax.jit(run)(params, classes, key=key)
    with jax.disable_jit():  # the scan becomes a Python loop
        eager = run(params, classes, key=key)
    for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_batch_of_classes_equals_single_runs(tiny_cnn, mode):
    logits_fn, params = tiny_cnn
    classes = jnp.array([4, 0, 2])
    run = jax.jit(functools.partial(class_models, logits_fn, steps=8, **MODES[mode], **TINY))
    key = jax.random.key(3)
    batch = run(params, classes, key=key)
    for i, c in enumerate(classes.tolist()):
        single = run(params, jnp.array([c]), key=key)
        np.testing.assert_allclose(batch.images[i], single.images[0], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(
            batch.history.objectives[:, i], single.history.objectives[:, 0], rtol=1e-4, atol=1e-5
        )


def test_optimizer_acts_on_each_class_alone(tiny_cnn):
    """A global-norm clip would couple the classes if the update were not vmapped per class."""
    logits_fn, params = tiny_cnn
    optimizer = optax.chain(optax.clip_by_global_norm(1e-2), optax.sgd(1.0))
    run = jax.jit(functools.partial(class_models, logits_fn, steps=3, optimizer=optimizer, **TINY))
    batch = run(params, jnp.array([1, 2]), key=jax.random.key(0))
    single = run(params, jnp.array([2]), key=jax.random.key(0))
    np.testing.assert_allclose(batch.images[1], single.images[0], rtol=1e-5, atol=1e-6)


def test_chunks_of_steps_equal_one_run(tiny_cnn):
    logits_fn, params = tiny_cnn
    ascent = class_model_ascent(logits_fn, **MODES["regularised"], **TINY)
    key, classes = jax.random.key(1), jnp.array([1, 3])
    run = jax.jit(ascent.run, static_argnums=2)
    state = ascent.init(params, classes, key=key)
    state, first = run(params, state, 3)
    state, second = run(params, state, 3)
    chunked = ascent.finish(params, state, first)
    whole = jax.jit(functools.partial(class_models, logits_fn, steps=6, **MODES["regularised"], **TINY))(
        params, classes, key=key
    )
    np.testing.assert_allclose(chunked.images, whole.images, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        np.concatenate([first.objectives, second.objectives]), whole.history.objectives, rtol=1e-5, atol=1e-6
    )
    assert int(state.step) == 6


def test_keys_control_the_randomness(tiny_cnn):
    logits_fn, params = tiny_cnn
    run = jax.jit(functools.partial(class_models, logits_fn, steps=5, **MODES["regularised"], **TINY))
    a = run(params, jnp.array([2]), key=jax.random.key(0))
    b = run(params, jnp.array([2]), key=jax.random.key(0))
    c = run(params, jnp.array([2]), key=jax.random.key(1))
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.allclose(a.images, c.images)


def test_result_images_are_clipped_and_reproduce_the_scores(tiny_cnn):
    logits_fn, params = tiny_cnn
    result = class_models(
        logits_fn, params, jnp.arange(5), key=jax.random.key(0), steps=30, learning_rate=0.3,
        l2_weight=0.0, image_shape=TINY_SHAPE, pixel_mean=0.5, pixel_scale=1.0, pixel_range=(0.0, 1.0),
    )
    assert isinstance(result, ClassModelResult)
    assert result.images.shape == (5, *TINY_SHAPE) and result.images.dtype == jnp.float32
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert np.any(np.asarray(result.images) == 1.0), "the ascent should have pushed some pixels past the range"
    np.testing.assert_allclose(result.scores, logits_fn(params, result.images)[jnp.arange(5), jnp.arange(5)], rtol=1e-5)
    np.testing.assert_allclose(result.logits, logits_fn(params, result.images), rtol=1e-5)


def test_regularised_mode_defaults_build_for_a_classifier(tiny_cnn):
    """The regularised mode's own priors and Fourier parametrisation, on a 32x32 model."""
    logits_fn, params = tiny_cnn
    names = tuple(f"c{i}" for i in range(5))
    classifier = Classifier(logits_fn, params, 32, names, pixel_mean=127.0, pixel_scale=128.0)
    settings = classifier_settings(classifier)
    assert settings.image_shape == (32, 32, 3) and settings.pixel_range == (0.0, 255.0)
    result = classifier_class_models(classifier, jnp.array([1, 2, 4]), key=jax.random.key(0), mode="regularised",
                                     steps=3)
    assert result.images.shape == (3, 32, 32, 3)
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 255.0
    assert np.all(np.isfinite(result.history.objectives))
    # batches of classes and chunks of steps change nothing: each class draws from fold_in(key, class)
    chunks = []
    split = classifier_class_models(classifier, jnp.array([1, 2, 4]), key=jax.random.key(0), mode="regularised",
                                    steps=3, batch_size=2, chunk=2, on_chunk=lambda n, h: chunks.append(n))
    assert chunks == [2, 1, 2, 1]
    np.testing.assert_allclose(split.images, result.images, rtol=1e-5, atol=1e-4)
    assert split.history.scores.shape == (3, 3)


def test_classifier_batches_are_evened_and_filled_so_the_ascent_compiles_once(tiny_cnn):
    """5 classes at batch_size 4: two batches of 3 (one copy), equal to all 5 together."""
    logits_fn, params = tiny_cnn
    traced = set()

    def counting(p, images):
        traced.add(images.shape[0])
        return logits_fn(p, images)

    names = tuple(f"c{i}" for i in range(5))
    classifier = Classifier(counting, params, 32, names, pixel_mean=127.0, pixel_scale=128.0)
    classes = jnp.array([4, 0, 2, 1, 3])
    reported = []
    batched = classifier_class_models(classifier, classes, key=jax.random.key(2), steps=3, batch_size=4,
                                      on_chunk=lambda n, h: reported.append((n, h.scores.shape)))
    assert traced == {3}  # old: batches of 4 and 1, two compilations
    assert reported == [(3, (3, 3)), (3, (3, 2))]  # the filling's class is not reported
    together = classifier_class_models(classifier._replace(logits_fn=logits_fn), classes, key=jax.random.key(2),
                                       steps=3, batch_size=5)
    np.testing.assert_array_equal(batched.classes, classes)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(together)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classes=jnp.array([0, 5])), r"classes must be in \[0, 5\)"),
        (dict(classes=jnp.array([-1])), r"classes must be in \[0, 5\)"),
        (dict(classes=jnp.array([0.5])), "classes must be integer"),
        (dict(classes=jnp.zeros((2, 2), jnp.int32)), "classes must be an int scalar"),
        (dict(l2_weight=-0.1), "l2_weight"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(steps=2.5), "steps must be an integer >= 1"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(mode="deep-dream"), "mode must be one of"),
        (dict(objective="probability"), "objective must be one of"),
        (dict(regularizer=regs.jitter(1)), "regularizer is only used with mode='regularised'"),
        (dict(parametrization="fourier"), "paper mode optimises pixels"),
        (dict(optimizer=lambda g: g), "optimizer must be an optax GradientTransformation"),
        (dict(pixel_range=(1.0, 0.0)), "pixel_range"),
        (dict(image_shape=(8, 8)), "image_shape"),
    ],
)
def test_bad_input_raises_clear_errors(tiny_cnn, kwargs, match):
    logits_fn, params = tiny_cnn
    kwargs = {**TINY, "steps": 2, "classes": jnp.array([0]), **kwargs}
    classes = kwargs.pop("classes")
    with pytest.raises(ValueError, match=match):
        class_models(logits_fn, params, classes, key=jax.random.key(0), **kwargs)


def test_mode_defaults():
    paper, regularised = mode_defaults("paper"), mode_defaults("regularised")
    assert paper == (100, 0.05, 1e-3, "pixels")  # the measured defaults of docs/tuning/class_model.md
    assert regularised == (200, 0.01, 1e-3, "fourier")
    with pytest.raises(ValueError, match="mode must be one of"):
        mode_defaults("deep-dream")


# --- The command ----------------------------------------------------------------------------


class _TinyImageNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(4, (5, 5), strides=(4, 4))((x - 127.0) / 128.0))
        return nn.Dense(1000)(jnp.mean(x, axis=(1, 2)))


@pytest.fixture(scope="module")
def tiny_imagenet_classifier():
    from saliency_jax.models.imagenet import imagenet_class_names

    module = _TinyImageNet()
    params = module.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    return Classifier(module.apply, params, 224, imagenet_class_names(), pixel_mean=127.0, pixel_scale=128.0)


def test_command_writes_the_file_contract(tmp_path, capsys, tiny_imagenet_classifier):
    from saliency_jax import cli

    clf = tiny_imagenet_classifier
    argv = ["class-model", "kit fox", "1", "278", "n01440764", "--steps", "4", "--chunk", "2", "--out",
            str(tmp_path), "--no-progress", "--mode", "regularised"]
    assert cli.main(argv, classifier=clf) == 0
    assert sorted(os.listdir(tmp_path)) == [f"class_{c}.{e}" for c in (0, 1, 278) for e in ("json", "npy", "png")]
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("class_")]
    assert len(lines) == 3
    for line in lines:
        cid = int(line.split("\t")[0].split("_")[1])
        reported = float(line.split("score ")[1].split("\t")[0])
        raw = np.load(tmp_path / f"class_{cid}.npy")
        assert raw.shape == (224, 224, 3) and raw.dtype == np.float32
        assert raw.min() >= 0.0 and raw.max() <= 255.0
        png = np.asarray(Image.open(tmp_path / f"class_{cid}.png"))
        assert png.shape == (224, 224, 3) and png.dtype == np.uint8
        np.testing.assert_array_equal(png, np.round(raw).astype(np.uint8))
        # Feeding the saved raw image back reproduces the reported score.
        score = float(clf.logits_fn(clf.params, jnp.asarray(raw)[None])[0, cid])
        assert score == pytest.approx(reported, abs=2e-3)
    # --resume keeps what the same settings made, and redoes what other settings made
    before = os.stat(tmp_path / "class_1.npy").st_mtime_ns
    assert cli.main(argv + ["--resume"], classifier=clf) == 0
    assert os.stat(tmp_path / "class_1.npy").st_mtime_ns == before
    assert cli.main(argv[:-2] + ["--resume"], classifier=clf) == 0  # paper mode now
    assert os.stat(tmp_path / "class_1.npy").st_mtime_ns != before


def test_command_rejects_bad_arguments(tmp_path, capsys, tiny_imagenet_classifier):
    from saliency_jax import cli

    clf = tiny_imagenet_classifier
    assert cli.main(["class-model", "unicorn", "--out", str(tmp_path)], classifier=clf) == 2
    assert "no class named" in capsys.readouterr().err
    assert cli.main(["class-model", "1000", "--out", str(tmp_path)], classifier=clf) == 2
    assert "class id must be in [0, 1000)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["class-model", "1", "--steps", "0", "--out", str(tmp_path)], classifier=clf)
    assert "argument --steps" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["class-model", "1", "--mode", "dream", "--out", str(tmp_path)], classifier=clf)
    assert exit_.value.code == 2 and "argument --mode" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


# --- EfficientNet-Lite0, end to end -----------------------------------------------------------

# Five classes spread over ImageNet, none of them used to choose the defaults.
SPREAD_CLASSES = (3, 145, 309, 457, 779)
# 60 regularised steps leave each class image ahead of every other class by 8-20 logits, and by
# 7-19 after the shifts and rescales below (100 steps: 15-27 and 11-23), at 60% of the time.
STEPS = {"paper": 20, "regularised": 60}


@pytest.fixture(scope="module")
def lite0_class_models(efficientnet):
    """Both modes' class images for the spread classes, each one batch in one jitted run."""
    settings = classifier_settings(efficientnet)._asdict()
    out = {}
    for mode, steps in STEPS.items():
        run = jax.jit(functools.partial(class_models, efficientnet.logits_fn, steps=steps, mode=mode, **settings))
        out[mode] = jax.block_until_ready(run(efficientnet.params, jnp.asarray(SPREAD_CLASSES), key=jax.random.key(0)))
    return out


def _shifted_and_rescaled(images, seed=0):
    """Each image shifted by 8 pixels (random direction) and rescaled by 10% (random sign)."""
    rng = np.random.default_rng(seed)
    shifts = jnp.asarray(rng.choice([-8, 8], size=(len(images), 2)))
    factors = jnp.asarray(1.0 + 0.1 * rng.choice([-1.0, 1.0], size=len(images)), jnp.float32)

    def one(image, shift, factor):
        moved = regs.translate(image, shift[0], shift[1], max_shift=8)
        return regs.rescale(moved - 127.0, factor) + 127.0

    return jax.jit(jax.vmap(one))(images, shifts, factors)


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(STEPS))
def test_lite0_class_images_are_top1_for_their_class(efficientnet, lite0_class_models, mode):
    result = lite0_class_models[mode]
    classes = np.asarray(SPREAD_CLASSES)
    predicted = np.asarray(result.logits).argmax(-1)
    assert list(predicted) == list(classes), f"{mode}: top-1 {predicted} for classes {classes}"
    # The saved image reproduces the reported score.
    logits = jax.jit(efficientnet.logits_fn)(efficientnet.params, result.images)
    np.testing.assert_allclose(logits[np.arange(len(classes)), classes], result.scores, rtol=1e-3, atol=1e-3)
    # The target score rose steadily: the end beats the start, and the means of successive quarters rise.
    scores = np.asarray(result.history.scores)
    quarters = scores.reshape(4, -1, len(classes)).mean(axis=1)
    assert np.all(np.diff(quarters, axis=0) > 0)
    objectives = np.asarray(result.history.objectives)
    assert np.all(objectives[-1] > objectives[0])


@pytest.mark.slow
def test_lite0_regularised_images_survive_shift_and_rescale(efficientnet, lite0_class_models):
    result = lite0_class_models["regularised"]
    forward = jax.jit(efficientnet.logits_fn)
    for seed in range(2):
        moved = _shifted_and_rescaled(result.images, seed)
        predicted = np.asarray(forward(efficientnet.params, moved)).argmax(-1)
        assert list(predicted) == list(SPREAD_CLASSES), f"top-1 after shift and rescale (draw {seed}): {predicted}"
