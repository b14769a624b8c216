#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded EfficientNet-Lite0:
# saliency maps with top-5 classes for the bundled photos, written to outputs/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT="${OUT:-outputs}"
PHOTOS=(bundled:chelsea bundled:coffee bundled:astronaut bundled:rocket bundled:motorcycle_left bundled:china bundled:flower)
.venv/bin/saliency-jax saliency "${PHOTOS[@]}" --out "$OUT"
echo "main job done: see $OUT/"
