"""The long experiment runs refuse an output path they could not write, and a maps cache that is not one,
before any model work: one argparse line naming the option, exit status 2."""

import errno
import os
import sys
import types

import numpy as np
import pytest


def _reached(*args, **kwargs):
    raise AssertionError("the script went on to its work instead of refusing its arguments")


@pytest.fixture
def no_model(monkeypatch):
    """Loading the embedded model, or making the scenes, fails: a refusal must come before either."""
    import saliency_jax.evaluation.benchmark
    import saliency_jax.models
    import saliency_jax.models.efficientnet_lite

    monkeypatch.setattr(saliency_jax.models.efficientnet_lite, "load_efficientnet_lite0", _reached)
    monkeypatch.setattr(saliency_jax.models, "load_efficientnet_lite0", _reached)
    monkeypatch.setattr(saliency_jax.evaluation.benchmark, "make_scenes", _reached)


@pytest.fixture
def reproduce(experiment, monkeypatch):
    """``reproduce_small`` with its dataset and training replaced by :func:`_reached`."""
    module = experiment("reproduce_small")
    monkeypatch.setattr(module, "build_dataset", _reached)
    monkeypatch.setattr(module, "train_and_evaluate", _reached)
    return module


@pytest.fixture
def eval_attribution(experiment, no_model):
    return experiment("eval_attribution")


