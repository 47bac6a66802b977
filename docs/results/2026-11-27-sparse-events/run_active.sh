#!/usr/bin/env bash
set -u
cd /work/actexp
source /work/main/.venv/bin/activate
OMP_NUM_THREADS=${THREADS:-2} python train_active.py train /work/main/recipes/world/stage3.yaml --quiet \
  --set model.vae=/work/meanexp/oldvae --set model.init_from=/work/main/src/ezaudio/default_model \
  --set data.latents=/work/table1cpu/latents/clean --set data.num_workers=0 \
  --set data.posterior_noise=0 \
  --set optim.batch_size=16 --set optim.ema_decay=0.99 --set optim.warmup_steps=20 \
  --set optim.lr=${LR:-1e-4} --set optim.max_steps=100000 \
  --set run.output_dir=/work/actexp/${NAME:-dit-act} --set run.checkpoint_every=50 --set run.keep_last=40 \
  --set run.max_minutes=${MINUTES:-55} ${RESUME:-} > train-${NAME:-dit-act}.log 2>&1
echo done > DONE-${NAME:-dit-act}
