#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded EfficientNet-Lite0 for the
# photos that ship with scikit-image and scikit-learn, writing everything to outputs/:
#   saliency maps with top-5 classes (§3), GraphCut localisation (§3.2), the paper's
#   Figure 1 class models in both modes (§2) and Figure 3's localisation layout.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT="${OUT:-outputs}"
PHOTOS=(bundled:chelsea bundled:coffee bundled:astronaut bundled:rocket bundled:motorcycle_left bundled:china bundled:flower)
.venv/bin/saliency-jax saliency "${PHOTOS[@]}" --out "$OUT/saliency"
.venv/bin/saliency-jax localise "${PHOTOS[@]}" --out "$OUT/localisation"
.venv/bin/python experiments/fig3_localisation.py --out "$OUT/fig3_localisation.png"
.venv/bin/python experiments/fig1_class_models.py --out "$OUT/fig1_class_models"
echo "main job done: see $OUT/"
