"""The saliency-jax command: file contracts, shared options, records, resume and refusals.

Most tests run the commands on a tiny stand-in classifier with ImageNet's class
names (its map is the redness of the image), so they test the command, not the
model; the end-to-end tests with EfficientNet-Lite0 are marked slow.
"""

import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from saliency_jax import cli, io
from saliency_jax.types import Classifier

SIZE = 48


def _red_logits(params, images):
    """Every class scores the mean squared redness, times its weight: the map is the redness."""
    redness = jax.nn.relu(images[..., 0] - images[..., 1]) / 255.0
    energy = jnp.mean(redness**2, axis=(1, 2))
    return energy[:, None] * params["w"][None, :] + params["b"][None, :]


@pytest.fixture(scope="module")
def red_model():
    from saliency_jax.models.imagenet import imagenet_class_names

    w = jnp.linspace(0.5, 1.0, 1000).at[7].set(3.0)
    b = jnp.zeros(1000).at[7].set(1.0)
    return Classifier(_red_logits, {"w": w, "b": b}, SIZE, imagenet_class_names(), 127.0, 128.0)


def _write_photo(path, height, width, box):
    """A green noisy photo with a red rectangle at ``box`` (x0, y0, x1, y1, exclusive)."""
    rng = np.random.default_rng(height * width)
    image = np.clip(rng.normal(0, 12, (height, width, 3)) + [60, 150, 70], 0, 255)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = np.clip(rng.normal(0, 12, (y1 - y0, x1 - x0, 3)) + [210, 50, 40], 0, 255)
    Image.fromarray(image.astype(np.uint8)).save(path)


def _run(argv, model, capsys=None):
    if argv[0] == "localise" and "--seed-map" not in argv:
        argv = argv + ["--seed-map", "paper"]  # the stand-in model has no feature layer for Grad-CAM
    return cli.main(argv + ["--no-progress"], classifier=model)


# --- saliency ---------------------------------------------------------------------------------


def test_saliency_writes_the_file_contract_and_its_record(tmp_path, red_model):
    _write_photo(tmp_path / "a.png", 60, 80, (10, 10, 40, 30))
    out = tmp_path / "out"
    assert _run(["saliency", str(tmp_path / "a.png"), "--out", str(out)], red_model) == 0
    saliency = np.load(out / "a_saliency.npy")
    assert saliency.dtype == np.float32 and saliency.shape == (SIZE, SIZE)
    work = io.resize_image(io.load_image(tmp_path / "a.png"), SIZE)
    redness = np.maximum(work[..., 0] - work[..., 1], 0)
    # d/dI_R of w7 * mean(relu(R - G)^2) / 255^2 is 2 w7 relu(R - G) / (N 255^2), and the same size on G
    np.testing.assert_allclose(saliency, 2 * 3.0 * redness / (SIZE * SIZE * 255.0**2), rtol=1e-4, atol=1e-12)
    record = json.loads((out / "a.json").read_text())
    assert record["class"] == 7 and record["top5"][0][:2] == [7, red_model.class_names[7]]
    assert record["method"] == "gradient" and record["command"] == "saliency"
    assert record["settings"] == {"model": "lite0", "method": "gradient", "class": None, "rule": "gradient"}
    assert record["input"] == str(tmp_path / "a.png")
    assert not [f for f in os.listdir(out) if f.startswith(".")]


