"""``python -m saliency_jax.cli ...``: the ``saliency-jax`` command."""

import sys

from saliency_jax.cli import main

sys.exit(main())
