"""The saliency-jax command and its file contract."""

import json
import os

import jax
import numpy as np
import pytest
from PIL import Image

from saliency_jax import cli
from saliency_jax.io import bundled_photo


def test_saliency_command_writes_the_file_contract(tmp_path, efficientnet):
    photo = bundled_photo("chelsea")
    Image.fromarray(photo).save(tmp_path / "cat.png")
    small = np.asarray(Image.fromarray(photo).resize((224, 224)))
    Image.fromarray(small).save(tmp_path / "cat224.png")
    out = tmp_path / "out"
    rc = cli.main(["saliency", str(tmp_path / "cat.png"), str(tmp_path / "cat224.png"), "bundled:coffee",
                   "--out", str(out), "--batch-size", "2"])
    assert rc == 0
    for stem in ("cat", "cat224", "coffee"):
        saliency = np.load(out / f"{stem}_saliency.npy")
        assert saliency.dtype == np.float32 and saliency.shape == (224, 224)
        assert np.isfinite(saliency).all() and saliency.min() >= 0 and saliency.max() > 0
        assert (out / f"{stem}_saliency.png").stat().st_size > 1000
    cat = json.loads((out / "cat.json").read_text())
    assert cat["class"] == 285 and cat["top5"][0][:2] == [285, "Egyptian cat"]
    assert 0.6 < cat["top5"][0][2] < 0.9 and len(cat["top5"]) == 5
    assert json.loads((out / "coffee.json").read_text())["class"] == 967
    # the image already at 224x224 is used as it is: its map is the library's map of those pixels
    import saliency_jax as sj

    expected = jax.jit(sj.saliency_map, static_argnums=0)(efficientnet.logits_fn, efficientnet.params, small[None].astype(np.float32))[0]
    written = np.load(out / "cat224_saliency.npy")
    # batch size changes float32 summation order, which can flip a few ReLU6 gates
    assert np.corrcoef(written.ravel(), np.asarray(expected).ravel())[0, 1] > 0.999
    np.testing.assert_allclose(written, expected, atol=1e-2 * float(expected.max()))
    assert not [f for f in os.listdir(out) if f.startswith(".tmp")]


def test_forced_class_rule_and_resume(tmp_path):
    out = tmp_path / "out"
    assert cli.main(["saliency", "bundled:coffee", "--class", "cup", "--rule", "guided", "--out", str(out)]) == 0
    assert json.loads((out / "coffee.json").read_text())["class"] == 968
    before = (out / "coffee_saliency.npy").stat().st_mtime_ns
    assert cli.main(["saliency", "bundled:coffee", "--out", str(out), "--resume"]) == 0
    assert (out / "coffee_saliency.npy").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    "argv, message",
    [
        (["saliency", "missing.jpg"], "no such file"),
        (["saliency", "bundled:coffee", "--class", "1000"], "class id must be in [0, 1000)"),
        (["saliency", "bundled:coffee", "--class", "no such thing"], "no class named"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, capsys, argv, message):
    assert cli.main(argv + ["--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_non_image_file_is_refused(tmp_path, capsys):
    (tmp_path / "notes.png").write_text("hello")
    assert cli.main(["saliency", str(tmp_path / "notes.png"), "--out", str(tmp_path / "o")]) == 2
    assert "not a readable image" in capsys.readouterr().err


def test_localise_command_writes_the_file_contract(tmp_path):
    out = tmp_path / "loc"
    assert cli.main(["localise", "bundled:chelsea", "--out", str(out)]) == 0
    mask = np.asarray(Image.open(out / "chelsea_mask.png"))
    assert mask.shape == (300, 451) and set(np.unique(mask)) <= {0, 255} and (mask == 255).any()
    box = json.loads((out / "chelsea_box.json").read_text())
    assert box["class"] == 285
    x0, y0, x1, y1 = box["box"]
    assert 0 <= x0 < x1 <= 451 and 0 <= y0 < y1 <= 300
    ys, xs = np.nonzero(mask)  # the box is the mask's (x1, y1 exclusive)
    assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == [x0, y0, x1, y1]
    assert (out / "chelsea_localisation.png").stat().st_size > 1000


def test_localise_rejects_bad_settings(tmp_path, capsys):
    assert cli.main(["localise", "bundled:chelsea", "--pairwise-weight", "-1", "--out", str(tmp_path)]) == 2
    assert "pairwise_weight" in capsys.readouterr().err
