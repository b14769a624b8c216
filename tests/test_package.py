"""The public API: every exported name is its module's, no name is both a module and a function,
the layers import one way, and the CPU pipeline stays free of JAX."""

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import saliency_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_exported_name_is_the_object_its_module_defines():
    for module, names in saliency_jax._EXPORTS.items():
        source = importlib.import_module(module)
        for name in names:
            value = getattr(saliency_jax, name)
            assert value is getattr(source, name), name
            if inspect.isfunction(value) or inspect.isclass(value):
                assert inspect.getdoc(value), f"{name} has no docstring"
    assert sorted(saliency_jax.__all__) == sorted(n for names in saliency_jax._EXPORTS.values() for n in names)


def test_no_name_is_both_a_module_and_an_exported_object():
    modules = {m.name for m in pkgutil.iter_modules(saliency_jax.__path__)}
    assert not modules & set(saliency_jax.__all__)
    # importing every module must not shadow an export on the package
    for name in modules:
        importlib.import_module(f"saliency_jax.{name}")
    assert callable(saliency_jax.class_model_ascent) and callable(saliency_jax.class_models)


def test_paper_sections_are_public():
    for name in ("class_model_ascent", "class_models", "saliency_map", "class_saliency_maps", "localise",
                 "layer_reconstruction", "backprop_rule", "l2_penalty", "fourier_parametrization"):
        assert name in saliency_jax.__all__, name


def test_localisation_does_not_import_jax():
    code = "import sys, saliency_jax.localisation; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_layers_import_one_way():
    """No module of localisation/ imports the rest of the package; experiments never import the CLI."""
    import ast

    for folder, _, files in os.walk(os.path.join(ROOT, "saliency_jax", "localisation")):
        for f in files:
            if f.endswith(".py"):
                tree = ast.parse(open(os.path.join(folder, f)).read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saliency_jax"):
                        assert node.module.startswith("saliency_jax.localisation"), (f, node.module)
                    if isinstance(node, ast.Import):
                        for alias in node.names:
                            assert not alias.name.startswith("saliency_jax") or alias.name.startswith(
                                "saliency_jax.localisation"), (f, alias.name)
    for f in os.listdir(os.path.join(ROOT, "experiments")):
        if f.endswith(".py"):
            assert "saliency_jax.cli" not in open(os.path.join(ROOT, "experiments", f)).read(), f
