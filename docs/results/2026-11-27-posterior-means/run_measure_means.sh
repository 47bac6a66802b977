#!/usr/bin/env bash
set -u
cd /work/main
OMP_NUM_THREADS=2 .venv/bin/python scripts/world/measure.py --model /work/meanexp/model-means --world /work/cpubuild/world --tagger /work/gpubuild/evaluators/tagger --clap /work/gpubuild/evaluators/clap --out /work/meanexp/measure-means --skip sweep edit --quiet > /work/meanexp/measure-means.log 2>&1
echo done > /work/meanexp/DONE-measure
