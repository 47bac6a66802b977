#!/usr/bin/env bash
# KL-weight experiment: two CPU VAEs (channels 16) identical but for loss.kl, one thread each.
set -u
cd /work/klexp
source /work/main/.venv/bin/activate
for kl in 1e-4 1e-6; do
  OMP_NUM_THREADS=1 ezaudio train-vae /work/cpubuild/vae-a-c16-l32/recipe.yaml --quiet \
    --set loss.kl=$kl --set optim.max_steps=${STEPS:-800} --set run.max_minutes=null \
    --set run.checkpoint_every=200 --set run.output_dir=/work/klexp/vae-kl$kl \
    --set data.num_workers=0 > /work/klexp/train-kl$kl.log 2>&1 &
done
wait
for kl in 1e-4 1e-6; do
  ezaudio data encode /work/probe/vaea/tonal.jsonl --vae /work/klexp/vae-kl$kl/model \
    --out /work/klexp/latents-kl$kl --quiet > /work/klexp/encode-kl$kl.log 2>&1
  PYTHONPATH=/work/main/src python /work/main/scripts/world/latent_pitch_probe.py \
    /work/cpubuild/world --latents /work/klexp/latents-kl$kl --vae /work/klexp/vae-kl$kl/model \
    --out /work/klexp/probe-kl$kl.json > /work/klexp/probe-kl$kl.log 2>&1
done
echo done > /work/klexp/DONE
