"""The public API: every exported name resolves, and the CPU pipeline stays free of JAX."""

import subprocess
import sys

import saliency_jax


def test_every_exported_name_resolves():
    for name in saliency_jax.__all__:
        assert getattr(saliency_jax, name) is not None, name


def test_localisation_does_not_import_jax():
    code = "import sys, saliency_jax.localisation; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
