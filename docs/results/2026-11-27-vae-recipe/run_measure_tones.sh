#!/usr/bin/env bash
# Adherence of the default model with the tone-curriculum decoder (the same DiT, seeds and
# prompts as the 2026-11-26 measurement of the bundled default; only the decoder differs).
set -u
cd /work/main
OMP_NUM_THREADS=2 PYTHONPATH=src .venv/bin/python scripts/world/measure.py \
  --model /work/recipeexp/model-tones --world /work/cpubuild/world \
  --tagger /work/gpubuild/evaluators/tagger --clap /work/gpubuild/evaluators/clap \
  --out /work/recipeexp/measure-tones --skip protocol sweep edit --quiet \
  > /work/recipeexp/measure-tones.log 2>&1
echo done > /work/recipeexp/DONE-measure