@pytest.mark.parametrize("method, extra", [
    ("gradient-x-input", []), ("smoothgrad", ["--samples", "4"]), ("integrated-gradients", ["--ig-steps", "8"]),
    ("blur-ig", ["--ig-steps", "4"]), ("occlusion", ["--patch", "8", "--stride", "4"]),
    ("rise", ["--samples", "64"]), ("vargrad", ["--samples", "4"]), ("flip-shift", []),
    ("gradient-shap", ["--samples", "8"]), ("guided-ig", ["--ig-steps", "4"]),
    ("kernel-shap", ["--samples", "300"]),
])
def test_every_method_writes_a_non_negative_map_that_finds_the_red_patch(tmp_path, red_model, method, extra):
    _write_photo(tmp_path / "a.png", SIZE, SIZE, (6, 8, 22, 30))
    out = tmp_path / "out"
    assert _run(["saliency", str(tmp_path / "a.png"), "--method", method, *extra, "--out", str(out)], red_model) == 0
    saliency = np.load(out / "a_saliency.npy")
    assert saliency.dtype == np.float32 and saliency.shape == (SIZE, SIZE)
    assert np.isfinite(saliency).all() and saliency.min() >= 0 and saliency.max() > 0
    record = json.loads((out / "a.json").read_text())
    assert record["method"] == method and record["settings"]["method"] == method
    if method != "rise":  # RISE's estimate is noisy at 64 masks; its contract is what is checked here
        inside = np.zeros((SIZE, SIZE), bool)
        inside[8:30, 6:22] = True
        assert saliency[inside].mean() > 3 * saliency[~inside].mean(), method


@pytest.mark.parametrize("method", ["gradient", "gradient-x-input"])
def test_a_gradient_map_and_its_top5_come_from_one_forward_pass(tmp_path, red_model, method):
    from saliency_jax.attribution import METHODS, attribution_map

    traces = []

    def counting(params, images):
        traces.append(images.shape)
        return _red_logits(params, images)

    _write_photo(tmp_path / "a.png", 60, 80, (10, 10, 40, 30))
    out = tmp_path / "out"
    model = red_model._replace(logits_fn=counting)
    assert _run(["saliency", str(tmp_path / "a.png"), "--method", method, "--out", str(out)], model) == 0
    assert len(traces) == 1, traces  # the map's pass gives the top 5 too
    # The same map and record as the method itself, given the top class of a separate forward pass.
    work = jnp.asarray(io.resize_image(io.load_image(tmp_path / "a.png"), SIZE)[None], jnp.float32)
    logits = _red_logits(red_model.params, work)[0]
    top5 = np.argsort(-np.asarray(logits), kind="stable")[:5]
    expected = attribution_map(METHODS[method].fn(_red_logits, red_model.params, work, jnp.asarray(top5[:1])))[0]
    np.testing.assert_allclose(np.load(out / "a_saliency.npy"), np.maximum(expected, 0), rtol=1e-5, atol=1e-12)
    record = json.loads((out / "a.json").read_text())
    assert [row[0] for row in record["top5"]] == top5.tolist() and record["class"] == top5[0]
    probabilities = np.asarray(jax.nn.softmax(logits))[top5]
    np.testing.assert_allclose([row[2] for row in record["top5"]], probabilities, rtol=1e-4, atol=1e-6)


def test_method_options_are_checked(tmp_path, capsys, red_model):
    cases = [(["--method", "gradcam"], "classifier has no feature_layer"),
             (["--method", "occlusion", "--rule", "guided"], "--rule: occlusion has no ReLU backward rule"),
             (["--method", "guided-gradcam", "--rule", "deconvnet"], "--rule: guided-gradcam always back-propagates"),
             (["--method", "guided-gradcam"], "classifier has no feature_layer"),
             (["--method", "integrated-gradients", "--ig-steps", "1"], "--ig-steps: integrated gradients need"),
             (["--method", "occlusion", "--patch", "49"], "--patch/--stride: at most the input size 48"),
             (["--method", "gradient", "--layer", "conv"], "--layer: gradient works on the input pixels"),
             # an option the method would ignore is refused, not dropped from the record
             (["--method", "gradient", "--patch", "4"], "--patch: gradient does not take it"),
             (["--method", "integrated-gradients", "--stride", "4"], "--stride: integrated-gradients does not take"),
             (["--method", "occlusion", "--samples", "8"], "--samples: occlusion does not take it"),
             (["--method", "smoothgrad", "--ig-steps", "8"], "--ig-steps: smoothgrad does not take it"),
             (["--method", "gradcam", "--samples", "8"], "--samples: gradcam does not take it")]
    for extra, message in cases:
        assert _run(["saliency", "bundled:coffee", *extra, "--out", str(tmp_path)], red_model) == 2
        assert message in capsys.readouterr().err, extra


