#!/usr/bin/env bash
# Whole-VAE fine-tuning (encoder NOT frozen) on posterior MEANS (model.posterior_noise=0):
# can the encoder put finer detail (pitch, transients) into its means once no noise masks it?
# From the second means decoder (world + tone clips with strikes); same data.
set -u
cd /work/encexp
source /work/main/.venv/bin/activate
OMP_NUM_THREADS=${THREADS:-2} ezaudio train-vae /work/main/recipes/world/vae.yaml --quiet \
  --set model.init_from=${INIT:-/work/meanexp/vae-decmean2/model} --set model.freeze_encoder=false \
  --set model.posterior_noise=0 \
  --set data.manifest=${MANIFEST:-/work/tones2/train.jsonl} --set data.num_workers=0 \
  --set data.clip_seconds=0.5 --set optim.batch_size=16 --set optim.max_steps=100000 \
  --set optim.lr=${LR:-3e-4} \
  --set loss.discriminator_start_step=1000000000 --set loss.l1=0.1 \
  --set run.max_minutes=${MINUTES:-45} --set run.checkpoint_every=100 --set run.keep_last=40 \
  --set run.output_dir=/work/encexp/${NAME:-vae-encmean} ${RESUME:-} > train-${NAME:-vae-encmean}.log 2>&1
echo done > DONE-${NAME:-vae-encmean}
