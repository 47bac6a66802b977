#!/usr/bin/env bash
# Resume the DiT on the new encoder's means (chain.sh's run, stopped at step 650) for 22 more
# minutes, then the quick one-event check on its last checkpoint.
set -u
cd /work/encexp
source /work/main/.venv/bin/activate
export OMP_NUM_THREADS=2
VAE=/work/encexp/vae-encmean/model
ezaudio train /work/main/recipes/world/stage3.yaml --quiet --resume \
  --set model.vae=$VAE --set model.init_from=/work/main/src/ezaudio/default_model \
  --set data.latents=/work/encexp/latents-train --set data.num_workers=0 \
  --set data.posterior_noise=0 \
  --set optim.batch_size=16 --set optim.ema_decay=0.99 --set optim.warmup_steps=20 \
  --set optim.lr=1e-4 --set optim.max_steps=100000 \
  --set run.output_dir=/work/encexp/dit-encmean --set run.checkpoint_every=50 --set run.keep_last=40 \
  --set run.max_minutes=22 > train-dit-more.log 2>&1
LAST=$(ls -d /work/encexp/dit-encmean/checkpoints/step-* | tail -1)
python /work/meanexp/quick_single.py $LAST $VAE 0 /work/encexp/q_encmean_more.json > q_more.log 2>&1
echo done > DONE-more