@pytest.mark.parametrize("given, expected", [("281", 281), ("n02123045", 281), ("tabby", 281), ("+281", 281)])
def test_classes_by_id_wordnet_id_and_name(tmp_path, red_model, given, expected):
    assert _run(["saliency", "bundled:coffee", "--class", given, "--out", str(tmp_path)], red_model) == 0
    assert json.loads((tmp_path / "coffee.json").read_text())["class"] == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["saliency", "missing.jpg"], "no such file"),
        (["saliency", "bundled:coffee", "--class", "1000"], "--class: class id must be in [0, 1000)"),
        (["saliency", "bundled:coffee", "--class", "²"], "--class: no class named '²'"),
        (["saliency", "bundled:coffee", "--class", "no such thing"], "--class: no class named"),
        (["class-model", "unicorn"], "CLASS: no class named"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(tmp_path, capsys, red_model, argv, message):
    assert _run(argv + ["--out", str(tmp_path / "o")], red_model) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not os.path.exists(tmp_path / "o") or not os.listdir(tmp_path / "o")


def test_numbers_must_be_plain_integers(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["class-model", "1", "--steps", "²"])
    assert exit_.value.code == 2 and "argument --steps: must be an integer" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["saliency", "x.png", "--batch-size", "0"])
    assert exit_.value.code == 2 and "argument --batch-size" in capsys.readouterr().err


def test_numbers_of_thousands_of_digits_are_refused_in_one_short_line(tmp_path, capsys, red_model):
    huge = "7" * 5000
    for argv, message in [(["saliency", "x.png", "--seed", huge], "argument --seed: must be an integer of at most 30"),
                          (["class-model", "1", "--steps", huge], "argument --steps: must be an integer of at most")]:
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and "(5,000 characters)" in err and len(err) < 300, err
    # a class id of 5,000 digits is out of range, as 1000 is (not Python's limit on converting long digit strings)
    assert _run(["saliency", "bundled:coffee", "--class", huge, "--out", str(tmp_path / "o")], red_model) == 2
    err = capsys.readouterr().err
    assert "--class: class id must be in [0, 1000), got 7777" in err and "(5,000 digits)" in err and len(err) < 300


def test_too_many_steps_are_refused_before_any_work(tmp_path, capsys, red_model):
    assert _run(["class-model", "1", "--steps", "99999999999999999999", "--out", str(tmp_path)], red_model) == 2
    assert "--steps: at most 100000 steps" in capsys.readouterr().err