def refused(main, argv, capsys, option) -> str:
    """The one-line argparse error of ``main(argv)`` (exit status 2), which names ``option``."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.split(": error: ", 1)[1].startswith(f"argument {option}: "), line
    return line


def unwritable(module, monkeypatch, *folders):
    """Writing a file in any of ``folders`` (all, if none given) fails, as on a read-only file system.

    Permission bits say nothing to root (the tests may run as root), so the scripts' probe (in their
    shared ``arguments`` module) is failed instead.
    """
    import tempfile

    module = sys.modules["arguments"]

    folders = {os.path.abspath(f) for f in folders}

    def mkstemp(*args, dir=None, **kwargs):
        if not folders or os.path.abspath(dir) in folders:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return tempfile.mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(module, "tempfile", types.SimpleNamespace(mkstemp=mkstemp))


# ----------------------------------------------------------------------------- reproduce_small


@pytest.mark.parametrize("argv, option, words", [
    (["--out", "{file}"], "--out", "is a file"),
    (["--out", "{file}/x"], "--out", "lies below a file"),
    (["--out", "{tmp}/out", "--data-dir", "{file}"], "--data-dir", "is a file"),
    (["--out", "{tmp}/out", "--data-dir", "{file}/tfds"], "--data-dir", "lies below a file"),
    (["--out", ""], "--out", "empty"),
])
def test_reproduce_small_refuses_a_folder_it_cannot_make(reproduce, tmp_path, capsys, argv, option, words):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    argv = [a.format(file=afile, tmp=tmp_path) for a in argv]
    line = refused(reproduce.main, argv + ["--no-progress"], capsys, option)
    assert words in line
    assert not (tmp_path / "out").exists()  # nothing made
    assert afile.read_text() == "not a folder"


def test_reproduce_small_refuses_a_folder_it_cannot_write(reproduce, monkeypatch, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    unwritable(reproduce, monkeypatch, tmp_path / "out")
    line = refused(reproduce.main, ["--out", str(tmp_path / "out")], capsys, "--out")
    assert "cannot write in" in line and "Read-only file system" in line
    unwritable(reproduce, monkeypatch, tmp_path)  # --data-dir would be made in it
    line = refused(reproduce.main, ["--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data" / "tfds")],
                   capsys, "--data-dir")
    assert "cannot be created" in line
    assert not (tmp_path / "data").exists()


def test_reproduce_small_default_data_dir_is_checked_as_part_of_out(reproduce, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tfds").write_text("")
    line = refused(reproduce.main, ["--out", str(tmp_path / "out")], capsys, "--out")
    assert "tfds" in line and "is a file" in line


def test_reproduce_small_reads_a_prepared_dataset_from_a_read_only_data_dir(reproduce, monkeypatch, tmp_path):
    # TFDS only reads a dataset it finds prepared: a read-only --data-dir holding it is fine, one without it is not.
    config = reproduce.load_config()
    data = tmp_path / "data"
    data.mkdir()
    unwritable(reproduce, monkeypatch, data)
    with pytest.raises(ValueError, match="argument --data-dir: cannot write in"):
        reproduce.check_folders(config, str(tmp_path / "out"), str(data))
    prepared = data / reproduce.ClutteredObjects.name / reproduce._dataset_name(config)
    (prepared / str(reproduce.ClutteredObjects.VERSION)).mkdir(parents=True)
    reproduce.check_folders(config, str(tmp_path / "out"), str(data))


def test_reproduce_small_run_checks_its_folders_first(reproduce, tmp_path):
    (tmp_path / "afile").write_text("")
    config = reproduce.load_config()
    with pytest.raises(ValueError, match="argument --data-dir: .* is a file"):
        reproduce.run(config, str(tmp_path / "out"), data_dir=str(tmp_path / "afile"), progress=False)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- eval_attribution


def _argv(tmp_path, *extra):
    """Every output under ``tmp_path`` (so that the defaults in the working folder are not looked at)."""
    return ["--out", str(tmp_path / "eval.json"), "--figure-out", str(tmp_path / "figure.png"),
            "--maps-cache", str(tmp_path / "maps.npz"), *extra]


@pytest.mark.parametrize("option, path, words", [
    ("--out", "folder.json", "is a folder"),
    ("--out", "afile/eval.json", "lies below"),
    ("--maps-cache", "folder.json", "is a folder"),
    ("--maps-cache", "afile/maps.npz", "lies below"),
    ("--figure-out", "folder.json", "is a folder"),
    ("--figure-out", "afile/figure.png", "lies below"),
    ("--figure-out", "figure.xyz", "no figure format"),
    ("--figure-out", "", "empty"),
])
def test_eval_attribution_refuses_an_output_it_cannot_write(eval_attribution, tmp_path, capsys, option, path, words):
    (tmp_path / "folder.json").mkdir()
    (tmp_path / "afile").write_text("")
    argv = _argv(tmp_path, option, str(tmp_path / path) if path else "")
    line = refused(eval_attribution.main, argv, capsys, option)
    assert words in line
    assert sorted(os.listdir(tmp_path)) == ["afile", "folder.json"]  # nothing written


def test_eval_attribution_refuses_a_folder_where_the_table_goes(eval_attribution, tmp_path, capsys):
    (tmp_path / "eval.md").mkdir()  # the Markdown table is written beside --out
    line = refused(eval_attribution.main, _argv(tmp_path), capsys, "--out")
    assert "eval.md" in line and "is a folder" in line


def test_eval_attribution_refuses_a_folder_it_cannot_write(eval_attribution, monkeypatch, tmp_path, capsys):
    unwritable(eval_attribution, monkeypatch, tmp_path / "results")
    (tmp_path / "results").mkdir()
    argv = _argv(tmp_path, "--out", str(tmp_path / "results" / "eval.json"))
    line = refused(eval_attribution.main, argv, capsys, "--out")
    assert "cannot write in" in line and "Read-only file system" in line


def test_eval_attribution_checks_only_the_outputs_it_writes(eval_attribution, tmp_path):
    (tmp_path / "folder").mkdir()
    # No figure: --figure-out is not written, so not checked; no cache: --maps-cache '' names none.
    config, args = eval_attribution.parse_args(_argv(tmp_path, "--no-figure", "--figure-out", str(tmp_path / "folder"),
                                                     "--maps-cache", ""))
    assert not config.figure and args.maps_cache == ""
    # The figure alone: neither --out nor the cache is written.
    eval_attribution.parse_args(_argv(tmp_path, "--figure-only", "--out", str(tmp_path / "folder" / "x.json"),
                                      "--maps-cache", str(tmp_path / "folder")))
    assert sorted(os.listdir(tmp_path)) == ["folder"]  # nothing written by the checks


class _Unpickled:
    """An object whose unpickling fails the test: the cache check must never unpickle."""

    def __reduce__(self):
        return _reached, ()


def _not_caches(tmp_path):
    """Files at which a maps cache might be looked for, none of them one."""
    random = tmp_path / "random.npz"
    random.write_bytes(np.random.default_rng(0).bytes(4096))
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    array = tmp_path / "array.npz"
    with open(array, "wb") as f:
        np.save(f, np.zeros(3))
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, tag=np.array([_Unpickled()], dtype=object), names=np.array(["gradient"]), maps=np.zeros(1))
    untagged = tmp_path / "untagged.npz"
    np.savez(untagged, maps=np.zeros((1, 2, 4, 4)))
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, tag=np.asarray("x"), names=np.array(["gradient"]), maps=np.zeros((1, 2, 4, 4)))
    damaged.write_bytes(damaged.read_bytes()[:60])
    return [random, empty, array, pickled, untagged, damaged]


def test_eval_attribution_refuses_a_maps_cache_that_is_not_one(eval_attribution, tmp_path, capsys):
    for cache in _not_caches(tmp_path):
        before = cache.read_bytes()
        line = refused(eval_attribution.main, _argv(tmp_path, "--maps-cache", str(cache)), capsys, "--maps-cache")
        assert str(cache) in line and "not a maps cache written by this script" in line, line
        assert "allow_pickle" not in line
        assert cache.read_bytes() == before  # never overwritten


def test_load_maps_refuses_what_is_not_a_maps_cache(eval_attribution, tmp_path):
    config = eval_attribution.Config(**eval_attribution.QUICK)
    explainer = types.SimpleNamespace(seconds={})
    for cache in _not_caches(tmp_path):
        with pytest.raises(ValueError, match="--maps-cache: .*not a maps cache"):
            eval_attribution.load_maps(str(cache), config, explainer)


def test_a_maps_cache_written_by_the_script_is_accepted_and_read_back(eval_attribution, tmp_path, capsys):
    config = eval_attribution.Config(**eval_attribution.QUICK)
    cache = str(tmp_path / "cache" / "maps.npz")
    maps = {"gradient": np.arange(32, dtype=np.float32).reshape(2, 4, 4), "gradcam": np.ones((2, 4, 4), np.float32)}
    eval_attribution.save_maps(cache, config, maps, types.SimpleNamespace(seconds={("gradient", False): [0.5, 0.25]}))
    assert eval_attribution.maps_cache_problem(cache) is None
    eval_attribution.parse_args(_argv(tmp_path, "--maps-cache", cache))  # not refused
    explainer = types.SimpleNamespace(seconds={})
    read = eval_attribution.load_maps(cache, config, explainer)
    assert list(read) == list(maps)
    for name in maps:
        np.testing.assert_array_equal(read[name], maps[name])
    assert explainer.seconds == {("gradient", False): [0.5, 0.25]}
    # A cache of other settings is not refused: its maps are computed again and it is rewritten.
    other = eval_attribution.Config(**{**eval_attribution.QUICK, "seed": 7})
    assert eval_attribution.load_maps(cache, other, types.SimpleNamespace(seconds={})) == {}
