#!/usr/bin/env bash
# The bundled DiT fine-tuned (stage-3 recipe, clean captions, posterior means of the frozen
# encoder's cache) with knocking / dog-bark clips oversampled (train_oversample.py).
set -u
cd /work/s15
source /work/main/.venv/bin/activate
export MALLOC_MMAP_THRESHOLD_=4000000000 MALLOC_TRIM_THRESHOLD_=4000000000 MALLOC_TOP_PAD_=1000000000
REPEAT=${REPEAT:-knocking=3,dog_bark=2} OMP_NUM_THREADS=${THREADS:-2} \
python /work/main/docs/results/2026-11-28-dit-knock/train_oversample.py train \
  /work/main/recipes/world/stage3.yaml --quiet \
  --set model.vae=/work/pitchexp/vae-pitch/model --set model.init_from=/work/main/src/ezaudio/default_model \
  --set data.latents=/work/pitchexp/latents-train --set data.num_workers=0 \
  --set data.posterior_noise=0 \
  --set optim.batch_size=16 --set optim.ema_decay=0.99 --set optim.warmup_steps=20 \
  --set optim.lr=${LR:-1e-4} --set optim.max_steps=100000 \
  --set run.output_dir=/work/s15/${NAME:-dit-knock} --set run.checkpoint_every=50 --set run.keep_last=60 \
  --set run.max_minutes=${MINUTES:-50} ${RESUME:-} > train-${NAME:-dit-knock}.log 2>&1
echo done > DONE-${NAME:-dit-knock}