def test_an_unwritable_out_is_refused_before_loading_the_model(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    for out, message in [(tmp_path / "file", "is a file, not a folder"),
                         (tmp_path / "file" / "below", "lies below the file")]:
        # no classifier given: the model would load after this check, so this is fast
        assert cli.main(["saliency", "bundled:coffee", "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--out" in err and message in err and len(err.strip().splitlines()) == 1


def test_a_read_only_folder_is_refused(tmp_path, capsys, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # as a read-only or immutable folder answers
    assert cli.main(["saliency", "bundled:coffee", "--out", str(tmp_path / "ro")]) == 2
    assert "--out: cannot write to" in capsys.readouterr().err


def test_resume_recomputes_what_other_settings_made(tmp_path, red_model):
    out = str(tmp_path)
    assert _run(["saliency", "bundled:coffee", "--out", out], red_model) == 0
    stamp = lambda: os.stat(tmp_path / "coffee_saliency.npy").st_mtime_ns  # noqa: E731
    first = stamp()
    assert _run(["saliency", "bundled:coffee", "--out", out, "--resume"], red_model) == 0
    assert stamp() == first  # same settings: kept
    assert _run(["saliency", "bundled:coffee", "--class", "281", "--rule", "guided", "--out", out, "--resume"],
                red_model) == 0
    assert stamp() != first  # other class and rule: recomputed
    record = json.loads((tmp_path / "coffee.json").read_text())
    assert record["class"] == 281 and record["settings"]["rule"] == "guided"


def test_one_command_does_not_overwrite_anothers_files(tmp_path, capsys, red_model):
    _write_photo(tmp_path / "good.png", 40, 40, (10, 10, 30, 30))
    _write_photo(tmp_path / "good_box.png", 40, 40, (10, 10, 30, 30))
    out = str(tmp_path / "out")
    assert _run(["localise", str(tmp_path / "good.png"), "--out", out], red_model) == 0
    before = (tmp_path / "out" / "good_box.json").read_text()
    assert _run(["saliency", str(tmp_path / "good_box.png"), "--out", out], red_model) == 2
    assert "good_box.json" in capsys.readouterr().err
    assert (tmp_path / "out" / "good_box.json").read_text() == before
    assert not (tmp_path / "out" / "good_box_saliency.npy").exists()
    # and a file of the same command made from another input
    os.makedirs(tmp_path / "other")
    _write_photo(tmp_path / "other" / "good.png", 40, 40, (5, 5, 20, 20))
    assert _run(["localise", str(tmp_path / "other" / "good.png"), "--out", out], red_model) == 2
    assert "belongs to `localise`" in capsys.readouterr().err


def test_two_inputs_with_one_name_are_refused(tmp_path, capsys, red_model):
    _write_photo(tmp_path / "a.png", 20, 20, (5, 5, 15, 15))
    os.makedirs(tmp_path / "b")
    _write_photo(tmp_path / "b" / "a.png", 20, 20, (5, 5, 15, 15))
    assert _run(["localise", str(tmp_path / "a.png"), str(tmp_path / "b" / "a.png"), "--out", str(tmp_path / "o")],
                red_model) == 2
    assert "share the name 'a'" in capsys.readouterr().err


def test_dead_writers_temporaries_are_removed_live_ones_kept(tmp_path, red_model):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host, pid = io._host(), int(dead.stdout)
    stale = tmp_path / f".saliency-jax-tmp-{host}-{pid}-abc_1234.npy"
    live = tmp_path / f".saliency-jax-tmp-{host}-{os.getpid()}-abc_1234.npy"
    other_host = tmp_path / f".saliency-jax-tmp-elsewhere-{pid}-abc_1234.npy"
    # Not this library's temporaries: another tool's marker, a name mkstemp does not make.
    others = [tmp_path / f".tmp-{host}-{pid}-abc_1234.npy", tmp_path / f".saliency-jax-tmp-{host}-{pid}-a.npy"]
    for f in (stale, live, other_host, *others):
        f.write_bytes(b"partial")
    assert _run(["saliency", "bundled:coffee", "--out", str(tmp_path)], red_model) == 0
    assert not stale.exists() and live.exists() and other_host.exists()
    assert all(f.exists() for f in others)


def test_a_temporary_of_the_library_is_its_name(tmp_path):
    with io.atomic_path(tmp_path / "map.npy") as tmp:
        assert io._temporary_owner(os.path.basename(tmp)) == (io._host(), os.getpid())
    assert io._temporary_owner("map.npy") is None and io._temporary_owner(".saliency-jax-tmp-h-x-abcdefgh") is None


def test_only_plain_files_that_are_not_inputs_are_removed_as_temporaries(tmp_path, capsys, red_model):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    name = f".saliency-jax-tmp-{io._host()}-{int(dead.stdout)}-abcd1234"
    folder, given = tmp_path / (name + ".d"), tmp_path / (name + ".png")
    os.makedirs(folder)
    _write_photo(given, 20, 20, (5, 5, 15, 15))
    # A folder named like a temporary is left alone, and so is an input of the run.
    assert _run(["saliency", str(given), "--out", str(tmp_path)], red_model) == 0
    assert folder.is_dir() and given.exists()


def test_ctrl_c_is_one_line_and_status_130(tmp_path, capsys, red_model, monkeypatch):
    from saliency_jax.cli import saliency as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "load_image", interrupted)
    assert _run(["saliency", "bundled:coffee", "--out", str(tmp_path)], red_model) == 130
    assert capsys.readouterr().err.strip() == f"saliency-jax {command.COMMAND}: interrupted"
    assert not os.listdir(tmp_path)


# --- localise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["saliency", "localise"])
def test_every_batch_has_one_size_and_the_padding_changes_no_output(tmp_path, red_model, command):
    # Seven images at --batch-size 5 go as two batches of 4 (the last padded), not 5 and 2, so the
    # model is traced, and compiled, for one batch size; each output is the one a run of its own writes.
    boxes = [(4 + 3 * i, 6, 30, 28 + i) for i in range(7)]
    names = []
    for i, box in enumerate(boxes):
        _write_photo(tmp_path / f"p{i}.png", 40 + 2 * i, 44, box)
        names.append(str(tmp_path / f"p{i}.png"))
    traced = []

    def recording(params, images):
        traced.append(images.shape[0])  # runs while tracing
        return _red_logits(params, images)

    model = red_model._replace(logits_fn=recording)
    assert _run([command, *names, "--batch-size", "5", "--out", str(tmp_path / "all")], model) == 0
    assert 4 in traced and set(traced) <= {4, 1}, traced  # 1: a one-image probe of the output shape
    suffix = "_saliency.npy" if command == "saliency" else "_mask.png"
    for i in (0, 6):  # the first batch's first image, and the last batch's last (before the padding)
        alone = tmp_path / f"alone{i}"
        assert _run([command, names[i], "--out", str(alone)], red_model) == 0
        together = tmp_path / "all" / f"p{i}{suffix}"
        if command == "saliency":
            np.testing.assert_allclose(np.load(together), np.load(alone / f"p{i}{suffix}"), rtol=1e-6, atol=1e-12)
        else:
            np.testing.assert_array_equal(np.asarray(Image.open(together)), np.asarray(Image.open(alone / f"p{i}{suffix}")))
            assert json.loads((tmp_path / "all" / f"p{i}_box.json").read_text())["box"] == \
                json.loads((alone / f"p{i}_box.json").read_text())["box"]


def test_localise_writes_mask_box_and_figure_in_the_inputs_pixels(tmp_path, red_model):
    boxes = {"wide": (30, 20, 90, 60), "small": (8, 10, 30, 40)}
    _write_photo(tmp_path / "wide.png", 80, 120, boxes["wide"])
    _write_photo(tmp_path / "small.jpg", 48, 40, boxes["small"])
    out = tmp_path / "out"
    assert _run(["localise", str(tmp_path / "wide.png"), str(tmp_path / "small.jpg"), "--out", str(out)],
                red_model) == 0
    for stem, (height, width) in (("wide", (80, 120)), ("small", (48, 40))):
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        assert mask.shape == (height, width) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        record = json.loads((out / f"{stem}_box.json").read_text())
        assert record["class"] == 7 and record["method"] == "paper" and record["from_seeds"] is False
        x0, y0, x1, y1 = record["box"]
        ys, xs = np.nonzero(mask)  # the box is the mask's, x1/y1 exclusive, in the input's pixels
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x0, y0, x1, y1]
        assert np.abs(np.array(record["box"]) - np.array(boxes[stem])).max() <= max(height, width) / SIZE * 2 + 1
        figure = Image.open(out / f"{stem}_localisation.png")
        assert figure.size[0] > 2 * figure.size[1]  # five panels in a row
    assert not [f for f in os.listdir(out) if f.startswith(".")]


def test_an_image_that_cannot_be_localised_is_named_and_the_others_written(tmp_path, capsys, red_model):
    for i in range(4):
        _write_photo(tmp_path / f"ok{i}.png", 40, 40, (10 + i, 10, 30, 30))
    Image.fromarray(np.full((1, 1, 3), 200, np.uint8)).save(tmp_path / "dot.png")
    names = [str(tmp_path / f"ok{i}.png") for i in range(2)] + [str(tmp_path / "dot.png")] + \
        [str(tmp_path / f"ok{i}.png") for i in range(2, 4)]
    assert _run(["localise", *names, "--out", str(tmp_path / "out")], red_model) == 1
    err = capsys.readouterr().err
    assert "dot.png" in err and "Traceback" not in err
    assert sorted(f for f in os.listdir(tmp_path / "out") if f.endswith("_box.json")) == \
        [f"ok{i}_box.json" for i in range(4)]


def test_localise_rejects_bad_settings(tmp_path, capsys, red_model):
    assert _run(["localise", "bundled:chelsea", "--pairwise-weight", "-1", "--out", str(tmp_path)], red_model) == 2
    assert "pairwise_weight" in capsys.readouterr().err


# --- the embedded model, end to end ------------------------------------------------------------


@pytest.mark.slow
def test_saliency_on_the_embedded_model(tmp_path, efficientnet):
    import saliency_jax as sj

    photo = io.bundled_photo("chelsea")
    Image.fromarray(photo).save(tmp_path / "cat.png")
    small = np.asarray(Image.fromarray(photo).resize((224, 224)))
    Image.fromarray(small).save(tmp_path / "cat224.png")
    out = tmp_path / "out"
    rc = cli.main(["saliency", str(tmp_path / "cat.png"), str(tmp_path / "cat224.png"), "bundled:coffee",
                   "--out", str(out), "--batch-size", "2", "--no-progress"])
    assert rc == 0
    cat = json.loads((out / "cat.json").read_text())
    assert cat["class"] == 285 and cat["top5"][0][:2] == [285, "Egyptian cat"]
    assert 0.6 < cat["top5"][0][2] < 0.9 and len(cat["top5"]) == 5
    assert json.loads((out / "coffee.json").read_text())["class"] == 967
    expected = jax.jit(sj.saliency_map, static_argnums=0)(efficientnet.logits_fn, efficientnet.params,
                                                          small[None].astype(np.float32))[0]
    written = np.load(out / "cat224_saliency.npy")
    assert written.dtype == np.float32 and written.shape == (224, 224)
    assert np.corrcoef(written.ravel(), np.asarray(expected).ravel())[0, 1] > 0.999
    np.testing.assert_allclose(written, expected, atol=1e-2 * float(expected.max()))


@pytest.mark.slow
def test_gradcam_on_the_embedded_model_is_the_resized_layer_map(tmp_path, efficientnet):
    from saliency_jax.attribution import attribution_map, gradcam

    out = tmp_path / "out"
    assert cli.main(["saliency", "bundled:chelsea", "--method", "gradcam", "--out", str(out), "--no-progress"]) == 0
    written = np.load(out / "chelsea_saliency.npy")
    image = io.resize_image(io.bundled_photo("chelsea"), 224)[None]
    cam = jax.jit(functools.partial(gradcam, efficientnet.logits_fn, layer=efficientnet.feature_layer))(
        efficientnet.params, image, 285)
    assert cam.shape == (1, 7, 7)
    expected = jax.image.resize(cam, (1, 224, 224), "bilinear")[0]
    np.testing.assert_allclose(written, expected, rtol=1e-3, atol=1e-4 * float(expected.max()))
    np.testing.assert_allclose(attribution_map(cam, size=224)[0], expected, rtol=1e-5, atol=1e-6)
    record = json.loads((out / "chelsea.json").read_text())
    assert record["class"] == 285 and record["settings"]["layer"] == efficientnet.feature_layer


@pytest.mark.slow
def test_guided_gradcam_on_the_embedded_model(tmp_path, efficientnet, recwarn):
    """The guided rule reaches Lite0's rectifiers (no warning), and the command writes the method's map."""
    from saliency_jax.attribution import attribution_map, gradcam, gradient, guided_gradcam

    out = tmp_path / "out"
    argv = ["saliency", "bundled:chelsea", "--method", "guided-gradcam", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    written = np.load(out / "chelsea_saliency.npy")
    image = jnp.asarray(io.resize_image(io.bundled_photo("chelsea"), 224)[None], jnp.float32)
    layer = efficientnet.feature_layer

    @jax.jit
    def maps(params, image):
        guided = guided_gradcam(efficientnet.logits_fn, params, image, 285, layer=layer)
        cam = jax.image.resize(gradcam(efficientnet.logits_fn, params, image, 285, layer=layer), (1, 224, 224),
                               "bilinear")
        return guided, gradient(efficientnet.logits_fn, params, image, 285) * cam[..., None]

    guided, plain = maps(efficientnet.params, image)
    assert not [w for w in recwarn if "rule" in str(w.message)]
    expected = attribution_map(guided)[0]
    np.testing.assert_allclose(written, expected, rtol=1e-3, atol=1e-4 * float(expected.max()))
    assert float(expected.max()) > 0
    # Guided back-propagation is not the plain gradient on Lite0: the rule was applied.
    assert float(jnp.abs(guided - plain).max()) > 0.1 * float(jnp.abs(plain).max())
    assert json.loads((out / "chelsea.json").read_text())["class"] == 285


@pytest.mark.slow
def test_localise_on_the_embedded_model(tmp_path):
    out = tmp_path / "loc"
    assert cli.main(["localise", "bundled:chelsea", "--out", str(out), "--no-progress"]) == 0
    mask = np.asarray(Image.open(out / "chelsea_mask.png"))
    assert mask.shape == (300, 451) and set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
    box = json.loads((out / "chelsea_box.json").read_text())
    from saliency_jax.evaluation.localisation_variants import DEFAULT_VARIANT

    assert box["class"] == 285 and box["method"] == DEFAULT_VARIANT
    x0, y0, x1, y1 = box["box"]
    ys, xs = np.nonzero(mask)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x0, y0, x1, y1]


def test_a_decompression_bomb_is_refused_by_name_before_the_model_loads(tmp_path, capsys):
    from PIL import Image as PILImage

    PILImage.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / "big.png")
    # no classifier given: a refusal after the model loaded would take seconds and print more
    assert cli.main(["saliency", str(tmp_path / "big.png"), "--max-pixels", "1000", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "big.png" in err and "2000 pixels, more than the limit of 1000" in err and "Traceback" not in err


def test_an_animated_gif_warns_in_one_line_and_uses_its_first_frame(tmp_path, capsys, red_model):
    from PIL import Image as PILImage

    frames = [PILImage.fromarray(np.full((30, 30, 3), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    assert _run(["saliency", str(tmp_path / "anim.gif"), "--out", str(tmp_path / "o")], red_model) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warning == [f"saliency-jax: warning: image: {str(tmp_path / 'anim.gif')!r} has 3 frames; reading the first only"]


def test_help_documents_every_seed_map_and_method(capsys):
    from saliency_jax.attribution import METHODS
    from saliency_jax.evaluation.localisation_variants import DEFAULT_VARIANT, VARIANTS

    with pytest.raises(SystemExit):
        cli.main(["localise", "--help"])
    text = capsys.readouterr().out
    for name, variant in VARIANTS.items():
        assert f"  {name}: {variant.description}" in text
    assert f"default:{DEFAULT_VARIANT}," in "".join(text.split())
    with pytest.raises(SystemExit):
        cli.main(["saliency", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in METHODS:
        assert f"{name} = " in text, name


@pytest.mark.parametrize("module, usage", [("saliency_jax.cli", "usage: saliency-jax [-h]"),
                                           ("saliency_jax.cli.saliency", "usage: saliency-jax saliency"),
                                           ("saliency_jax.cli.localise", "usage: saliency-jax localise"),
                                           ("saliency_jax.cli.class_model", "usage: saliency-jax class-model")])
def test_python_dash_m_runs_the_command(module, usage):
    run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.startswith(usage), (run.stdout[:200], run.stderr[-500:])
    # an error is the command's one line and status, not a silent exit 0
    run = subprocess.run([sys.executable, "-m", module, "--nonsense"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.startswith("saliency-jax") and "error: " in run.stderr, run.stderr
