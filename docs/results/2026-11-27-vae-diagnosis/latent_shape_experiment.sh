#!/usr/bin/env bash
# Latent-shape experiment: CPU VAEs like VAE A (channels 16, 800 steps, KL 1e-4) with a
# faster latent (50 Hz x 32) or a wider one (25 Hz x 64), one thread each, side by side.
set -u
cd /work/rateexp
source /work/main/.venv/bin/activate
declare -A OVR=(
  [r50c32]='{channels: 16, strides: [2, 4, 8, 5]}'
  [r25c64]='{channels: 16, latent_dim: 64}'
)
for name in r50c32 r25c64; do
  OMP_NUM_THREADS=1 ezaudio train-vae /work/cpubuild/vae-a-c16-l32/recipe.yaml --quiet \
    --set "model.vae_overrides=${OVR[$name]}" --set optim.max_steps=${STEPS:-800} \
    --set run.max_minutes=null --set run.checkpoint_every=200 \
    --set run.output_dir=/work/rateexp/vae-$name --set data.num_workers=0 \
    > /work/rateexp/train-$name.log 2>&1 &
done
wait
for name in r50c32 r25c64; do
  ezaudio data encode /work/probe/vaea/tonal.jsonl --vae /work/rateexp/vae-$name/model \
    --out /work/rateexp/latents-$name --quiet > /work/rateexp/encode-$name.log 2>&1
  PYTHONPATH=/work/main/src python /work/main/scripts/world/latent_pitch_probe.py \
    /work/cpubuild/world --latents /work/rateexp/latents-$name --vae /work/rateexp/vae-$name/model \
    --out /work/rateexp/probe-$name.json > /work/rateexp/probe-$name.log 2>&1
done
echo done > /work/rateexp/DONE
