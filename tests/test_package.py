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


CORE = {"types", "_checks", "_batching", "scores", "backprop_rules", "parallel", "io", "cpu_threads"}
METHODS = {"saliency", "attribution", "class_model", "regularizers", "parametrization", "reconstruction"}
# What each first-level unit of the package may import (docs/ARCHITECTURE.md).
ALLOWED = {
    **{unit: CORE for unit in CORE},
    "cpu_threads": set(),
    "models": CORE, "data": CORE, "training": CORE | {"models", "data"},
    **{unit: CORE | METHODS for unit in METHODS},
    "localisation": set(),
    "evaluation": CORE | METHODS | {"localisation", "training"},
    "figures": CORE,
    "cli": None,  # the edge may use every layer
}


def _package_imports(path, package=None):
    """The first-level units of the package that the file imports, at any depth.

    Relative imports are resolved against ``package``, the file's own package (by
    default read from its place under the repository).
    """
    import ast

    if package is None:
        package = ".".join(os.path.relpath(path, ROOT).split(os.sep)[:-1])
    units = set()
    for node in ast.walk(ast.parse(open(path).read())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module
            if node.level:  # from . import x, from ..models import y
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                module = ".".join(parts + ([node.module] if node.module else []))
            if module:
                names = [module] + ([f"saliency_jax.{a.name}" for a in node.names] if module == "saliency_jax" else [])
        units |= {name.split(".")[1] for name in names if name.startswith("saliency_jax.")}
    return units


def test_layers_import_one_way():
    """Every module imports only the layers below it; experiments never import the CLI."""
    package = os.path.join(ROOT, "saliency_jax")
    seen = set()
    for folder, _, files in os.walk(package):
        for f in files:
            if not f.endswith(".py") or os.path.relpath(folder, package) == "." and f == "__init__.py":
                continue
            relative = os.path.relpath(os.path.join(folder, f), package)
            unit = relative.split(os.sep)[0].removesuffix(".py")
            assert unit in ALLOWED, f"{relative}: a new unit; give it a layer in ALLOWED and docs/ARCHITECTURE.md"
            seen.add(unit)
            allowed = ALLOWED[unit]
            if allowed is not None:
                wrong = _package_imports(os.path.join(folder, f)) - allowed - {unit}
                assert not wrong, f"{relative} imports {sorted(wrong)}, above or beside its layer"
    assert seen == set(ALLOWED)
    for f in os.listdir(os.path.join(ROOT, "experiments")):
        if f.endswith(".py"):
            assert "saliency_jax.cli" not in open(os.path.join(ROOT, "experiments", f)).read(), f


def test_the_layer_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("import numpy\nfrom saliency_jax import _checks\n"
                      "def f():\n    from saliency_jax.io import load_image\n    import saliency_jax.models.weights\n"
                      "from saliency_jax import attribution as attr\n")
    assert _package_imports(source) == {"_checks", "io", "models", "attribution"}
    relative = tmp_path / "r.py"
    relative.write_text("from .. import io\nfrom . import seeds\ndef f():\n    from ..models import weights\n")
    assert _package_imports(relative, package="saliency_jax.localisation") == {"io", "models", "localisation"}
