#!/usr/bin/env bash
# Fine-tune the bundled DiT (stage 3 recipe, clean captions) on posterior MEANS of the
# bundled encoder (data.posterior_noise=0), to pair with a decoder trained on means.
set -u
cd /work/meanexp
source /work/main/.venv/bin/activate
OMP_NUM_THREADS=${THREADS:-2} ezaudio train /work/main/recipes/world/stage3.yaml --quiet \
  --set model.vae=/work/meanexp/oldvae --set model.init_from=/work/main/src/ezaudio/default_model \
  --set data.latents=/work/table1cpu/latents/clean --set data.num_workers=0 \
  --set data.posterior_noise=${NOISE:-0} \
  --set optim.batch_size=16 --set optim.ema_decay=0.99 --set optim.warmup_steps=20 \
  --set optim.lr=${LR:-1e-4} --set optim.max_steps=100000 \
  --set run.output_dir=/work/meanexp/${NAME:-dit-mean} --set run.checkpoint_every=50 --set run.keep_last=40 \
  --set run.max_minutes=${MINUTES:-60} ${RESUME:-} > train-${NAME:-dit-mean}.log 2>&1
echo done > DONE-${NAME:-dit-mean}
