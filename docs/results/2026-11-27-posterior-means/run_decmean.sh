#!/usr/bin/env bash
# Decoder-only fine-tuning on posterior MEANS (model.posterior_noise=0), from the bundled
# (tone-trained) decoder; encoder frozen. Same data as run_dectones.sh.
set -u
cd /work/meanexp
source /work/main/.venv/bin/activate
OMP_NUM_THREADS=${THREADS:-2} ezaudio train-vae /work/main/recipes/world/vae.yaml --quiet \
  --set model.init_from=/work/main/src/ezaudio/default_model/vae --set model.freeze_encoder=true \
  --set model.posterior_noise=${NOISE:-0} \
  --set data.manifest=/work/tones/train.jsonl --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=100000 \
  --set loss.discriminator_start_step=1000000000 --set loss.l1=0.1 \
  --set run.max_minutes=${MINUTES:-30} --set run.checkpoint_every=100 --set run.keep_last=40 \
  --set run.output_dir=/work/meanexp/${NAME:-vae-decmean} ${RESUME:-} > train-${NAME:-vae-decmean}.log 2>&1
echo done > DONE-${NAME:-vae-decmean}
