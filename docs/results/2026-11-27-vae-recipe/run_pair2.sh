#!/usr/bin/env bash
# Recipe experiment, pair 2: the KL experiment's 800-step CPU VAE (channels 16, batch 16 x 0.5 s,
# seed 0) with data.crop_candidates=4 (the loudest of four random crops), and with lr 1e-3.
# One thread each; the baseline is /work/klexp/vae-kl1e-4 (same recipe otherwise).
set -u
cd /work/recipeexp
source /work/main/.venv/bin/activate
R=/work/cpubuild/vae-a-c16-l32/recipe.yaml
COMMON="--set optim.max_steps=800 --set run.max_minutes=null --set run.checkpoint_every=200 --set data.num_workers=0"
OMP_NUM_THREADS=1 ezaudio train-vae $R --quiet $COMMON --set data.crop_candidates=4 \
  --set run.output_dir=/work/recipeexp/vae-crop4 > train-crop4.log 2>&1 &
OMP_NUM_THREADS=1 ezaudio train-vae $R --quiet $COMMON --set optim.lr=1e-3 \
  --set run.output_dir=/work/recipeexp/vae-lr1e-3 > train-lr1e-3.log 2>&1 &
wait
for n in crop4 lr1e-3; do
  ezaudio data encode /work/probe/vaea/tonal.jsonl --vae /work/recipeexp/vae-$n/model \
    --out /work/recipeexp/latents-$n --quiet > encode-$n.log 2>&1
  PYTHONPATH=/work/main/src python /work/main/scripts/world/latent_pitch_probe.py \
    /work/cpubuild/world --latents /work/recipeexp/latents-$n --vae /work/recipeexp/vae-$n/model \
    --out /work/recipeexp/probe-$n.json > probe-$n.log 2>&1
done
echo done > DONE2
